import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { sql } from 'kysely'
import type { MqttClient } from 'mqtt'
import { expect, it } from 'vitest'
import type { EgressPolicy } from '../../../broker/egress.ts'
import { grantConsent } from '../../../services/consent/consent-service.ts'
import { createOffer } from '../../../services/consent/offer-service.ts'
import { listReleasedReadings } from '../../../services/consent/released-readings-service.ts'
import { dailyDatumsToPublish } from '../../../services/metering/daily-publication.ts'
import { takeDueDays } from '../../../services/metering/daily-publication-repository.ts'
import { MeterTails, commitMessages, scriptedIngest, type CommitResult } from '../../../services/metering/ingest-service.ts'
import { validatePayload, type ValidatedMessage } from '../../../services/metering/ingest-validation.ts'
import { createOccupancy, moveOut } from '../../../services/metering/occupancy-service.ts'
import { listReadings, type ReleaseWindow } from '../../../services/metering/reading-service.ts'
import { findMonthRollupTotals, pairKey } from '../../../services/settlement/settlement-repository.ts'
import { datumDayOf } from '../../../shared/calendar.ts'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { TOPIC_WILDCARD_DAILY, meterReadingsTopic } from '../../../shared/topics.ts'
import type { EgressDatum, Granularity, RegisterValues } from '../../../shared/wire.ts'
import { connectClient, connectMeter, endClient, ownerOnlyPolicy, publishAcked, startTestBroker, subscribeCollect, waitFor } from '../../support/broker.ts'
import { describeDatabases } from '../../support/database.ts'
import { seedHousehold, seedMeter } from '../../support/seed.ts'
import { createTestMeter, createUtility } from '../../support/world.ts'
import { offerInput, seedParty } from '../consent/consent-world.ts'

/**
 * Model-based (differential) test of the stateful heart of metering: random histories of
 * readings (in order, out of order, duplicated, conflicting, regressing, across local midnights
 * and the October DST change of Europe/Paris) and of move-ins and move-outs (registered late,
 * moved, cancelled, hand-overs at one instant, gaps), driven through the real ingest transaction,
 * the occupancy service, the daily publication, the reading service and the recipients' pull on a
 * real database (and through a broker on a socket, meters and a `daily/+` follower on MQTT), and
 * compared with an oracle written from CONTRACT.md and README ("Time", "Attribution", "Bad data",
 * "Daily and monthly data"), not from the product's code.
 *
 * A failure prints fast-check's seed and path; METERSHARE_MODEL_SEED=<seed> (and
 * METERSHARE_MODEL_PATH=<path>) replays it.
 */

const TZ = 'Europe/Paris'
const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const POWER = '1-0:1.7.0'
const GAS = '7-0:3.0.0'
const MINUTE = 60_000
const HOUR = 60 * MINUTE
/** Local midnight opening 2026-10-23 (CEST, +02:00); the clocks go back on 2026-10-25 at 03:00. */
const START_MS = Date.parse('2026-10-23T00:00:00+02:00')
/** The data span: four and a bit local days, through the 25-hour day. */
const SPAN_MS = 100 * HOUR
/** Occupancy instants fall on this grid (finer than the meters' intervals: a move-in between readings). */
const MOVE_STEP_MS = 15 * MINUTE
/** Receipt time of every message: after all data (no future_timestamp), before the real clock. */
const RECEIVED_AT_MS = Date.parse('2026-11-15T12:00:00Z')
/** The clock the occupancy service is given: before every move, so that each may still change. */
const OCCUPANCY_NOW = new Date(START_MS - 86_400_000)
/** Histories per database (each of 3 to 14 steps on 2 meters and 3 households); METERSHARE_MODEL_RUNS overrides it for a longer search by hand. */
const NUM_RUNS = Number(process.env.METERSHARE_MODEL_RUNS ?? '') || 60
/** Histories through a real broker on a socket, per database (slower: a broker per history, MQTT round trips). */
const BROKER_NUM_RUNS = Number(process.env.METERSHARE_MODEL_BROKER_RUNS ?? '') || 20
/** A test's time limit for `runs` histories: at least 5 minutes, and 1 s a history for a longer search by hand (PostgreSQL took 0.8 s a history). */
const timeoutMsFor = (runs: number): number => Math.max(300_000, runs * 1_000)
const LIST_LIMIT = 1000
/** Listings ask for [from, to), which selects a day or a month when its start lies in it: the whole of October and November. */
const LISTED_FROM = new Date('2026-10-01T00:00:00+02:00')
const LISTED_TO = new Date('2026-12-01T00:00:00+01:00')
/** When a recipient is granted data and pulls it: after the data, the days over. */
const PULL_NOW = new Date(RECEIVED_AT_MS)

// ---------------------------------------------------------------------------------------------
// The oracle: calendar, attribution, bad input, rollups, days and their energy, from the documents.

const localDateFormat = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' })

/** The local calendar date of an instant. */
function localDate(ms: number): string {
  return localDateFormat.format(new Date(ms))
}

/** README "Time": day D holds the datums stamped in (D 00:00, D+1 00:00] local time. */
function dayOfDatum(ms: number): string {
  return localDate(ms - 1)
}

/** The instant of local midnight opening `day` (Paris is one or two hours ahead of UTC). */
function dayStartMs(day: string): number {
  const utcMidnight = Date.parse(`${day}T00:00:00Z`)
  for (const ahead of [2, 1]) {
    const ms = utcMidnight - ahead * HOUR
    if (localDate(ms) === day) return ms
  }
  throw new Error(`no local midnight found for ${day}`)
}

/** A timestamp as the egress payloads write it (CONTRACT.md: `2026-10-01T00:30:00Z`). */
function formatTs(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z')
}

