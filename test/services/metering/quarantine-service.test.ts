import { expect, it } from 'vitest'
import { listQuarantine, QUARANTINE_EXCERPT_BYTES_MAX, type QuarantineItem } from '../../../services/metering/quarantine-service.ts'
import { InvalidInputError, type QuarantineReason } from '../../../shared/errors.ts'
import { describeDatabases, type TestDatabase } from '../../support/database.ts'

async function quarantine(
  t: TestDatabase,
  row: { meterId: string; receivedAt: string; reason?: QuarantineReason; ts?: string | null; payload?: Buffer },
): Promise<void> {
  const payload = row.payload ?? Buffer.from(`{"ts":"${row.ts ?? 'x'}"}`)
  await t.db
    .insertInto('quarantine')
    .values({
      meter_id: row.meterId,
      // Text, so that microseconds reach the database.
      received_at: row.receivedAt as unknown as Date,
      reason: row.reason ?? 'invalid_schema',
      ts: row.ts === undefined || row.ts === null ? null : new Date(row.ts),
      payload,
      payload_bytes: payload.length,
      detail: 'test',
    })
    .execute()
}

async function walk(t: TestDatabase, q: Parameters<typeof listQuarantine>[1]): Promise<QuarantineItem[]> {
  const items: QuarantineItem[] = []
  let cursor: string | undefined
  for (let pages = 0; pages < 100; pages++) {
    const page = await listQuarantine(t.db, { ...q, cursor })
    items.push(...page.items)
    if (page.nextCursor === null) return items
    expect(page.items).toHaveLength(q.limit)
    cursor = page.nextCursor
  }
  throw new Error('too many pages')
}

describeDatabases('quarantine listing', (t) => {
  it('lists what was quarantined with its reason, timestamp and payload', async () => {
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:01Z', reason: 'future_timestamp', ts: '2026-10-02T00:00:00Z' })
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:02Z', reason: 'malformed_json', payload: Buffer.from('{"ts":') })
    const page = await listQuarantine(t.db, { limit: 10 })
    expect(page).toEqual({
      items: [
        {
          meterId: 'mtr-1',
          receivedAt: '2026-10-01T00:00:01Z',
          reason: 'future_timestamp',
          ts: '2026-10-02T00:00:00Z',
          payloadExcerpt: '{"ts":"2026-10-02T00:00:00Z"}',
        },
        { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:02Z', reason: 'malformed_json', payloadExcerpt: '{"ts":' },
      ],
      nextCursor: null,
    })
    expect('ts' in page.items[1]!).toBe(false)
  })

  it('caps the excerpt at 4 KiB and decodes invalid UTF-8 lossily', async () => {
    const big = Buffer.alloc(10_000, 'a')
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:01Z', reason: 'too_large', payload: big })
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:02Z', payload: Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0xc3, 0xa9, 0x7d]) })
    const { items } = await listQuarantine(t.db, { limit: 10 })
    expect(items[0]!.payloadExcerpt).toBe('a'.repeat(QUARANTINE_EXCERPT_BYTES_MAX))
    expect(QUARANTINE_EXCERPT_BYTES_MAX).toBe(4096)
    expect(items[1]!.payloadExcerpt).toBe('{\uFFFD\uFFFD"é}')
  })

  it('filters by meter and by reception time [from, to)', async () => {
    for (const [meterId, s] of [
      ['mtr-1', '01'],
      ['mtr-2', '02'],
      ['mtr-1', '03'],
      ['mtr-1', '04'],
    ] as const) {
      await quarantine(t, { meterId, receivedAt: `2026-10-01T00:00:${s}Z` })
    }
    const meter = await listQuarantine(t.db, { meterId: 'mtr-1', limit: 10 })
    expect(meter.items.map((i) => i.receivedAt)).toEqual(['2026-10-01T00:00:01Z', '2026-10-01T00:00:03Z', '2026-10-01T00:00:04Z'])
    const range = await listQuarantine(t.db, { from: new Date('2026-10-01T00:00:02Z'), to: new Date('2026-10-01T00:00:04Z'), limit: 10 })
    expect(range.items.map((i) => [i.meterId, i.receivedAt])).toEqual([
      ['mtr-2', '2026-10-01T00:00:02Z'],
      ['mtr-1', '2026-10-01T00:00:03Z'],
    ])
  })

  it('walks every page in (received_at, id) order, including rows received in the same instant', async () => {
    const times = [
      '2026-10-01T00:00:00.000001Z',
      '2026-10-01T00:00:00Z',
      '2026-10-01T00:00:00.000001Z',
      '2026-10-01T00:00:00.000002Z',
      '2026-10-01T00:00:00Z',
      '2026-10-01T00:00:00.0005Z',
      '2026-10-01T00:00:00.000001Z',
    ]
    for (const [i, receivedAt] of times.entries()) {
      await quarantine(t, { meterId: 'mtr-1', receivedAt, payload: Buffer.from(String(i)) })
    }
    const whole = await listQuarantine(t.db, { limit: 100 })
    // Ties on the instant keep insertion (id) order.
    expect(whole.items.map((i) => i.payloadExcerpt)).toEqual(['1', '4', '0', '2', '6', '3', '5'])
    for (const limit of [1, 2, 3]) {
      expect(await walk(t, { limit })).toEqual(whole.items)
    }
  })

  it('refuses bad input naming the field', async () => {
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:01Z' })
    await quarantine(t, { meterId: 'mtr-1', receivedAt: '2026-10-01T00:00:02Z' })
    const cases: [Parameters<typeof listQuarantine>[1], string][] = [
      [{ limit: 0 }, 'limit'],
      [{ limit: 1001 }, 'limit'],
      [{ limit: 10, from: new Date('nope') }, 'from'],
      [{ limit: 10, from: new Date('2026-10-02T00:00:00Z'), to: new Date('2026-10-01T00:00:00Z') }, 'to'],
      [{ limit: 10, cursor: '%%%' }, 'cursor'],
      [{ limit: 10, cursor: Buffer.from('["quarantine","2026-10-01","1"]').toString('base64url') }, 'cursor'],
      [{ limit: 10, cursor: Buffer.from('["readings.daily","mtr-1","2026-10-01","hh"]').toString('base64url') }, 'cursor'],
    ]
    for (const [q, field] of cases) {
      let err: unknown
      try {
        await listQuarantine(t.db, q)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(InvalidInputError)
      expect((err as InvalidInputError).field).toBe(field)
    }
  })
})
