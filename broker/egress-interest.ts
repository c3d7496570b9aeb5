import { parseEgressFilter, parseTopic, type EgressChannel } from '../shared/topics.ts'

/** What the egress publishes: datums on the egress channels, and a meter's rejected data on its status topic. */
export type InterestChannel = EgressChannel | 'status'

/** The channel and meter (null: every meter) of a filter someone may subscribe to, or null for none of ours. */
function parseInterestFilter(filter: string): { channel: InterestChannel; meterId: string | null } | null {
  const egress = parseEgressFilter(filter)
  if (egress !== null) return egress
  const topic = parseTopic(filter)
  return topic?.kind === 'meter_status' && !topic.meterId.includes('+') && !topic.meterId.includes('#') ? { channel: 'status', meterId: topic.meterId } : null
}

/**
 * Which egress topics someone on this broker subscribes to (and meters' status topics), so that a datum nobody can receive
 * is not encoded and published at all (publishing costs the broker's event loop about as much
 * as ingesting). Counted from the subscriptions it authorises, so interest is known before a
 * subscription exists; removed on unsubscribe (aedes reports the end of a clean session's
 * connection as one) and when a clean session replaces a persistent one. A persistent session's
 * subscriptions stay while it is offline: aedes queues its messages for it.
 *
 * Only for a broker alone: brokers coupled through Redis publish everything, since a
 * subscriber may sit on another broker (`EVERY_TOPIC`).
 */
export interface EgressInterest {
  wants(channel: InterestChannel, meterId: string): boolean
}

export const EVERY_TOPIC: EgressInterest = { wants: () => true }

/** The subscribing side of a client, as far as interest is concerned. */
export interface SubscriberSession {
  readonly id: string
  readonly clean: boolean
}

interface Session {
  owner: SubscriberSession
  filters: Set<string>
}

export class LocalEgressInterest implements EgressInterest {
  private readonly sessions = new Map<string, Session>()
  /** Subscriptions to `{channel}/+`, per channel. */
  private readonly wildcard = new Map<InterestChannel, number>()
  /** Subscriptions to `{channel}/{meterId}`, per topic. */
  private readonly exact = new Map<string, number>()

  wants(channel: InterestChannel, meterId: string): boolean {
    return (this.wildcard.get(channel) ?? 0) > 0 || (this.exact.get(`${channel}/${meterId}`) ?? 0) > 0
  }

  /** A subscription was authorised (it may still fail; counting it anyway only publishes more). */
  subscribed(client: SubscriberSession, filter: string): void {
    if (parseInterestFilter(filter) === null) return
    let session = this.sessions.get(client.id)
    if (session === undefined) {
      session = { owner: client, filters: new Set() }
      this.sessions.set(client.id, session)
    }
    session.owner = client
    if (session.filters.has(filter)) return
    session.filters.add(filter)
    this.count(filter, 1)
  }

  unsubscribed(client: SubscriberSession, filters: readonly string[]): void {
    const session = this.sessions.get(client.id)
    // A connection that was taken over may report its end late: the id is someone else's now.
    if (session === undefined || session.owner !== client) return
    for (const filter of filters) if (session.filters.delete(filter)) this.count(filter, -1)
    if (session.filters.size === 0) this.sessions.delete(client.id)
  }

  /** A client registered: a clean session replaces whatever session its id had; a persistent one resumes it. */
  connected(client: SubscriberSession): void {
    if (client.clean) this.forget(client.id)
    else {
      const session = this.sessions.get(client.id)
      if (session !== undefined) session.owner = client
    }
  }

  /** A persistent session expired while offline: its subscriptions are gone. */
  ended(clientId: string): void {
    this.forget(clientId)
  }

  private forget(clientId: string): void {
    const session = this.sessions.get(clientId)
    if (session === undefined) return
    for (const filter of session.filters) this.count(filter, -1)
    this.sessions.delete(clientId)
  }

  private count(filter: string, delta: 1 | -1): void {
    const f = parseInterestFilter(filter)!
    if (f.meterId === null) this.wildcard.set(f.channel, (this.wildcard.get(f.channel) ?? 0) + delta)
    else {
      const key = `${f.channel}/${f.meterId}`
      const n = (this.exact.get(key) ?? 0) + delta
      if (n === 0) this.exact.delete(key)
      else this.exact.set(key, n)
    }
  }
}
