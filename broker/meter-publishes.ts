import type { Duplex } from 'node:stream'
import type { Client } from 'aedes'

/**
 * A meter's readings publishes, read past aedes' per-packet machinery.
 *
 * Once a meter's connection is accepted, every PUBLISH at QoS 1 to its own readings topic is taken
 * from the bytes aedes reads, before its MQTT parser sees them, handed to ingest, and answered with a
 * PUBACK written here once committed. Every other packet (PINGREQ, SUBSCRIBE, DISCONNECT, a publish
 * to any other topic or at another QoS) goes on to aedes' parser whole and in its place, so aedes keeps
 * the protocol: CONNECT, keep-alive, subscriptions, refusals, wills and sessions.
 *
 * Why: aedes, mqtt-packet and `bl` handle a QoS 1 publish with a parser state machine, a packet
 * object, a series of hooks, three corked writes for its PUBACK and two deferred callbacks. At full
 * rate that, with the garbage it leaves, was a fifth of the broker's event loop (docs/performance.md);
 * taken here, 1,000 meters publishing as fast as acknowledged stored 55,665–59,134 readings/s on
 * PostgreSQL against 34,843–47,421 the aedes way, in alternating runs on the 2-core AMD VM
 * (0.56–0.60× bare aedes against 0.46–0.47×), garbage collection 11% of the event loop against 22%.
 *
 * Order [MQTT-4.6.0-2]: frames are taken in the order they arrive, and a packet given to aedes is
 * handled there at once (synchronously, as aedes' parser would), so ingest sees a meter's publishes in
 * its sending order whichever way each went; ingest answers them in that order, and the PUBACKs of one
 * turn of the event loop leave together, one write per connection, in answering order.
 *
 * It relies on aedes 1.2.0's client internals (`_parser.parse`, `_keepaliveInterval`,
 * `_keepaliveTimer`, `waitForDrain`, `_parsingBatch`, `pause`, `resume`): package.json pins that
 * version, and a client lacking them is left to aedes.
 */

/** A readings publish taken from a meter's connection. */
export interface ReadingsPublish {
  messageId: number
  payload: Buffer
}

/** What the broker does with a meter's readings publishes. */
export interface ReadingsIntake {
  /** Ingests it, then calls `answer` (null: committed). */
  take(client: Client, publish: ReadingsPublish, answer: (err: Error | null) => void): void
  /** Whether the meter's line of publishes waiting for their commit takes another now (IngestQueue.hasRoom). */
  hasRoom(client: Client): boolean
  /** Calls `resume` once the meter's line has room again (IngestQueue.whenRoom). */
  whenRoom(client: Client, resume: () => void): void
}

/** Why a meter's connection is not read: its PUBACKs wait for it to drain, or its line of publishes is full. */
const HOLD_DRAIN = 1
const HOLD_LINE = 2

/** Bytes in a PUBACK: fixed header, remaining length 2, packet identifier. */
const PUBACK_BYTES = 4
/** Byte 1 of a PUBACK [MQTT-3.4.1]. */
const PUBACK_HEADER = 0x40
/** Bytes of the remaining length of an MQTT packet at most [MQTT-2.2.3]. */
const REMAINING_LENGTH_BYTES_MAX = 4

/**
 * The bytes of the packet starting at `at` (fixed header included), or 0 when its fixed header is
 * not all there yet, or -1 when its remaining length runs over four bytes (malformed).
 */
export function packetBytesAt(buf: Buffer, at: number): number {
  let length = 0
  let multiplier = 1
  for (let i = 1; i <= REMAINING_LENGTH_BYTES_MAX; i++) {
    if (at + i >= buf.length) return 0
    const byte = buf[at + i]!
    length += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) return 1 + i + length
    multiplier *= 128
  }
  return -1
}

/**
 * Whole MQTT packets out of a byte stream cut anywhere: what is pushed comes back as a buffer of
 * whole packets from its start, the rest held until the chunks that complete it arrive. A packet
 * arriving in many chunks is joined once, when it is whole. What it holds is bounded by the
 * packet size guard (frame-guard.ts, `ingest.packetBytesMax`, 1 MiB by default), which reads the
 * bytes first and closes the connection as soon as a fixed header announces more: at most one
 * packet under that limit plus one read is ever held.
 */
export class PacketFramer {
  private held: Buffer[] = []
  private heldBytes = 0
  /** Bytes the first held packet has in all (0: its fixed header is not all held yet). */
  private wanted = 0
  /** Framing was malformed: nothing more is framed. */
  broken = false

