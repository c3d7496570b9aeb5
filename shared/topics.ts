/**
 * Every MQTT topic of the contract, built and parsed here only.
 * Ingress `meters/{meterId}/readings`, meter feedback `meters/{meterId}/status`,
 * egress `readings/{meterId}` and `daily/{meterId}`.
 */
export const TOPIC_WILDCARD_READINGS = 'readings/+'
export const TOPIC_WILDCARD_DAILY = 'daily/+'
export const SYS_PREFIX = '$SYS/'

export type EgressChannel = 'readings' | 'daily'

export function meterReadingsTopic(meterId: string): string {
  return 'meters/' + meterId + '/readings'
}

export function meterStatusTopic(meterId: string): string {
  return 'meters/' + meterId + '/status'
}

export function egressTopic(channel: EgressChannel, meterId: string): string {
  return channel + '/' + meterId
}

export interface ParsedTopic {
  kind: 'meter_readings' | 'meter_status' | 'egress'
  meterId: string
  channel?: EgressChannel
}

/** Parses a concrete topic (no wildcards) of the contract; null for any other. */
export function parseTopic(topic: string): ParsedTopic | null {
  const parts = topic.split('/')
  if (parts.length === 3 && parts[0] === 'meters' && parts[1] !== '') {
    if (parts[2] === 'readings') return { kind: 'meter_readings', meterId: parts[1]! }
    if (parts[2] === 'status') return { kind: 'meter_status', meterId: parts[1]! }
    return null
  }
  if (parts.length === 2 && (parts[0] === 'readings' || parts[0] === 'daily') && parts[1] !== '') {
    return { kind: 'egress', meterId: parts[1]!, channel: parts[0] }
  }
  return null
}

/**
 * Longest topic filter a client may subscribe to, in UTF-8 bytes: over three times the longest of ours
 * (`meters/{id}/status` with a 64-character meter id is 78), so that no subscription holds more.
 */
export const TOPIC_FILTER_BYTES_MAX = 256

/** [MQTT-4.7.3-2] Topic names and filters must not include U+0000 (a protocol error: the connection is closed). */
export function hasNullCharacter(topic: string): boolean {
  return topic.includes('\u0000')
}

/**
 * Parses an egress subscription filter: `readings/{id}`, `readings/+`, `daily/{id}`, `daily/+`.
 * `meterId` is null for the `+` wildcard. Any other filter (including `#`, one over
 * TOPIC_FILTER_BYTES_MAX or with U+0000) is not ours.
 */
export function parseEgressFilter(filter: string): { channel: EgressChannel; meterId: string | null } | null {
  if (Buffer.byteLength(filter, 'utf8') > TOPIC_FILTER_BYTES_MAX || hasNullCharacter(filter)) return null
  const parts = filter.split('/')
  if (parts.length !== 2) return null
  const [channel, level] = parts as [string, string]
  if (channel !== 'readings' && channel !== 'daily') return null
  if (level === '+') return { channel, meterId: null }
  if (level === '' || level.includes('+') || level.includes('#')) return null
  return { channel, meterId: level }
}
