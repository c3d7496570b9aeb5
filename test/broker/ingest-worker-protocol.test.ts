import { describe, expect, it } from 'vitest'
import { DEFAULT_INGEST_LIMITS } from '../../shared/config.ts'
import { compactResult, expandResult, packCommit, unpackCommit, type CommitRequest, type CompactResult } from '../../broker/ingest-worker-protocol.ts'
import type { CommitResult } from '../../services/metering/ingest-service.ts'
import { datumBytes, deferredMessage, validated, validatePayload, type ValidatedMessage } from '../../services/metering/ingest-validation.ts'

const NOW = Date.parse('2026-11-01T00:00:00Z')
const meter = (meterId: string) => ({ meterId, commodity: 'electricity' as const })
const reading = (ts: string, wh: number): string => JSON.stringify({ ts, values: { '1-0:1.8.0': wh } })

/** Payloads as aedes hands them over: views into the socket chunk they arrived in. */
function messagesFromOneChunk(): { chunk: Buffer; messages: ValidatedMessage[] } {
  const texts = [
    `{"readings":[${reading('2026-10-01T00:00:00Z', 100)},${reading('2026-10-01T00:15:00Z', 110)},${reading('2026-10-01T00:30:00Z', 120)}]}`,
    'not json',
    reading('2026-10-01T00:00:00Z', 7),
    `{"readings":[${reading('2026-10-01T00:45:00Z', 130)},${reading('2026-10-01T01:00:00Z', 90)}]}`,
  ]
  const chunk = Buffer.from('\u0000'.repeat(64) + texts.join('|') + '\u0000'.repeat(4096))
  const messages: ValidatedMessage[] = []
  let at = 64
  texts.forEach((t, i) => {
    const payload = chunk.subarray(at, at + Buffer.byteLength(t))
    at += Buffer.byteLength(t) + 1
    messages.push(validatePayload(meter(i === 2 ? 'm2' : 'm1'), payload, NOW, DEFAULT_INGEST_LIMITS))
  })
  return { chunk, messages }
}

