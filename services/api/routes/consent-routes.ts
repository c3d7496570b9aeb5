import { z } from 'zod'
import { formatTimestamp } from '../../../shared/calendar.ts'
import { InvalidInputError } from '../../../shared/errors.ts'
import { BPS_TOTAL } from '../../../shared/money.ts'
import { GRANULARITIES } from '../../../shared/wire.ts'
import { listAccessLog, type AccessLogEntry } from '../../consent/access-log-service.ts'
import {
  CONSENT_METERS_MAX,
  CONSENT_VALIDITY_YEARS_MAX,
  createLegalBasisConsent,
  grantConsent,
  listConsentLog,
  listHouseholdConsents,
  listRecipientConsents,
  revokeConsent,
  type Consent,
} from '../../consent/consent-service.ts'
import {
  OFFER_THIRD_PARTIES_MAX,
  PRICE_MICROS_PER_DATUM_MAX,
  PURPOSE_LENGTH_MAX,
  createOffer,
  listOffersPage,
  withdrawOffer,
  householdShare,
  type Offer,
} from '../../consent/offer-service.ts'
import { listReleasedReadings } from '../../consent/released-readings-service.ts'
import { defineRoute } from '../route.ts'
import { queryDayInput, microsOutput, nameString, pageAnswer, pageQueryShape, rfc3339Time, timeOutput } from '../validation.ts'
import { afterKey, creationOrderCursor, nextCursor } from './directory-routes.ts'
import { egressDatumSchema, readingsCursorScope, readingsQueryShape, readingsRange } from './reading-routes.ts'
import type { RoutePlugin } from './route-plugin.ts'

/**
 * Offers (operator), consents and the logs a household reads, a supplier's legal basis
 * (operator), and the recipients' side: the consents that name them and the data released
 * to them (`GET /data/readings`), under the release rule.
 */

const OPERATOR = ['operator'] as const
const HOUSEHOLD = ['household'] as const
const RECIPIENT = ['recipient'] as const

const idString = z.string().min(1).max(128)
const granularity = z.enum(GRANULARITIES)
const bps = z.number().int().min(0).max(BPS_TOTAL)
const MICROS_RE = /^(0|[1-9]\d{0,18})$/

/** Micro-euros per datum, as a string of an integer (like amounts in answers) or a JSON integer. */
const priceInput = z
  .union([z.string().max(20), z.number()])
  .meta({ description: 'integer micro-euros per datum, at least 0: a string ("1250") or an integer written out (a fraction or an exponent is refused)', examples: ['1250'] })
  .transform((v, ctx) => {
    const text = typeof v === 'number' ? (Number.isSafeInteger(v) ? String(v) : '') : v
    if (!MICROS_RE.test(text) || BigInt(text) > PRICE_MICROS_PER_DATUM_MAX) {
      ctx.addIssue({ code: 'custom', message: `must be an integer of micro-euros from 0 to ${PRICE_MICROS_PER_DATUM_MAX}`, input: v })
      return z.NEVER
    }
    return BigInt(text)
  })

const splitShape = z.strictObject({
  householdBps: bps,
  operatorBps: bps.meta({ description: "the meter's operator (the utility operating the meter whose datum is sold)" }),
  platformBps: bps,
  thirdParties: z
    .array(z.strictObject({ partyId: idString, bps }))
    .max(OFFER_THIRD_PARTIES_MAX)
    .default([])
    .meta({ description: `other beneficiaries, at most ${OFFER_THIRD_PARTIES_MAX}` }),
})

const offerAnswer = z.object({
  id: z.string(),
  recipientId: z.string(),
  recipientName: z.string(),
  purpose: z.string(),
  granularity,
  priceMicrosPerDatum: microsOutput,
  split: z.object({
    householdBps: z.number(),
    operatorBps: z.number(),
    platformBps: z.number(),
    thirdParties: z.array(z.object({ partyId: z.string(), bps: z.number() })),
  }),
  createdAt: timeOutput,
  withdrawnAt: timeOutput.nullable().meta({ description: 'when it stopped taking new consents; null while open' }),
})

const householdOfferAnswer = offerAnswer.extend({
  householdBps: z.number().meta({ description: 'the household’s part of the price, in basis points (10,000 = all)' }),
  householdMicrosPerDatum: microsOutput.meta({ description: 'the household’s part of one datum’s price, rounded down' }),
  householdMicrosPer10000Datums: microsOutput.meta({ description: 'the household’s part of 10,000 datums’ price, exact' }),
})

