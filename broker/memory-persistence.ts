import { createRequire } from 'node:module'
import { Readable } from 'node:stream'

/**
 * The broker's sessions in its own memory (no Redis): aedes' in-memory persistence, whose queues
 * of outgoing messages are kept here instead, so that a whole session can be dropped at once when
 * it expires (persistentSessionOfflineMsMax) or a clean session replaces it. The persistence keeps its
 * queues in a private field, which nothing but a message's PUBACK ever empties, one message at a time.
 */
const require = createRequire(import.meta.url)

/** A message as aedes queues it for a client (aedes-packet), with what the queue looks at. */
interface QueuedPacket {
  brokerId: string
  brokerCounter: number
  messageId?: number
}

interface ClientRef {
  id: string
}

interface AsyncMemoryPersistence {
  setup(broker: unknown): Promise<void>
  cleanSubscriptions(client: ClientRef): Promise<void>
  delWill(client: ClientRef): Promise<unknown>
  cleanIncoming(client: ClientRef): Promise<void>
}

const Base = require('aedes-persistence/asyncPersistence.js') as new () => AsyncMemoryPersistence
const Packet = require('aedes-packet') as new (packet: object) => QueuedPacket

export class MemoryPersistence extends Base {
  readonly #outgoing = new Map<string, QueuedPacket[]>()

  #queueOf(clientId: string): QueuedPacket[] {
    let queue = this.#outgoing.get(clientId)
    if (queue === undefined) {
      queue = []
      this.#outgoing.set(clientId, queue)
    }
    return queue
  }

  // The same operations as aedes-persistence 11's, on the queues kept here.

  async outgoingEnqueue(sub: { clientId: string }, packet: object): Promise<void> {
    this.#queueOf(sub.clientId).push(new Packet(packet))
  }

  async outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: object): Promise<void> {
    for (const sub of subs) this.#queueOf(sub.clientId).push(new Packet(packet))
  }

  async outgoingUpdate(client: ClientRef, packet: QueuedPacket): Promise<void> {
    const queue = this.#outgoing.get(client.id) ?? []
    for (let i = 0; i < queue.length; i++) {
      const queued = queue[i]!
      if (queued.brokerId === packet.brokerId) {
        if (queued.brokerCounter === packet.brokerCounter) {
          queued.messageId = packet.messageId
          return
        }
        // Packet identifiers wrap at 65535: the broker counter tells one message from another.
      } else if (queued.messageId === packet.messageId) {
        queue[i] = packet
        return
      }
    }
    throw new Error('no such packet')
  }

  async outgoingClearMessageId(client: ClientRef, packet: QueuedPacket): Promise<QueuedPacket | undefined> {
    const queue = this.#outgoing.get(client.id) ?? []
    for (let i = 0; i < queue.length; i++) {
      const queued = queue[i]!
      if (queued.messageId === packet.messageId) {
        queue.splice(i, 1)
        if (queue.length === 0) this.#outgoing.delete(client.id)
        return queued
      }
    }
    return undefined
  }

  outgoingStream(client: ClientRef & { clean?: boolean }): Readable {
    // A clean session starts without the stored one's messages [MQTT-3.1.2-6]: aedes would read them
    // and clear them one by one, asking authorizeForward for each (which counted every one as released
    // in the access log), in a loop that held the event loop 5.3 s for a queue of 50,000. Dropped whole.
    if (client.clean === true) {
      this.#outgoing.delete(client.id)
      return Readable.from([])
    }
    // A copy: the queue changes while it is sent. A message given a packet identifier was sent to this
    // client before (each client has its own copy here): it goes again with DUP set [MQTT-3.3.1-1].
    return Readable.from((this.#outgoing.get(client.id) ?? []).map((p) => (p.messageId === undefined ? p : { ...p, dup: true })))
  }

  /** Messages queued for a client id, for tests and metrics. */
  outgoingCount(clientId: string): number {
    return this.#outgoing.get(clientId)?.length ?? 0
  }

  /** Forgets a session altogether: its subscriptions, its queue, its will and its unreleased QoS 2 publishes. */
  async dropSession(clientId: string): Promise<void> {
    const client = { id: clientId }
    await this.cleanSubscriptions(client)
    await this.delWill(client)
    await this.cleanIncoming(client)
    this.#outgoing.delete(clientId)
  }
}