describe('the ingest thread protocol', () => {
  it('sends a group with its payloads packed in one transferred buffer and gets the same messages back', () => {
    const { chunk, messages } = messagesFromOneChunk()
    const { request, transfer } = packCommit(7, 1, messages)
    expect(request.payloads.byteLength).toBe(messages.reduce((n, m) => n + m.payload.length, 0))
    expect(request.payloads.buffer.byteLength).toBeLessThan(chunk.buffer.byteLength)

    const received = structuredClone(request, { transfer }) as CommitRequest
    expect(received.lane).toBe(1)
    expect(request.payloads.byteLength).toBe(0) // transferred, not copied
    const { messages: back, followed } = unpackCommit(received)
    expect(followed).toEqual(messages.map(() => false))
    expect(back.map((m) => m.payload.toString())).toEqual(messages.map((m) => m.payload.toString()))
    expect(back.map((m) => Buffer.isBuffer(m.payload))).toEqual(messages.map(() => true))
    expect(back.map((m) => ({ ...m, payload: null, datums: m.datums.map((d) => ({ tsMs: d.tsMs, values: d.values })) }))).toEqual(
      messages.map((m) => ({ ...m, payload: null, datums: m.datums.map((d) => ({ tsMs: d.tsMs, values: d.values })) })),
    )
    // A datum of a batch can still be quarantined with its own bytes on the other side.
    expect(datumBytes(back[0]!, back[0]!.datums[1]!).toString()).toBe(datumBytes(messages[0]!, messages[0]!.datums[1]!).toString())
  })

  it('answers with which datums were stored and for whom, and the broker rebuilds the full outcome', () => {
    const { messages } = messagesFromOneChunk()
    const [batch, malformed, single, second] = messages as [ValidatedMessage, ValidatedMessage, ValidatedMessage, ValidatedMessage]
    expect(malformed.rejects).toHaveLength(1)
    const stored = (m: ValidatedMessage, i: number, householdId: string | null) => ({ meterId: m.meterId, tsMs: m.datums[i]!.tsMs, values: m.datums[i]!.values, householdId })
    const regression = { ...malformed.rejects[0]!, reason: 'index_regression' as const, tsMs: second.datums[1]!.tsMs, detail: 'lower', payload: datumBytes(second, second.datums[1]!) }
    const result: CommitResult = {
      outcomes: [
        // The middle datum was already stored with the same values; the others go to two households across a move.
        { stored: [stored(batch, 0, 'hh_a'), stored(batch, 2, 'hh_b')], quarantined: [], duplicates: 1 },
        { stored: [], quarantined: malformed.rejects, duplicates: 0 },
        { stored: [stored(single, 0, null)], quarantined: [], duplicates: 0 },
        { stored: [stored(second, 0, 'hh_b')], quarantined: [regression], duplicates: 0 },
      ],
      touched: [{ meterId: 'm1', householdId: 'hh_b', day: '2026-10-01', created: true }],
    }
    const compact = structuredClone(compactResult(messages, messages, result)) as CompactResult
    expect(Array.from(compact.stored)).toEqual([1, 0, 1, 1, 1, 0])
    expect(Array.from(compact.storedCounts)).toEqual([2, 0, 1, 1])
    expect(compact.households).toEqual(['hh_a', 'hh_b', null, 'hh_b'])
    expect(expandResult(messages, compact)).toEqual(result)
  })

  it('carries deferred messages unread, and brings back the values of stored datums only for followed meters', () => {
    const { messages: validatedHere } = messagesFromOneChunk()
    // The same payloads, handed over unread as a broker on PostgreSQL does.
    const deferred = validatedHere.map((m) => deferredMessage({ meterId: m.meterId, commodity: 'electricity' }, m.payload, m.receivedAtMs, DEFAULT_INGEST_LIMITS))
    expect(deferred.map((m) => [m.datums.length, m.rejects.length, m.deferred!.readingsEstimate])).toEqual([
      [0, 0, 3],
      [0, 0, 1],
      [0, 0, 1],
      [0, 0, 2],
    ])
    const followed = [false, false, true, true]
    const { request, transfer } = packCommit(8, 0, deferred, followed)
    const unpacked = unpackCommit(structuredClone(request, { transfer }) as CommitRequest)
    expect(unpacked.followed).toEqual(followed)
    // The thread validates what it received: exactly what the broker would have found.
    const there = unpacked.messages.map((m) => validated(m, DEFAULT_INGEST_LIMITS))
    expect(there.map((m) => ({ ...m, payload: m.payload.toString() }))).toEqual(validatedHere.map((m) => ({ ...m, payload: m.payload.toString() })))
    const stored = (m: ValidatedMessage, i: number, householdId: string | null) => ({ meterId: m.meterId, tsMs: m.datums[i]!.tsMs, values: m.datums[i]!.values, householdId })
    const [batch, malformed, single, second] = there as [ValidatedMessage, ValidatedMessage, ValidatedMessage, ValidatedMessage]
    const result: CommitResult = {
      outcomes: [
        { stored: [stored(batch, 0, 'hh_a'), stored(batch, 2, 'hh_b')], quarantined: [], duplicates: 1 },
        { stored: [], quarantined: malformed.rejects, duplicates: 0 },
        { stored: [stored(single, 0, null)], quarantined: [], duplicates: 0 },
        { stored: [stored(second, 0, 'hh_b'), stored(second, 1, 'hh_b')], quarantined: [], duplicates: 0 },
      ],
      touched: [],
    }
    const compact = structuredClone(compactResult(unpacked.messages, there, result, unpacked.followed)) as CompactResult
    expect(Array.from(compact.storedCounts)).toEqual([2, 0, 1, 2])
    // Nothing per datum for the unfollowed; the followed datums whole, household included.
    expect(Array.from(compact.stored)).toEqual([])
    expect(compact.households).toEqual([])
    expect(compact.followed).toEqual([...result.outcomes[2]!.stored, ...result.outcomes[3]!.stored].map(({ meterId: _m, ...rest }) => rest))
    const expanded = expandResult(deferred, compact, followed)
    expect(expanded.outcomes.map((o) => o.storedCount)).toEqual([2, 0, 1, 2])
    // Unfollowed: counted, not listed. Followed: listed as stored, with their household.
    expect(expanded.outcomes[0]!.stored).toEqual([])
    expect(expanded.outcomes.slice(2).map((o) => o.stored)).toEqual(result.outcomes.slice(2).map((o) => o.stored))
    expect(expanded.outcomes[1]!.quarantined.map((q) => q.reason)).toEqual(['malformed_json'])
    expect(expanded.outcomes.map((o) => o.duplicates)).toEqual([1, 0, 0, 0])
  })

  it('refuses a result whose stored datums are not in their message order', () => {
    const { messages } = messagesFromOneChunk()
    const m = messages[0]!
    const swapped: CommitResult = {
      outcomes: messages.map((x, i) =>
        i === 0
          ? { stored: [1, 0].map((k) => ({ meterId: m.meterId, tsMs: m.datums[k]!.tsMs, values: m.datums[k]!.values, householdId: null })), quarantined: [], duplicates: 0 }
          : { stored: [], quarantined: x.rejects, duplicates: 0 },
      ),
      touched: [],
    }
    expect(() => compactResult(messages, messages, swapped)).toThrow('out of their message order')
  })
})