function offerToWire(o: Offer): z.output<typeof offerAnswer> {
  return {
    id: o.id,
    recipientId: o.recipientId,
    recipientName: o.recipientName,
    purpose: o.purpose,
    granularity: o.granularity,
    priceMicrosPerDatum: o.priceMicrosPerDatum.toString(),
    split: o.split,
    createdAt: formatTimestamp(o.createdAt),
    withdrawnAt: o.withdrawnAt === null ? null : formatTimestamp(o.withdrawnAt),
  }
}

const consentAnswer = z.object({
  id: z.string(),
  kind: z.enum(['offer', 'legal_basis']),
  householdId: z.string(),
  recipientId: z.string(),
  recipientName: z.string(),
  offerId: z.string().nullable().meta({ description: 'null for a legal basis' }),
  purpose: z.string(),
  granularity,
  allMeters: z.boolean().meta({ description: 'the household chose all its meters (those it occupied at the grant)' }),
  meterIds: z.array(z.string()),
  endedMeterIds: z.array(z.string()).meta({ description: 'of meterIds, those it covers no more: the household moved out' }),
  validFrom: timeOutput,
  validUntil: timeOutput,
  dataFrom: timeOutput.meta({ description: 'data stamped at or after this is released' }),
  dataUntil: timeOutput.nullable().meta({ description: 'data stamped before this is released; null = no end' }),
  status: z.enum(['active', 'revoked', 'expired', 'ended_by_move_out']),
  statusChangedAt: timeOutput,
  revokedAt: timeOutput.nullable(),
  priceMicrosPerDatum: microsOutput.meta({ description: '"0" for a legal basis (free)' }),
  householdBps: z.number().nullable().meta({ description: 'the household’s share; null for a legal basis' }),
})

function consentToWire(c: Consent): z.output<typeof consentAnswer> {
  return {
    id: c.id,
    kind: c.kind,
    householdId: c.householdId,
    recipientId: c.recipientId,
    recipientName: c.recipientName,
    offerId: c.offerId,
    purpose: c.purpose,
    granularity: c.granularity,
    allMeters: c.allMeters,
    meterIds: c.meterIds,
    endedMeterIds: c.endedMeterIds,
    validFrom: formatTimestamp(c.validFrom),
    validUntil: formatTimestamp(c.validUntil),
    dataFrom: formatTimestamp(c.dataFrom),
    dataUntil: c.dataUntil === null ? null : formatTimestamp(c.dataUntil),
    status: c.status,
    statusChangedAt: formatTimestamp(c.statusChangedAt),
    revokedAt: c.revokedAt === null ? null : formatTimestamp(c.revokedAt),
    priceMicrosPerDatum: c.priceMicrosPerDatum.toString(),
    householdBps: c.householdBps,
  }
}

const consentLogAnswer = z.object({
  id: z.string(),
  consentId: z.string(),
  event: z.enum(['granted', 'revoked', 'expired', 'ended_by_move_out']),
  meterId: z.string().nullable().meta({ description: 'the meter a move-out ended the consent for' }),
  actor: z.string().meta({ description: "the household's id, 'operator' or 'system'" }),
  at: timeOutput,
})

const accessLogAnswer = z.object({
  recipientId: z.string(),
  recipientName: z.string(),
  meterId: z.string(),
  day: z.string().meta({ format: 'date', description: 'the local day the datums belong to (a monthly datum: the first day of its month)' }),
  channel: z.enum(['mqtt', 'http']),
  datums: z.number().int(),
})

function accessToWire(e: AccessLogEntry): z.output<typeof accessLogAnswer> {
  return {
    recipientId: e.recipientId,
    recipientName: e.recipientName,
    meterId: e.meterId,
    day: e.day,
    channel: e.channel,
    datums: Number(e.datums),
  }
}

const meterIdsInput = z
  .array(idString)
  .min(1, 'must be at least 1 item (leave it out for all its meters)')
  .max(CONSENT_METERS_MAX)
  .optional()
  .meta({ description: 'absent: every meter the household occupies now' })

const consentTerms = {
  validUntil: rfc3339Time.meta({ description: `the end of the consent, at most ${CONSENT_VALIDITY_YEARS_MAX} years ahead` }),
  dataFrom: rfc3339Time.optional().meta({ description: 'release data stamped from then on; may lie in the past; default: now' }),
  dataUntil: rfc3339Time.optional().meta({ description: 'release data stamped before then; default: no end' }),
}

/** A household's acceptance of an offer (`POST /me/consents`, and the portal's form without script). */
export const householdGrantBody = z.strictObject({ offerId: idString, meterIds: meterIdsInput, ...consentTerms })

const OFFERS_CURSOR = creationOrderCursor('offers')
const HOUSEHOLD_OFFERS_CURSOR = creationOrderCursor('household-offers')