  /**
   * The whole packets now complete (null: none), and, once framing is broken, everything held and
   * pushed since (`malformed`), to be handed on as it is.
   */
  push(chunk: Buffer): { packets: Buffer | null; malformed: Buffer | null } {
    if (this.broken) return { packets: null, malformed: chunk }
    let buf = chunk
    if (this.heldBytes > 0) {
      this.held.push(chunk)
      this.heldBytes += chunk.length
      if (this.wanted > 0 && this.heldBytes < this.wanted) return { packets: null, malformed: null }
      buf = Buffer.concat(this.held, this.heldBytes)
      this.held = []
      this.heldBytes = 0
    }
    let end = 0
    for (;;) {
      const bytes = end < buf.length ? packetBytesAt(buf, end) : 0
      if (bytes < 0) {
        this.broken = true
        return { packets: end > 0 ? buf.subarray(0, end) : null, malformed: buf.subarray(end) }
      }
      if (bytes === 0 || end + bytes > buf.length) {
        this.wanted = bytes
        break
      }
      end += bytes
    }
    if (end < buf.length) {
      this.held.push(buf.subarray(end))
      this.heldBytes = buf.length - end
    }
    return { packets: end > 0 ? buf.subarray(0, end) : null, malformed: null }
  }
}

/**
 * The readings publish a packet is, or null: a PUBLISH at QoS 1 (DUP and RETAIN either way: a
 * reading is never retained) to exactly `topic`, with a packet identifier other than 0
 * [MQTT-2.3.1-1]. `start`/`end` bound the packet in `buf`; the payload is a view of `buf`.
 */
export function readingsPublishAt(buf: Buffer, start: number, end: number, topic: Buffer): ReadingsPublish | null {
  // Byte 1: type 3 (PUBLISH) in the high nibble, QoS 1 in bits 2–1; bit 3 (DUP) and bit 0 (RETAIN) free.
  if ((buf[start]! & 0xf6) !== 0x32) return null
  let at = start + 1
  while (buf[at]! & 0x80) at++
  at++
  // The variable header: topic length and topic, then the packet identifier.
  if (end - at < 2 + topic.length + 2) return null
  if (buf.readUInt16BE(at) !== topic.length || buf.compare(topic, 0, topic.length, at + 2, at + 2 + topic.length) !== 0) return null
  at += 2 + topic.length
  const messageId = buf.readUInt16BE(at)
  if (messageId === 0) return null
  return { messageId, payload: buf.subarray(at + 2, end) }
}

/**
 * Writes PUBACKs: those answered in one turn of the event loop leave in one write per connection,
 * in answering order, as aedes' corked writes did. A write the connection cannot take at once (its
 * buffer past the high-water mark: the client does not read) calls that connection's `whenFull`,
 * which stops reading the connection and waits for it to drain, as aedes does for its own writes,
 * and closes it if it does not (`mqtt.drainTimeoutMs`): a meter that publishes and never reads
 * would otherwise grow the broker's buffer by a PUBACK a publish, its window bounding only what is
 * not yet acknowledged.
 */
export class PubackWriter {
  private readonly waiting = new Map<Duplex, { ids: number[]; whenFull: () => void }>()
  private scheduled = false
  private readonly flush = (): void => {
    this.scheduled = false
    for (const [conn, { ids, whenFull }] of this.waiting) {
      if (conn.destroyed || !conn.writable) continue
      const bytes = Buffer.allocUnsafe(PUBACK_BYTES * ids.length)
      for (let k = 0; k < ids.length; k++) {
        const at = PUBACK_BYTES * k
        bytes[at] = PUBACK_HEADER
        bytes[at + 1] = 2
        bytes.writeUInt16BE(ids[k]!, at + 2)
      }
      if (!conn.write(bytes)) whenFull()
    }
    this.waiting.clear()
  }

  write(conn: Duplex, messageId: number, whenFull: () => void): void {
    const waiting = this.waiting.get(conn)
    if (waiting === undefined) this.waiting.set(conn, { ids: [messageId], whenFull })
    else waiting.ids.push(messageId)
    if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }
}

function joined(a: Buffer | null, b: Buffer | null): Buffer | null {
  return a === null ? b : b === null ? a : Buffer.concat([a, b])
}

/** aedes 1.2.0's client, as far as taking a meter's publishes relies on it. */
interface AedesClientInternals {
  conn: Duplex
  closed: boolean
  _parser: { parse(buf: Buffer): unknown }
  _keepaliveInterval: number
  _keepaliveTimer: NodeJS.Timeout | null
  /** Calls back once the connection drains, or destroys it after aedes' `drainTimeout` and calls back with an error. */
  waitForDrain(callback: (err: Error | null) => void): void
  /**
   * Packets aedes is handling: its `_nextBatch` (at each packet handled, and at each 'readable' event
   * of the connection) takes one off and reads the connection on if that leaves 0; while paused it
   * returns at once, taking nothing off.
   */
  _parsingBatch: number
  /** aedes reads nothing more from the connection until `resume()`. */
  pause(): void
  /** Unpauses and calls `_nextBatch`. */
  resume(): void
  emit(event: 'error', err: Error): boolean
}

