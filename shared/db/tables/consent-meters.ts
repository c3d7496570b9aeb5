/** The meters a consent covers (insert only). */
export interface ConsentMetersTable {
  consent_id: string
  meter_id: string
}