function nextDay(day: string): string {
  const d = new Date(`${day}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + 1)
  return d.toISOString().slice(0, 10)
}

/** The last day of `month` (YYYY-MM). */
function lastDayOfMonth(month: string): string {
  const d = new Date(`${nextMonth(month)}-01T00:00:00Z`)
  d.setUTCDate(0)
  return d.toISOString().slice(0, 10)
}

/** The month after `month` (YYYY-MM). */
function nextMonth(month: string): string {
  const d = new Date(`${month}-01T00:00:00Z`)
  d.setUTCMonth(d.getUTCMonth() + 1)
  return d.toISOString().slice(0, 7)
}

interface ModelOccupancy {
  id: string
  meterId: string
  householdId: string
  fromMs: number
  untilMs: number | null
}

interface ModelMeter {
  id: string
  commodity: 'electricity' | 'gas'
  intervalMs: number
}

interface Datum {
  tsMs: number
  values: RegisterValues
}

interface ModelGroup {
  meterId: string
  householdId: string | null
  day: string
  datums: Datum[]
  /** Per cumulative code: the sum of the energy its datums measure. */
  energy: RegisterValues
  /** Whether one of its datums measures an interval (its previous reading is the same owner's). */
  measures: boolean
}

function isCumulativeCode(code: string): boolean {
  return code === IMPORT || code === EXPORT || code === GAS
}

function sameRegisterValues(a: RegisterValues, b: RegisterValues): boolean {
  const ka = Object.keys(a).sort()
  const kb = Object.keys(b).sort()
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k])
}

class Model {
  readonly occupancies: ModelOccupancy[] = []
  readonly stored = new Map<string, Map<number, RegisterValues>>()
  readonly quarantine: { meterId: string; tsMs: number; reason: string }[] = []

  constructor(readonly meters: readonly ModelMeter[]) {
    for (const m of meters) this.stored.set(m.id, new Map())
  }

  meter(id: string): ModelMeter {
    return this.meters.find((m) => m.id === id)!
  }

  /** CONTRACT.md "What happens to bad input", datum by datum in arrival order. */
  ingest(meterId: string, datums: readonly Datum[]): void {
    const series = this.stored.get(meterId)!
    for (const d of datums) {
      const existing = series.get(d.tsMs)
      if (existing !== undefined) {
        if (!sameRegisterValues(existing, d.values)) this.quarantine.push({ meterId, tsMs: d.tsMs, reason: 'conflict' })
        continue
      }
      if (this.regresses(series, d)) {
        this.quarantine.push({ meterId, tsMs: d.tsMs, reason: 'index_regression' })
        continue
      }
      series.set(d.tsMs, d.values)
    }
  }

  /** README "Bad data": each register against its own nearest earlier and later stored values. */
  private regresses(series: Map<number, RegisterValues>, d: Datum): boolean {
    for (const [code, value] of Object.entries(d.values)) {
      if (!isCumulativeCode(code)) continue
      let earlier: [number, number] | null = null
      let later: [number, number] | null = null
      for (const [ts, values] of series) {
        const v = values[code]
        if (v === undefined) continue
        if (ts < d.tsMs && (earlier === null || ts > earlier[0])) earlier = [ts, v]
        if (ts > d.tsMs && (later === null || ts < later[0])) later = [ts, v]
      }
      if (earlier !== null && value < earlier[1]) return true
      if (later !== null && value > later[1]) return true
    }
    return false
  }

  /** The occupancy of the meter holding `tsMs` ([from, until)), if any. */
  occupancyAt(meterId: string, tsMs: number): ModelOccupancy | undefined {
    return this.occupancies.find((o) => o.meterId === meterId && o.fromMs <= tsMs && (o.untilMs === null || tsMs < o.untilMs))
  }

  ownerAt(meterId: string, tsMs: number): string | null {
    return this.occupancyAt(meterId, tsMs)?.householdId ?? null
  }

  private overlaps(meterId: string, fromMs: number, untilMs: number | null, except: string | null): boolean {
    return this.occupancies.some(
      (o) => o.id !== except && o.meterId === meterId && (untilMs === null || o.fromMs < untilMs) && (o.untilMs === null || fromMs < o.untilMs),
    )
  }

  /**
   * README "Daily and monthly data": a household does not come back to a meter on the day it left it
   * (409): one of its stays ending before another begins, both touching one day (of datums: the
   * reading at midnight closes the day before). Stays back to back are one stay.
   */
  private returnsSameDay(meterId: string, householdId: string, changed: { id: string | null; fromMs: number; untilMs: number | null }): boolean {
    const stays = [...this.occupancies.filter((o) => o.meterId === meterId && o.householdId === householdId && o.id !== changed.id), changed]
    return stays.some((left) =>
      stays.some(
        (back) =>
          (left === changed || back === changed) &&
          left.untilMs !== null &&
          left.untilMs < back.fromMs &&
          dayOfDatum(left.untilMs - 1) === dayOfDatum(back.fromMs) &&
          // no stay of the household's between them
          !stays.some((o) => o !== left && o !== back && left.fromMs < o.fromMs && o.fromMs < back.fromMs),
      ),
    )
  }

  /** Whether a move-in would be refused (an overlap, or its household back the day it left: 409). */
  refusesOccupancy(meterId: string, householdId: string, fromMs: number, untilMs: number | null): boolean {
    return this.overlaps(meterId, fromMs, untilMs, null) || this.returnsSameDay(meterId, householdId, { id: null, fromMs, untilMs })
  }

  /** Whether a move-out would be refused: not after the move-in (400), an overlap, or its household back the day it left (409). */
  refusesMoveOut(o: ModelOccupancy, untilMs: number | null): boolean {
    if (untilMs !== null && untilMs <= o.fromMs) return true
    return this.overlaps(o.meterId, o.fromMs, untilMs, o.id) || this.returnsSameDay(o.meterId, o.householdId, { id: o.id, fromMs: o.fromMs, untilMs })
  }

  /** The stored readings of a meter in ts order, with their owner now (README "Attribution": a late move re-attributes). */
  readings(meterId: string): { tsMs: number; values: RegisterValues; householdId: string | null }[] {
    return [...this.stored.get(meterId)!.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([tsMs, values]) => ({ tsMs, values, householdId: this.ownerAt(meterId, tsMs) }))
  }

  /**
   * The (meter, household, day) groups and their energy. README "Time": the energy of a datum is its
   * cumulative index minus the meter's previous one (of that register) when that one has the same
   * owner, none across a change of owner; a day's energy is the sum over its datums.
   */
  groups(meterId: string): ModelGroup[] {
    const out = new Map<string, ModelGroup>()
    const previous = new Map<string, { value: number; householdId: string | null }>()
    let previousOwner: string | null | undefined
    for (const r of this.readings(meterId)) {
      const day = dayOfDatum(r.tsMs)
      const key = JSON.stringify([r.householdId, day])
      let g = out.get(key)
      if (g === undefined) out.set(key, (g = { meterId, householdId: r.householdId, day, datums: [], energy: {}, measures: false }))
      g.datums.push({ tsMs: r.tsMs, values: r.values })
      if (previousOwner !== undefined && previousOwner === r.householdId) g.measures = true
      previousOwner = r.householdId
      for (const [code, value] of Object.entries(r.values)) {
        if (!isCumulativeCode(code)) continue
        const before = previous.get(code)
        const energy = before !== undefined && before.householdId === r.householdId ? value - before.value : 0
        g.energy[code] = (g.energy[code] ?? 0) + energy
        previous.set(code, { value, householdId: r.householdId })
      }
    }
    return [...out.values()]
  }

  /**
   * README "Time": a group that measures no interval (a household's lone first reading, stamped at
   * the midnight closing the day before its first) is no day of the household's.
   */
  isDay(g: ModelGroup): boolean {
    return g.householdId !== null && g.measures
  }

  /**
   * README "Time": a day's energy is final once fixed at both ends by its own boundary readings: the
   * closing one (at midnight, or the household's last before its move-out) and the opening one (the
   * reading at the midnight before, the household's; or, on its first day, its first reading possible
   * after moving in). Readings are stamped on the meter's interval grid.
   */
  isFinal(g: ModelGroup): boolean {
    const meter = this.meter(g.meterId)
    const first = g.datums[0]!.tsMs
    const last = g.datums[g.datums.length - 1]!.tsMs
    const end = dayStartMs(nextDay(g.day))
    const start = dayStartMs(g.day)
    const lastOccupancy = this.occupancyAt(g.meterId, last)!
    const closing = last === end || (lastOccupancy.untilMs !== null && last + meter.intervalMs >= lastOccupancy.untilMs)
    const series = this.stored.get(g.meterId)!
    const openingMidnight = series.has(start) && this.ownerAt(g.meterId, start) === g.householdId
    const firstOccupancy = this.occupancyAt(g.meterId, first)!
    const previousTs = Math.max(-Infinity, ...[...series.keys()].filter((ts) => ts < first))
    const firstPossible = first - meter.intervalMs < firstOccupancy.fromMs && (previousTs === -Infinity || this.ownerAt(g.meterId, previousTs) !== g.householdId)
    return closing && (openingMidnight || firstPossible)
  }

  /**
   * README "Daily and monthly data": a household's month of a meter is final once every one of its
   * days is and they leave none out: taken as runs of consecutive days, each run opens on the month's
   * first day or a move-in and closes on its last day or a move-out, and each of the household's stays
   * in the month has its days. `days` are the household's days of one meter and month, in order.
   */
  isFinalMonth(days: readonly ModelGroup[]): boolean {
    if (days.length === 0 || !days.every((g) => this.isFinal(g))) return false
    const runs: Array<{ first: string; last: string }> = []
    for (const g of days) {
      const run = runs.at(-1)
      if (run !== undefined && (g.day === run.last || g.day === nextDay(run.last))) run.last = g.day
      else runs.push({ first: g.day, last: g.day })
    }
    const { meterId, householdId } = days[0]!
    const month = days[0]!.day.slice(0, 7)
    const monthStart = dayStartMs(`${month}-01`)
    const monthEnd = dayStartMs(`${nextMonth(month)}-01`)
    const stays = this.occupancies.filter((o) => o.meterId === meterId && o.householdId === householdId)
    const interval = this.meter(meterId).intervalMs
    // A move-in opens day `day` when no day of the household's could come before it: it moved in that
    // day, or less than an interval before (its first reading, at the midnight, is no day).
    const opens = (fromMs: number, day: string) => dayStartMs(day) - interval < fromMs && fromMs <= dayStartMs(nextDay(day))
    // A move-out closes day `day` when it falls after the day's start, up to the midnight closing it.
    const closes = (untilMs: number, day: string) => dayStartMs(day) < untilMs && untilMs <= dayStartMs(nextDay(day))
    const whole = runs.every(
      (r) =>
        (r.first === `${month}-01` || stays.some((o) => opens(o.fromMs, r.first))) &&
        (nextDay(r.last).slice(0, 7) !== month || stays.some((o) => o.untilMs !== null && closes(o.untilMs, r.last))),
    )
    // Each stay in the month has its days: a move-in that can open a day of the month, a move-out that
    // can close one (not the meeting of two stays back to back), falls within a run.
    const movedIn = stays.filter((o) => o.fromMs >= monthStart && o.fromMs < monthEnd - interval && !stays.some((b) => b.untilMs === o.fromMs))
    const movedOut = stays.filter((o) => o.untilMs !== null && o.untilMs > monthStart + interval && o.untilMs <= monthEnd && !stays.some((b) => b.fromMs === o.untilMs))
    return (
      whole &&
      movedIn.every((o) => runs.some((r) => dayStartMs(r.first) - interval < o.fromMs && o.fromMs <= dayStartMs(nextDay(r.last)))) &&
      movedOut.every((o) => runs.some((r) => dayStartMs(r.first) < o.untilMs! && o.untilMs! <= dayStartMs(nextDay(r.last))))
    )
  }

  /** README "Time": a day is complete once its meter has sent a datum stamped at or after its end. */
  isComplete(g: ModelGroup): boolean {
    const end = dayStartMs(nextDay(g.day))
    return [...this.stored.get(g.meterId)!.keys()].some((ts) => ts >= end)
  }

  /** The daily datums `daily/` may carry now: owned days, complete and final (README "Daily and monthly data"). */
  publishable(): Map<string, RegisterValues> {
    const out = new Map<string, RegisterValues>()
    for (const m of this.meters) {
      for (const g of this.groups(m.id)) {
        if (this.isDay(g) && this.isFinal(g) && this.isComplete(g)) out.set(JSON.stringify([g.meterId, g.householdId, g.day]), g.energy)
      }
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Histories.

interface IngestStep {
  kind: 'ingest'
  /** Messages committed together (one group commit), in this order. */
  messages: { meter: number; start: number; length: number; stride: number; reverse: boolean; faults: { at: number; kind: 'lower' | 'higher' | 'power' | 'again' }[] }[]
}
interface OccupyStep {
  kind: 'occupy'
  meter: number
  household: number
  from: number
  until: number | null
}
interface MoveOutStep {
  kind: 'moveOut'
  occupancy: number
  until: number | null
}

const MOVE_SLOTS = SPAN_MS / MOVE_STEP_MS
/** Hours from START_MS to the local midnights of the span (2026-10-25 has 25 hours). */
const MIDNIGHT_HOURS = [0, 24, 48, 73, 97]
const HALF_HOUR = 30 * MINUTE
/** Local midnights of the span, as move slots, so that moves at midnight are frequent. */
const MIDNIGHT_SLOTS = MIDNIGHT_HOURS.map((h) => (h * HOUR) / MOVE_STEP_MS)

const moveSlot = fc.oneof(fc.constantFrom(...MIDNIGHT_SLOTS), fc.integer({ min: 0, max: MOVE_SLOTS }))

const ingestStep: fc.Arbitrary<IngestStep> = fc.record({
  kind: fc.constant('ingest' as const),
  messages: fc.array(
    fc.record({
      meter: fc.nat(1),
      // In half hours from START_MS; often at a local midnight, so that a day's boundary readings come late or alone.
      start: fc.oneof(fc.integer({ min: 0, max: SPAN_MS / HALF_HOUR }), fc.constantFrom(...MIDNIGHT_HOURS.map((h) => 2 * h)), fc.constantFrom(...MIDNIGHT_HOURS.map((h) => 2 * h - 1))),
      // Short messages, and long ones that cover days whole (40 datums or more: PostgreSQL's COPY path).
      length: fc.oneof(fc.integer({ min: 1, max: 14 }), fc.integer({ min: 24, max: 80 })),
      stride: fc.constantFrom(1, 1, 1, 2),
      reverse: fc.boolean(),
      faults: fc.array(fc.record({ at: fc.nat(), kind: fc.constantFrom('lower' as const, 'higher' as const, 'power' as const, 'again' as const) }), { maxLength: 2 }),
    }),
    { minLength: 1, maxLength: 2 },
  ),
})

const occupyStep: fc.Arbitrary<OccupyStep> = fc
  .record({ meter: fc.nat(1), household: fc.nat(2), from: moveSlot, length: fc.option(fc.integer({ min: 1, max: MOVE_SLOTS }), { freq: 2 }) })
  .map(({ meter, household, from, length }) => ({ kind: 'occupy' as const, meter, household, from, until: length === null ? null : from + length }))

const moveOutStep: fc.Arbitrary<MoveOutStep> = fc.record({
  kind: fc.constant('moveOut' as const),
  occupancy: fc.nat(),
  until: fc.option(moveSlot, { freq: 4 }),
})

const history = fc.record({
  intervals: fc.tuple(fc.constantFrom(30, 60), fc.constantFrom(30, 60)),
  seeds: fc.tuple(fc.nat(10_000), fc.nat(10_000)),
  steps: fc.array(fc.oneof({ arbitrary: ingestStep, weight: 4 }, { arbitrary: occupyStep, weight: 2 }, { arbitrary: moveOutStep, weight: 1 }), {
    minLength: 3,
    maxLength: 14,
  }),
})

type History = typeof history extends fc.Arbitrary<infer T> ? T : never

/** The meter's true cumulative indexes: a deterministic, non-decreasing series per tick. */
function trueValues(meter: ModelMeter, seed: number, tick: number): RegisterValues {
  let imp = 100_000 + seed
  let exp = 5_000
  for (let i = 1; i <= tick; i++) {
    imp += (i * 7919 + seed * 104_729) % 401
    if ((i + seed) % 5 === 0) exp += 37
  }
  if (meter.commodity === 'gas') return { [GAS]: imp }
  return { [IMPORT]: imp, [EXPORT]: exp, [POWER]: (tick * 131 + seed) % 3000 }
}

// ---------------------------------------------------------------------------------------------
// The property.

/** One message of a step, as sent. */
interface Sent {
  meter: ModelMeter
  datums: Datum[]
}

/** What the model expects of a step's daily publication: the publishable days now, and those that became so. */
interface Publication {
  where: string
  now: ReadonlyMap<string, RegisterValues>
  newly: ReadonlyMap<string, RegisterValues>
}

/** How a history reaches the product. */
interface Driver {
  meters(intervals: readonly [number, number]): Promise<ModelMeter[]>
  /** Commits a step's messages (one group commit, or one publish each) and checks its daily publication. */
  ingest(sent: readonly Sent[], expected: Publication): Promise<void>
  /** Checks the daily publication that a move (an occupancy step) made due. */
  moved(expected: Publication): Promise<void>
  /** The model's publishable days at the end of a step, whatever the step. */
  stepDone(publishable: ReadonlyMap<string, RegisterValues>): void
  finish(): Promise<void>
}

function payloadOf(datums: readonly Datum[]): string {
  return JSON.stringify({ readings: datums.map((d) => ({ ts: new Date(d.tsMs).toISOString(), values: d.values })) })
}

function message(meter: ModelMeter, datums: readonly Datum[]): ValidatedMessage {
  return validatePayload({ meterId: meter.id, commodity: meter.commodity }, Buffer.from(payloadOf(datums)), RECEIVED_AT_MS, DEFAULT_INGEST_LIMITS)
}

function key(meterId: string, householdId: string | null, day: string): string {
  return JSON.stringify([meterId, householdId, day])
}

/** A daily payload as a recipient sees it (no household), with its values in a stable order. */
function dayKey(meterId: string, day: string, values: RegisterValues): string {
  return JSON.stringify([meterId, day, Object.entries(values).sort()])
}

/** Totals over the histories run (printed with METERSHARE_MODEL_STATS=1): how much each check had to bite on. */
const STATS = { runs: 0, published: 0, publishedAfterMoves: 0, quarantined: 0, occupancies: 0, groups: 0, final: 0, finalMonths: 0, releasedDays: 0 }

describeDatabases('metering against a model of the documents', (t) => {
  /**
   * Runs a history through `driver` (the service layer, or a broker on a socket) and compares
   * the product with the model after each step and at its end.
   */
  async function runHistory(h: History, driver: Driver): Promise<void> {
    const meters = await driver.meters(h.intervals)
    const households = [await seedHousehold(t.db), await seedHousehold(t.db), await seedHousehold(t.db)]
    const model = new Model(meters)
    const ctx = { timezone: TZ }

    /** The publishable days before a move step. */
    let before: Map<string, RegisterValues> | null = null
    for (const [index, step] of h.steps.entries()) {
      const where = `step ${index} (${JSON.stringify(step)})`
      before = null
      if (step.kind === 'ingest') {
        const before = model.publishable()
        const sent: Sent[] = []
        for (const spec of step.messages) {
          const meter = meters[spec.meter]!
          const ticks = SPAN_MS / meter.intervalMs
          const datums: Datum[] = []
          for (let i = 0; i < spec.length; i++) {
            const tick = Math.floor((Math.max(spec.start, 0) * HALF_HOUR) / meter.intervalMs) + i * spec.stride
            if (tick > ticks) break
            datums.push({ tsMs: START_MS + tick * meter.intervalMs, values: trueValues(meter, h.seeds[spec.meter]!, tick) })
          }
          if (spec.reverse) datums.reverse()
          for (const f of spec.faults) {
            const d = datums[f.at % datums.length]!
            const code = meter.commodity === 'gas' ? GAS : IMPORT
            if (f.kind === 'again') datums.push({ ...d })
            else if (f.kind === 'power') {
              if (meter.commodity === 'electricity') datums.push({ tsMs: d.tsMs, values: { ...d.values, [POWER]: d.values[POWER]! + 1 } })
            } else d.values = { ...d.values, [code]: d.values[code]! + (f.kind === 'lower' ? -250 : 250) }
          }
          sent.push({ meter, datums })
          model.ingest(meter.id, datums)
        }
        const now = model.publishable()
        const newly = new Map<string, RegisterValues>()
        for (const [k, values] of now) {
          const was = before.get(k)
          if (was === undefined) newly.set(k, values)
          else expect(was, `${where}: (the model) a publishable day's energy changed without a move: ${k}`).toEqual(values)
        }
        await driver.ingest(sent, { where, now, newly })
      } else if (step.kind === 'occupy') {
        before = model.publishable()
        const meter = meters[step.meter]!
        const fromMs = START_MS + step.from * MOVE_STEP_MS
        const untilMs = step.until === null ? null : START_MS + step.until * MOVE_STEP_MS
        const householdId = households[step.household]!
        const refused = model.refusesOccupancy(meter.id, householdId, fromMs, untilMs)
        const outcome = await createOccupancy(t.db, { meterId: meter.id, householdId, from: new Date(fromMs), until: untilMs === null ? null : new Date(untilMs) }, ctx, OCCUPANCY_NOW).then(
          (r) => r.id,
          (err: Error) => err,
        )
        if (refused) expect(outcome, `${where}: an overlapping move-in is refused`).toBeInstanceOf(Error)
        else {
          if (outcome instanceof Error) throw outcome
          model.occupancies.push({ id: outcome, meterId: meter.id, householdId, fromMs, untilMs })
        }
      } else {
        if (model.occupancies.length === 0) continue
        before = model.publishable()
        const o = model.occupancies[step.occupancy % model.occupancies.length]!
        const untilMs = step.until === null ? null : START_MS + step.until * MOVE_STEP_MS
        const refused = model.refusesMoveOut(o, untilMs)
        const outcome = await moveOut(t.db, o.id, untilMs === null ? null : new Date(untilMs), ctx, OCCUPANCY_NOW).then(
          () => null,
          (err: Error) => err,
        )
        if (refused) expect(outcome, `${where}: a move-out before the move-in or overlapping another occupancy is refused`).toBeInstanceOf(Error)
        else {
          if (outcome !== null) throw outcome
          o.untilMs = untilMs
        }
      }
      if (before !== null) {
        // A move, refused or not: the days it made publishable, given to a household or changed, are published after it.
        const now = model.publishable()
        const newly = new Map([...now].filter(([k, values]) => !isDeepStrictEqual(before!.get(k), values)))
        await driver.moved({ where, now, newly })
      }
      await compareStored(model, meters, where)
      driver.stepDone(model.publishable())
    }
    await driver.finish()
    await compareListings(model, meters, households)
    STATS.runs++
    STATS.quarantined += model.quarantine.length
    STATS.occupancies += model.occupancies.length
    for (const g of meters.flatMap((m) => model.groups(m.id))) {
      STATS.groups++
      if (model.isDay(g) && model.isFinal(g)) STATS.final++
    }
    // What the histories exercised, by hand: METERSHARE_MODEL_STATS=1.
    if (process.env.METERSHARE_MODEL_STATS === '1') console.log(JSON.stringify(STATS))
  }

  async function compareStored(model: Model, meters: readonly ModelMeter[], where: string): Promise<void> {
    const ids = meters.map((m) => m.id)
    const readings = await t.db.selectFrom('readings').select(['meter_id', 'ts', 'household_id', 'values']).where('meter_id', 'in', ids).orderBy('meter_id').orderBy('ts').execute()
    const expectedReadings = [...ids]
      .sort()
      .flatMap((id) => model.readings(id).map((r) => ({ meterId: id, ts: new Date(r.tsMs).toISOString(), householdId: r.householdId, values: r.values })))
    expect(
      readings.map((r) => ({ meterId: r.meter_id, ts: r.ts.toISOString(), householdId: r.household_id, values: r.values })),
      `${where}: the stored readings and their owners`,
    ).toEqual(expectedReadings)

    const quarantine = await sql<{ meter_id: string; ts: Date; reason: string }>`SELECT meter_id, ts, reason FROM quarantine WHERE meter_id = ANY(${ids}::text[])`.execute(t.db)
    const sortQ = (q: { meterId: string; ts: string; reason: string }[]) => q.map((x) => JSON.stringify(x)).sort()
    expect(sortQ(quarantine.rows.map((q) => ({ meterId: q.meter_id, ts: q.ts.toISOString(), reason: q.reason }))), `${where}: the quarantine`).toEqual(
      sortQ(model.quarantine.map((q) => ({ meterId: q.meterId, ts: new Date(q.tsMs).toISOString(), reason: q.reason }))),
    )

    const rollups = await t.db.selectFrom('daily_rollups').selectAll().where('meter_id', 'in', ids).execute()
    const actual = rollups
      .map((r) => ({
        key: key(r.meter_id, r.household_id, r.day),
        count: r.readings_count,
        firstTs: r.first_ts.toISOString(),
        lastTs: r.last_ts.toISOString(),
        indexMin: r.index_min,
        indexMax: r.index_max,
      }))
      .sort((a, b) => (a.key < b.key ? -1 : 1))
    const expected = meters
      .flatMap((m) => model.groups(m.id))
      .map((g) => {
        const indexMin: RegisterValues = {}
        const indexMax: RegisterValues = {}
        for (const d of g.datums) {
          for (const [code, v] of Object.entries(d.values)) {
            if (!isCumulativeCode(code)) continue
            indexMin[code] = Math.min(indexMin[code] ?? Infinity, v)
            indexMax[code] = Math.max(indexMax[code] ?? -Infinity, v)
          }
        }
        return {
          key: key(g.meterId, g.householdId, g.day),
          count: g.datums.length,
          firstTs: new Date(g.datums[0]!.tsMs).toISOString(),
          lastTs: new Date(g.datums[g.datums.length - 1]!.tsMs).toISOString(),
          indexMin,
          indexMax,
        }
      })
      .sort((a, b) => (a.key < b.key ? -1 : 1))
    expect(actual, `${where}: the daily rollups`).toEqual(expected)
  }

  /** What a household's GET /me/readings lists, and what a recipient released everything may pull. */
  async function compareListings(model: Model, meters: readonly ModelMeter[], households: readonly string[]): Promise<void> {
    const ctx = { timezone: TZ }
    const span = { from: LISTED_FROM, to: LISTED_TO }
    const groups = meters.flatMap((m) => model.groups(m.id))
    for (const householdId of households) {
      const list = async (granularity: Granularity, windows?: ReleaseWindow[]) =>
        (await listReadings(t.db, { meterIds: meters.map((m) => m.id), householdId, windows, ...span, granularity, limit: LIST_LIMIT }, ctx)).items
      const ownReadings = meters
        .slice()
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .flatMap((m) => model.readings(m.id).filter((r) => r.householdId === householdId).map((r) => ({ meterId: m.id, ts: formatTs(r.tsMs), granularity: 'load_curve', values: r.values })))
      expect(await list('load_curve'), `the load curve household ${householdId} sees`).toEqual(ownReadings)

      const days = groups.filter((g) => g.householdId === householdId && model.isDay(g))
      const asDaily = (g: ModelGroup) => ({ meterId: g.meterId, day: g.day, granularity: 'daily', values: g.energy })
      const byMeterDay = (a: ModelGroup, b: ModelGroup) => (a.meterId === b.meterId ? (a.day < b.day ? -1 : 1) : a.meterId < b.meterId ? -1 : 1)
      expect(await list('daily'), `the days household ${householdId} sees`).toEqual(days.sort(byMeterDay).map(asDaily))

      const months = new Map<string, { meterId: string; month: string; granularity: string; values: RegisterValues }>()
      for (const g of days) {
        const k = JSON.stringify([g.meterId, g.day.slice(0, 7)])
        const m = months.get(k) ?? { meterId: g.meterId, month: g.day.slice(0, 7), granularity: 'monthly', values: {} }
        for (const [code, e] of Object.entries(g.energy)) m.values[code] = (m.values[code] ?? 0) + e
        months.set(k, m)
      }
      expect(await list('monthly'), `the months household ${householdId} sees`).toEqual([...months.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, m]) => m))

      // Released under windows open on every side: only days whose energy is final.
      const windows = meters.map((m) => ({ meterId: m.id, householdId, from: new Date(0), until: null }))
      const releasable = days.filter((g) => model.isFinal(g))
      expect(await list('daily', windows), `the days a recipient of household ${householdId}'s data may pull`).toEqual(releasable.map(asDaily))
      const finalMonths = [...months.entries()]
        .filter(([k]) => {
          const [meterId, month] = JSON.parse(k) as [string, string]
          return model.isFinalMonth(days.filter((g) => g.meterId === meterId && g.day.startsWith(month)))
        })
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([, m]) => m)
      STATS.finalMonths += finalMonths.length
      expect(await list('monthly', windows), `the months a recipient of household ${householdId}'s data may pull`).toEqual(finalMonths)
      // Settlement judges a month in one pass over all of its households (findMonthRollupTotals): alike.
      for (const k of months.keys()) {
        const [meterId, month] = JSON.parse(k) as [string, string]
        const totals = await findMonthRollupTotals(t.db, `${month}-01`, lastDayOfMonth(month), TZ)
        expect(totals.get(pairKey(meterId, householdId))?.monthFinal, `settlement's word on ${k} of household ${householdId}`).toBe(
          model.isFinalMonth(days.filter((g) => g.meterId === meterId && g.day.startsWith(month))),
        )
      }
    }
    await compareReleased(model, meters, households)
  }

  /**
   * The release rule end to end (DESIGN.md, README "Consents"): each household still in a meter at
   * PULL_NOW grants a recipient load-curve data (which covers the daily) of all its meters, history
   * included, and the recipient pulls (`GET /data/readings`'s service): the household's readings of
   * those meters, and its days that are complete, final and over.
   */
  async function compareReleased(model: Model, meters: readonly ModelMeter[], households: readonly string[]): Promise<void> {
    const recipientId = await seedParty(t.db, 'third_party', 'Model recipient')
    const offerId = (await createOffer(t.db, offerInput(recipientId, { granularity: 'load_curve' }))).id
    const expected: Record<'load_curve' | 'daily', EgressDatum[]> = { load_curve: [], daily: [] }
    for (const householdId of households) {
      const occupied = meters.filter((m) => model.occupancyAt(m.id, PULL_NOW.getTime())?.householdId === householdId)
      if (occupied.length === 0) continue
      await grantConsent(t.db, householdId, { offerId, validUntil: new Date(PULL_NOW.getTime() + 365 * 86_400_000), dataFrom: LISTED_FROM }, PULL_NOW)
      for (const m of occupied) {
        for (const r of model.readings(m.id)) {
          if (r.householdId === householdId) expected.load_curve.push({ meterId: m.id, ts: formatTs(r.tsMs), granularity: 'load_curve', values: r.values })
        }
        for (const g of model.groups(m.id)) {
          const over = dayStartMs(nextDay(g.day)) <= PULL_NOW.getTime()
          if (g.householdId === householdId && model.isDay(g) && model.isFinal(g) && model.isComplete(g) && over) {
            expected.daily.push({ meterId: m.id, day: g.day, granularity: 'daily', values: g.energy })
          }
        }
      }
    }
    for (const granularity of ['load_curve', 'daily'] as const) {
      const items: EgressDatum[] = []
      let cursor: string | undefined
      do {
        const page = await listReleasedReadings(t.db, recipientId, { from: LISTED_FROM, to: LISTED_TO, granularity, cursor, limit: LIST_LIMIT }, { timezone: TZ, now: PULL_NOW })
        items.push(...page.items)
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      const order = (d: EgressDatum) => JSON.stringify([d.meterId, d.granularity === 'load_curve' ? d.ts : d.granularity === 'daily' ? d.day : d.month])
      const sorted = expected[granularity].sort((a, b) => (order(a) < order(b) ? -1 : 1))
      if (granularity === 'daily') STATS.releasedDays += items.length
      expect(items, `the ${granularity} data released to a recipient of every household still in its meters`).toEqual(sorted)
    }
  }

  /** The service layer: the ingest transaction as the broker calls it, then the daily publication it runs after a commit. */
  function serviceDriver(scripted: boolean): Driver {
    const ingestContext = {
      dialect: t.dialect,
      datumDayOf: (ms: number) => datumDayOf(ms, TZ),
      tails: new MeterTails(),
      ...(scripted ? { scripted: scriptedIngest(t.handle) } : {}),
    }
    return {
      async meters(intervals) {
        return [
          { id: await seedMeter(t.db, { commodity: 'electricity', intervalMinutes: intervals[0] as 30 | 60 }), commodity: 'electricity', intervalMs: intervals[0] * MINUTE },
          { id: await seedMeter(t.db, { commodity: 'gas', intervalMinutes: intervals[1] as 30 | 60 }), commodity: 'gas', intervalMs: intervals[1] * MINUTE },
        ]
      },
      async ingest(sent, expected) {
        const result: CommitResult = await commitMessages(t.db, sent.map((m) => message(m.meter, m.datums)), ingestContext)
        const datums = await dailyDatumsToPublish(
          t.db,
          result.touched.map((g) => ({ meterId: g.meterId, day: g.day, created: g.created, householdId: g.householdId })),
          { timezone: TZ },
        )
        const published = new Map(datums.map((d) => [key(d.meterId, d.householdId, d.day), d.values]))
        STATS.published += published.size
        for (const [k, values] of published) {
          expect(expected.now.get(k), `${expected.where}: published ${k} ${JSON.stringify(values)}, not a final complete day of the model`).toEqual(values)
        }
        // Every day this step made publishable is published by it.
        for (const [k, values] of expected.newly) expect(published.get(k), `${expected.where}: ${k} became publishable but was not published`).toEqual(values)
      },
      async moved(expected) {
        // What the move recorded for a broker to publish: exactly the days it made publishable.
        const due = await takeDueDays(t.db, 100_000)
        const recorded = new Map(due.map((d) => [key(d.meterId, d.householdId, d.day), d.values]))
        STATS.publishedAfterMoves += recorded.size
        expect(recorded, `${expected.where}: the days the move recorded as due on daily/`).toEqual(new Map(expected.newly))
      },
      stepDone() {},
      async finish() {},
    }
  }

  /**
   * A broker on a socket, one for all the histories of a test: each meter publishes its messages QoS 1
   * with its own credentials, and a recipient the policy releases every owned datum to follows
   * `daily/+`. A daily payload names no household: days are compared by (meter, day, values).
   */
  async function startBrokerWorld(): Promise<{ driver: () => Driver; close: () => Promise<void> }> {
    const recipient = await createUtility(t.db, 'Model recipient')
    const releaseAll: EgressPolicy = { ...ownerOnlyPolicy, releasedTo: (partyId, datum) => (partyId === recipient.id ? (datum.householdId ?? null) : null) }
    const broker = await startTestBroker(t.handle, { timezone: TZ, policy: releaseAll })
    const follower = await connectClient(broker.url, { clientId: 'model-recipient', username: recipient.id, password: recipient.apiKey })
    const { messages, granted } = await subscribeCollect(follower, TOPIC_WILDCARD_DAILY)
    expect(granted).toBe(1)
    const received = (meterIds: readonly string[]) =>
      messages
        .map((m) => m.payload as { meterId: string; day: string; values: RegisterValues })
        .filter((p) => meterIds.includes(p.meterId))
        .map((p) => dayKey(p.meterId, p.day, p.values))
    const driver = (): Driver => {
      const clients = new Map<string, MqttClient>()
      /** Every (meter, day, values) the model held publishable at the end of some step. */
      const allowed = new Set<string>()
      const toDayKey = ([k, values]: [string, RegisterValues]) => {
        const [meterId, , day] = JSON.parse(k) as [string, string, string]
        return dayKey(meterId, day, values)
      }
      return {
        async meters(intervals) {
          const out: ModelMeter[] = []
          for (const [i, commodity] of (['electricity', 'gas'] as const).entries()) {
            const m = await createTestMeter(t.db, recipient.id, { commodity, intervalMinutes: intervals[i] as 30 | 60 })
            clients.set(m.id, await connectMeter(broker.url, m))
            out.push({ id: m.id, commodity, intervalMs: intervals[i]! * MINUTE })
          }
          return out
        },
        async ingest(sent, expected) {
          // One client per meter keeps each meter's messages in order [MQTT-4.6.0-2]; the meters go side by side.
          await Promise.all(sent.map((m) => publishAcked(clients.get(m.meter.id)!, meterReadingsTopic(m.meter.id), payloadOf(m.datums))))
          const wanted = [...expected.newly].map(toDayKey)
          await waitFor(() => wanted.every((w) => received([...clients.keys()]).includes(w)), 10_000, `${expected.where}: the days that became publishable, on daily/+ (${wanted.join(' ')})`)
        },
        async moved(expected) {
          const wanted = [...expected.newly].map(toDayKey)
          await waitFor(() => wanted.every((w) => received([...clients.keys()]).includes(w)), 10_000, `${expected.where}: the days the move made publishable, on daily/+ (${wanted.join(' ')})`)
        },
        stepDone(publishable) {
          for (const entry of publishable) allowed.add(toDayKey(entry))
        },
        async finish() {
          for (const c of clients.values()) await endClient(c)
          const seen = received([...clients.keys()])
          for (const r of seen) expect(allowed.has(r), `published on daily/+: ${r}, a value the model never held publishable`).toBe(true)
          STATS.published += seen.length
        },
      }
    }
    return {
      driver,
      close: async () => {
        await endClient(follower)
        await broker.close()
      },
    }
  }

  function parameters(numRuns: number): fc.Parameters<[History]> {
    const seed = process.env.METERSHARE_MODEL_SEED
    const path = process.env.METERSHARE_MODEL_PATH
    return {
      numRuns,
      ...(seed !== undefined && seed !== '' ? { seed: Number(seed) } : {}),
      ...(path !== undefined && path !== '' ? { path } : {}),
    }
  }

  it(`agrees with the model through the services (${NUM_RUNS} histories): attribution, quarantine, rollups, daily energy, publication, listings`, async () => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(history, async (h) => {
        // On PostgreSQL, every other history goes through the scripted transaction, as the broker's ingest thread sends it.
        await runHistory(h, serviceDriver(t.dialect === 'postgres' && run++ % 2 === 1))
      }),
      parameters(NUM_RUNS),
    )
  }, timeoutMsFor(NUM_RUNS))

  it(`agrees with the model through a broker on a socket (${BROKER_NUM_RUNS} histories)`, async () => {
    const world = await startBrokerWorld()
    try {
      await fc.assert(
        fc.asyncProperty(history, async (h) => {
          await runHistory(h, world.driver())
        }),
        parameters(BROKER_NUM_RUNS),
      )
    } finally {
      await world.close()
    }
  }, timeoutMsFor(BROKER_NUM_RUNS))
})