export const consentRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const now = () => app.apiContext.now()
  const page = pageQueryShape(deps.config.http.pageItemsMax)

  defineRoute(app, {
    method: 'POST',
    url: '/admin/offers',
    summary: 'Publish an offer',
    description: `A recipient pays \`priceMicrosPerDatum\` for each datum of the granularity, split in basis points that sum to exactly ${BPS_TOTAL}. Offers never change: a new price is a new offer.`,
    tags: ['operator'],
    auth: OPERATOR,
    body: z.strictObject({
      recipientId: idString,
      purpose: nameString(PURPOSE_LENGTH_MAX),
      granularity,
      priceMicrosPerDatum: priceInput,
      split: splitShape,
    }),
    status: 201,
    response: z.object({ id: z.string() }),
    async handler({ body }) {
      return createOffer(db, body)
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/admin/offers',
    summary: 'Published offers, oldest first',
    tags: ['operator'],
    auth: OPERATOR,
    query: z.strictObject({ recipientId: idString.optional(), ...page }),
    response: pageAnswer(offerAnswer),
    async handler({ query }) {
      const result = await listOffersPage(db, { after: afterKey(OFFERS_CURSOR, query.cursor), limit: query.limit, recipientId: query.recipientId })
      return { items: result.items.map(offerToWire), nextCursor: nextCursor(OFFERS_CURSOR, result.next) }
    },
  })

  defineRoute(app, {
    method: 'DELETE',
    url: '/admin/offers/:id',
    summary: 'Withdraw an offer',
    description:
      'It takes no new consents from now on (a grant of it answers 409) and households no longer see it among the offers; the consents that accepted it keep its terms until they end. Withdrawing it again changes nothing. A new price is a new offer.',
    tags: ['operator'],
    auth: OPERATOR,
    params: z.strictObject({ id: idString }),
    status: 204,
    errors: [404],
    async handler({ params }) {
      await withdrawOffer(db, params.id, now())
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/admin/legal-basis-consents',
    summary: "Record a supplier's legal basis",
    description:
      "A supplier's regulated access to a household's billing data: monthly granularity, free of charge, created with the supply contract. Give `dataFrom` = the start of the contract (a month's data is released when the month starts inside the window). It is shown to the household like any consent, and ended by the operator (`DELETE /admin/consents/{id}`).",
    tags: ['operator'],
    auth: OPERATOR,
    body: z.strictObject({
      recipientId: idString.meta({ description: 'the supplier (a utility)' }),
      householdId: idString,
      meterIds: meterIdsInput,
      purpose: nameString(PURPOSE_LENGTH_MAX).optional(),
      ...consentTerms,
    }),
    status: 201,
    response: z.object({ id: z.string() }),
    // CONSENT_OVERLAP: the same supplier already holds a legal basis for this household in force.
    errors: [409],
    async handler({ body }) {
      const created = await createLegalBasisConsent(db, body, now())
      await deps.releaseChanged?.({ kind: 'consent', id: created.id })
      return created
    },
  })

  defineRoute(app, {
    method: 'DELETE',
    url: '/admin/consents/:id',
    summary: 'End any consent at once (a legal basis when the supply contract ends)',
    tags: ['operator'],
    auth: OPERATOR,
    params: z.strictObject({ id: idString }),
    status: 204,
    errors: [404, 409],
    async handler({ params }) {
      await revokeConsent(db, params.id, { role: 'operator' }, now())
      await deps.releaseChanged?.({ kind: 'consent', id: params.id })
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/offers',
    summary: 'Offers the household may accept, with its share',
    tags: ['household'],
    auth: HOUSEHOLD,
    query: z.strictObject({ ...page }),
    response: pageAnswer(householdOfferAnswer),
    async handler({ query }) {
      const result = await listOffersPage(db, { after: afterKey(HOUSEHOLD_OFFERS_CURSOR, query.cursor), limit: query.limit, openOnly: true })
      return {
        items: result.items.map((offer) => {
          const o = { ...offer, ...householdShare(offer) }
          return {
            ...offerToWire(o),
            householdBps: o.householdBps,
            householdMicrosPerDatum: o.householdMicrosPerDatum.toString(),
            householdMicrosPer10000Datums: o.householdMicrosPer10000Datums.toString(),
          }
        }),
        nextCursor: nextCursor(HOUSEHOLD_OFFERS_CURSOR, result.next),
      }
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/me/consents',
    summary: 'Accept an offer',
    description: `For some of the meters the household occupies now, or all of them. Valid from now until \`validUntil\` (at most ${CONSENT_VALIDITY_YEARS_MAX} years); releases data stamped in [dataFrom, dataUntil), which may reach back in history. 409 when a consent in force already gives the offer's recipient the same granularity of one of these meters' data over part of the same data window: the recipient would pay for it twice; revoke that consent first.`,
    tags: ['household'],
    auth: HOUSEHOLD,
    body: householdGrantBody,
    status: 201,
    errors: [409],
    response: z.object({ id: z.string() }),
    async handler({ body, principal }) {
      const granted = await grantConsent(db, principal.householdId, body, now())
      await deps.releaseChanged?.({ kind: 'consent', id: granted.id })
      return granted
    },
  })

  defineRoute(app, {
    method: 'DELETE',
    url: '/me/consents/:id',
    summary: 'Revoke a consent, at once',
    description: 'Nothing more is released under it from now on, live or pulled. Revoking twice is harmless; an expired consent is a 409, a legal basis a 403.',
    tags: ['household'],
    auth: HOUSEHOLD,
    params: z.strictObject({ id: idString }),
    status: 204,
    errors: [403, 404, 409],
    async handler({ params, principal }) {
      await revokeConsent(db, params.id, { role: 'household', householdId: principal.householdId }, now())
      // Answered once this process's broker forwards nothing more under it.
      await deps.releaseChanged?.({ kind: 'consent', id: params.id })
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/consents',
    summary: "The household's consents, in grant order",
    tags: ['household'],
    auth: HOUSEHOLD,
    query: z.strictObject({ ...page }),
    response: pageAnswer(consentAnswer),
    async handler({ query, principal }) {
      const result = await listHouseholdConsents(db, principal.householdId, query, now())
      return { items: result.items.map(consentToWire), nextCursor: result.next }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/consent-log',
    summary: 'Every grant, revocation, expiry and end by move-out, oldest first',
    tags: ['household'],
    auth: HOUSEHOLD,
    query: z.strictObject({ ...page }),
    response: pageAnswer(consentLogAnswer),
    async handler({ query, principal }) {
      const result = await listConsentLog(db, principal.householdId, query, now())
      return {
        items: result.items.map((e) => ({ ...e, at: formatTimestamp(e.at) })),
        nextCursor: result.next,
      }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/access-log',
    summary: 'Who received how much of the household’s data',
    description: 'Datums released per recipient, meter, local day the datums belong to and channel (mqtt live, http pulled).',
    tags: ['household'],
    auth: HOUSEHOLD,
    query: z.strictObject({
      from: queryDayInput(deps.config.timezone).optional().meta({ description: 'first day, YYYY-MM-DD (or a time: the local day it falls in)' }),
      to: queryDayInput(deps.config.timezone).optional().meta({ description: 'last day, YYYY-MM-DD, included (or a time: the local day it falls in)' }),
      recipientId: idString.optional(),
      ...page,
    }),
    response: pageAnswer(accessLogAnswer),
    async handler({ query, principal }) {
      if (query.from !== undefined && query.to !== undefined && query.to < query.from) {
        throw new InvalidInputError(`to: ${query.to} is before from (${query.from})`, 'to')
      }
      const result = await listAccessLog(db, principal.householdId, {
        fromDay: query.from,
        toDay: query.to,
        recipientId: query.recipientId,
        cursor: query.cursor,
        limit: query.limit,
      })
      return { items: result.items.map(accessToWire), nextCursor: result.next }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/recipient/consents',
    summary: 'Consents that name the recipient, in grant order',
    tags: ['recipient'],
    auth: RECIPIENT,
    query: z.strictObject({ ...page }),
    response: pageAnswer(consentAnswer),
    async handler({ query, principal }) {
      const result = await listRecipientConsents(db, principal.partyId, query)
      return { items: result.items.map(consentToWire), nextCursor: result.next }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/data/readings',
    summary: 'Data released to the recipient',
    description:
      'Exactly what the release rule releases to the recipient now, shaped as the MQTT egress payloads, in (meter, household, time) order. Without `meterId`: every meter it may see. A meter it holds no consent for answers an empty page, as a meter that does not exist does. Every datum returned is counted in the household’s access log.',
    tags: ['recipient'],
    auth: RECIPIENT,
    query: z.strictObject({ meterId: idString.optional(), ...readingsQueryShape(deps.config.http.pageItemsMax) }),
    response: pageAnswer(egressDatumSchema),
    async handler({ query, principal, request }) {
      const at = now()
      const { from, to } = readingsRange(query, at, deps.config.ingest.futureToleranceMs)
      return listReleasedReadings(
        db,
        principal.partyId,
        {
          meterId: query.meterId,
          from,
          to,
          granularity: query.granularity,
          cursor: query.cursor,
          cursorScope: readingsCursorScope(principal.partyId, query),
          limit: query.limit,
        },
        // A HEAD answer sends no data: the household's access log counts none (found by probing).
        { timezone: deps.config.timezone, now: at, metrics: deps.metrics, sent: request.method !== 'HEAD' },
      )
    },
  })
}
