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
function hasNullCharacter(topic: string): boolean {
  return topic.includes('\u0000')
}

/**
 * Why a SUBSCRIBE's topic filter is not an MQTT filter at all, or null when it is one: empty
 * [MQTT-4.7.3-1], U+0000 [MQTT-4.7.3-2], `#` other than alone in the last level [MQTT-4.7.1-2],
 * `+` other than alone in its level [MQTT-4.7.1-3]. Such a packet is a protocol violation: the
 * server closes the connection [MQTT-4.8.0-1], as Mosquitto does. A well-formed filter the client
 * may not have is another matter: SUBACK 0x80.
 */
export function topicFilterViolation(filter: string): string | null {
  if (filter.length === 0) return 'an empty topic filter [MQTT-4.7.3-1]'
  if (hasNullCharacter(filter)) return 'a topic filter holding U+0000 [MQTT-4.7.3-2]'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '# other than alone in the last level of a topic filter [MQTT-4.7.1-2]'
    if (level.includes('+') && level !== '+') return '+ other than alone in a level of a topic filter [MQTT-4.7.1-3]'
  }
  return null
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
