/** A third party's part of an offer's split, in basis points. */
export interface OfferSharesTable {
  offer_id: string
  party_id: string
  bps: number
}
