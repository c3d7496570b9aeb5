/** What the metering services need from the running system's config. */
export interface MeteringContext {
  /** IANA zone where days and months are cut (`config.timezone`). */
  timezone: string
}