function internalsOf(client: Client): AedesClientInternals | null {
  const c = client as unknown as Partial<AedesClientInternals>
  if (
    typeof c._parser?.parse !== 'function' ||
    typeof c._keepaliveInterval !== 'number' ||
    typeof c.waitForDrain !== 'function' ||
    typeof c._parsingBatch !== 'number' ||
    typeof c.pause !== 'function' ||
    typeof c.resume !== 'function' ||
    c.conn === undefined
  )
    return null
  return c as AedesClientInternals
}

/**
 * Takes the readings publishes of a connected meter's connection to `topic` (see the module's
 * comment). Call it once aedes has accepted the connection and before it reads on (its
 * `connackSent` event, with return code 0): what aedes parsed before goes its way first (it reads no
 * further until it has handled it, at its `connected` event). Returns false,
 * leaving everything to aedes, when the client is closed or lacks the internals relied on.
 */
export function takeReadingsPublishes(client: Client, topic: string, intake: ReadingsIntake, pubacks: PubackWriter): boolean {
  const c = internalsOf(client)
  if (c === null || c.closed) return false
  const parser = c._parser
  const toAedes = parser.parse.bind(parser)
  const topicBytes = Buffer.from(topic)
  const framer = new PacketFramer()
  const conn = c.conn
  // The connection is read only while nothing holds it (HOLD_DRAIN, HOLD_LINE). What was read and not
  // yet taken when the meter's line filled waits here, whole packets in their order, and is taken first.
  let holds = 0
  let rest: { packets: Buffer; malformed: Buffer | null } | null = null
  const hold = (why: number): void => {
    if (holds === 0) c.pause()
    holds |= why
  }
  const release = (why: number): void => {
    holds &= ~why
    if (holds !== 0 || c.closed || conn.destroyed) return
    if (rest !== null) {
      const r = rest
      rest = null
      take(r.packets, r.malformed)
      if (holds !== 0 || c.closed || conn.destroyed) return
    }
    // A packet aedes finished handling meanwhile could not count itself done (paused, `_nextBatch`
    // returns at once): without this reset the count would never come back to 0, nor the reading.
    c._parsingBatch = 0
    c.resume()
  }
  // Its PUBACKs wait for the client to read them as aedes' own writes do: one wait at a time, and
  // nothing more read from the connection meanwhile (aedes reads on only once a packet's answer is
  // written), so what the broker holds for a meter that does not read is what it had read by then.
  const whenFull = (): void => {
    if ((holds & HOLD_DRAIN) !== 0) return
    hold(HOLD_DRAIN)
    c.waitForDrain((err) => {
      // Not drained: aedes has closed the connection.
      if (err !== null || c.closed) holds &= ~HOLD_DRAIN
      else release(HOLD_DRAIN)
    })
  }
  // Holds the packet identifier only: the payload is ingest's, not kept alive until the commit by this.
  const answerer =
    (messageId: number) =>
    (err: Error | null): void => {
      if (err !== null) c.emit('error', err)
      else pubacks.write(conn, messageId, whenFull)
    }
  /**
   * Takes whole packets in their order: readings publishes to ingest, runs of any other packet to
   * aedes, then what framing could not make out. A publish that finds its meter's line full stops
   * here: it and the rest wait in `rest`, the connection is read no more, and both resume once the
   * line has room (`whenRoom`). So a meter that sends faster than its publishes commit is slowed
   * down by its own TCP window, never refused and cut off for it.
   */
  const take = (packets: Buffer | null, malformed: Buffer | null): void => {
    if (packets !== null) {
      // A run of packets for aedes is handed over as one buffer, in its place among the publishes taken.
      let aedesFrom = -1
      let at = 0
      while (at < packets.length) {
        const end = at + packetBytesAt(packets, at)
        const publish = readingsPublishAt(packets, at, end, topicBytes)
        if (publish === null) {
          if (aedesFrom < 0) aedesFrom = at
        } else {
          if (aedesFrom >= 0) toAedes(packets.subarray(aedesFrom, at))
          aedesFrom = -1
          // What aedes was just given may have closed the connection (a refusal, a DISCONNECT): nothing more is read.
          if (c.closed || conn.destroyed) return
          if (!intake.hasRoom(client)) {
            rest = { packets: packets.subarray(at), malformed }
            hold(HOLD_LINE)
            intake.whenRoom(client, () => release(HOLD_LINE))
            return
          }
          // As aedes' own handler does for each packet [MQTT-3.1.2-24].
          if (c._keepaliveInterval > 0) c._keepaliveTimer?.refresh()
          intake.take(client, publish, answerer(publish.messageId))
          if (c.closed || conn.destroyed) return
        }
        at = end
      }
      if (aedesFrom >= 0) toAedes(packets.subarray(aedesFrom))
    }
    if (malformed !== null) toAedes(malformed)
  }
  parser.parse = (chunk: Buffer): void => {
    const { packets, malformed } = framer.push(chunk)
    // Held, aedes reads nothing; should anything be read all the same, it goes after what waits.
    if (rest !== null) rest = { packets: joined(rest.packets, packets)!, malformed: joined(rest.malformed, malformed) }
    else take(packets, malformed)
  }
  return true
}
