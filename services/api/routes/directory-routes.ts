import { z } from 'zod'
import { formatTimestamp } from '../../../shared/calendar.ts'
import { CURSOR_NOT_RETURNED, cursorListing, isTimestampText, type CursorListing } from '../../../shared/cursor.ts'
import { METER_ID_RE } from '../../../shared/ids.ts'
import { InvalidInputError, TooManyRequestsError } from '../../../shared/errors.ts'
import type { CreationKey } from '../../directory/directory-repository.ts'
import {
  PASSWORD_LENGTH_MAX,
  PASSWORD_LENGTH_MIN,
  createHousehold,
  createMeter,
  createParty,
  listHouseholdsPage,
  listMetersPage,
  listPartiesPage,
  renewApiKey,
  renewMeterSecret,
  retireMeter,
  setHouseholdPassword,
} from '../../directory/directory-service.ts'
import { changePassword, checkCurrentPassword, sessionIdOf } from '../../directory/session-service.ts'
import { presentedApiKeyOf, presentedSessionOf } from '../auth.ts'
import { defineRoute } from '../route.ts'
import { nameString, pageAnswer, pageQueryShape, timeOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** The operator provisions parties, households and meters; keys and secrets are shown once. */

export const NAME_LENGTH_MAX = 200
export const EMAIL_LENGTH_MAX = 254

const OPERATOR = ['operator'] as const

const partyKind = z.enum(['utility', 'third_party'])
const commodity = z.enum(['electricity', 'gas'])

const createPartyBody = z.strictObject({
  kind: partyKind,
  name: nameString(NAME_LENGTH_MAX).meta({ examples: ['Enedis'] }),
})

const passwordString = z
  .string()
  .min(PASSWORD_LENGTH_MIN)
  .max(PASSWORD_LENGTH_MAX)
  .meta({ description: `${PASSWORD_LENGTH_MIN} to ${PASSWORD_LENGTH_MAX} characters; for the portal's sign-in`, examples: ['correct horse battery staple'] })

const createHouseholdBody = z.strictObject({
  name: nameString(NAME_LENGTH_MAX).meta({ examples: ['Famille Dupont'] }),
  email: z.string().trim().max(EMAIL_LENGTH_MAX).pipe(z.email('expected an email address')).meta({ format: 'email', examples: ['dupont@example.org'] }),
  password: passwordString,
})

const createMeterBody = z.strictObject({
  operatorId: z.string().min(1).max(128).meta({ description: 'the utility that operates the meter', examples: ['pty_4k7q9m2x8c1v5b3n'] }),
  commodity,
  intervalMinutes: z.literal([15, 30, 60]),
  id: z
    .string()
    .regex(METER_ID_RE, '1 to 64 characters among A-Z a-z 0-9 . _ : -, starting with a letter or digit')
    .optional()
    .meta({ description: 'the meter id (its serial number, say); generated when absent', examples: ['LINKY-000123'] }),
})

const credentialAnswer = z.object({
  id: z.string(),
  apiKey: z.string().meta({ description: 'shown this once; stored only as a hash' }),
})

const meterAnswer = z.object({
  id: z.string(),
  secret: z.string().meta({ description: "the meter's MQTT password, shown this once; stored only as a hash" }),
})

const idParams = z.strictObject({ id: z.string().min(1).max(128) })

const CREATED_AT_KEY_CHARS_MAX = 64
const ID_KEY_CHARS_MAX = 128

/** Keyed by (created_at as text, id); each listing its own. */
export function creationOrderCursor(listing: string): CursorListing<readonly ['string', 'string']> {
  return cursorListing(listing, ['string', 'string'], {
    refusal: CURSOR_NOT_RETURNED,
    accepts: ([createdAt, id]) => createdAt.length <= CREATED_AT_KEY_CHARS_MAX && isTimestampText(createdAt) && id.length <= ID_KEY_CHARS_MAX,
  })
}

const PARTIES_CURSOR = creationOrderCursor('parties')
const HOUSEHOLDS_CURSOR = creationOrderCursor('households')
const METERS_CURSOR = creationOrderCursor('meters')

export function afterKey(listing: CursorListing<readonly ['string', 'string']>, cursor: string | undefined): CreationKey | null {
  if (cursor === undefined) return null
  const [createdAt, id] = listing.decode(cursor)
  return { createdAt, id }
}

export function nextCursor(listing: CursorListing<readonly ['string', 'string']>, next: CreationKey | null): string | null {
  return next === null ? null : listing.encode([next.createdAt, next.id])
}

export const directoryRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const page = pageQueryShape(deps.config.http.pageItemsMax)

  defineRoute(app, {
    method: 'POST',
    url: '/admin/parties',
    summary: 'Create a utility or a third party',
    description: 'Answers its API key once: the party uses it as its bearer token and as its MQTT password.',
    tags: ['operator'],
    auth: OPERATOR,
    body: createPartyBody,
    status: 201,
    response: credentialAnswer,
    async handler({ body }) {
      return createParty(db, body)
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/admin/households',
    summary: 'Create a household',
    description: 'Answers its API key once. The email and password sign in to the portal; an email is used by one household only.',
    tags: ['operator'],
    auth: OPERATOR,
    body: createHouseholdBody,
    status: 201,
    response: credentialAnswer,
    errors: [409],
    async handler({ body }) {
      return createHousehold(db, body)
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/admin/meters',
    summary: 'Register a meter',
    description:
      'Answers its secret once: the meter connects over MQTT with client id = username = its id and this secret as password. 409 `METER_EXISTS` when the id is taken.',
    tags: ['operator'],
    auth: OPERATOR,
    body: createMeterBody,
    status: 201,
    response: meterAnswer,
    errors: [409],
    async handler({ body }) {
      return createMeter(db, body)
    },
  })

  defineRoute(app, {
    method: 'DELETE',
    url: '/admin/meters/:id',
    summary: 'Take a meter out of service',
    description:
      'A meter replaced or removed: it may not connect from now on (CONNACK 4), and its MQTT connection is closed on every broker. Its id is never given to another meter; its data, occupancies and consents stay. Again: nothing changes.',
    tags: ['operator'],
    auth: OPERATOR,
    params: idParams,
    status: 204,
    errors: [404],
    async handler({ params }) {
      await retireMeter(db, params.id, app.apiContext.now())
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/admin/meters/:id/secret',
    summary: "Renew a meter's secret",
    description:
      'Answers the new secret once. The old one is refused from now on, and the MQTT connection it opened is closed on every broker: the meter reconnects with the new one (a leaked secret, a meter replaced). Of renewals whose transactions overlap, one answers the secret and the others 409.',
    tags: ['operator'],
    auth: OPERATOR,
    params: idParams,
    response: meterAnswer,
    errors: [404, 409],
    async handler({ params }) {
      return renewMeterSecret(db, params.id)
    },
  })

  const RENEW_KEY_DESCRIPTION = 'Answers the new key once. The old one is refused from now on, over HTTP and MQTT, and the MQTT connections it opened are closed.'
  for (const [kind, path] of [
    ['party', 'parties'],
    ['household', 'households'],
  ] as const) {
    defineRoute(app, {
      method: 'POST',
      url: `/admin/${path}/:id/api-key`,
      summary: `Renew a ${kind}'s API key`,
      description: RENEW_KEY_DESCRIPTION + ' Of renewals whose transactions overlap, one answers the key and the others 409, rather than each answering a key the next had ended.',
      tags: ['operator'],
      auth: OPERATOR,
      params: idParams,
      response: credentialAnswer,
      errors: [404, 409],
      async handler({ params }) {
        return renewApiKey(db, kind, params.id)
      },
    })
  }

  defineRoute(app, {
    method: 'POST',
    url: '/admin/households/:id/password',
    summary: "Reset a household's portal password (forgotten)",
    description: 'Ends all its portal sessions.',
    tags: ['operator'],
    auth: OPERATOR,
    params: idParams,
    body: z.strictObject({ password: passwordString }),
    status: 204,
    errors: [404],
    async handler({ params, body }) {
      await setHouseholdPassword(db, params.id, body.password)
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/me/password',
    summary: "Change the household's portal password",
    description:
      'Needs the password in use. Ends all its portal sessions, this one too: sign in again with the new password. ' +
      'Wrong current passwords count as failed sign-ins do (per household from one address, per address, per household): past the limit, 429 with Retry-After.',
    tags: ['household'],
    auth: ['household'] as const,
    body: z.strictObject({ currentPassword: z.string().min(1).max(PASSWORD_LENGTH_MAX), newPassword: passwordString }),
    status: 204,
    errors: [429],
    async handler({ principal, body, request }) {
      try {
        await changePassword(db, { householdId: principal.householdId, address: request.ip, ...body }, app.apiContext.now(), app.apiContext.passwordThrottle)
      } catch (err) {
        if (err instanceof TooManyRequestsError) request.log.warn({ householdId: principal.householdId, address: request.ip }, 'password change throttled')
        throw err
      }
    },
  })

  defineRoute(app, {
    method: 'POST',
    url: '/me/api-key',
    summary: "Renew the household's API key",
    description:
      RENEW_KEY_DESCRIPTION +
      ' Called with the API key, it renews that key only if it is still the one in force: of renewals sent at once with one key, one answers the new key and the others 401.' +
      ' Called with a portal session, it needs the password in use (`currentPassword`, checked as `/me/password` checks it): a session, which a password change ends, would otherwise make a key that outlives it; of such renewals whose transactions overlap, one answers the key and the others 409.' +
      ' Called with the key, `currentPassword` may be left out; when it is given it is checked all the same (400 naming it when wrong).',
    tags: ['household'],
    auth: ['household'] as const,
    body: z.strictObject({ currentPassword: z.string().min(1).max(PASSWORD_LENGTH_MAX).optional() }).optional(),
    response: credentialAnswer,
    errors: [409, 429],
    async handler({ principal, body, request }) {
      const presented = presentedApiKeyOf(request)
      const currentPassword = body?.currentPassword
      if (presented === undefined && currentPassword === undefined) throw new InvalidInputError('currentPassword: required to renew the API key from a portal session', 'currentPassword')
      // With the key the password is not needed, but one that is sent is checked: a client that sends it means to confirm the user.
      if (currentPassword !== undefined) {
        try {
          await checkCurrentPassword(db, { householdId: principal.householdId, address: request.ip, currentPassword }, app.apiContext.now(), app.apiContext.passwordThrottle)
        } catch (err) {
          if (err instanceof TooManyRequestsError) request.log.warn({ householdId: principal.householdId, address: request.ip }, 'api key renewal throttled')
          throw err
        }
      }
      const token = presentedSessionOf(request)
      const sessionId = token === undefined ? undefined : sessionIdOf(token)
      return renewApiKey(db, 'household', principal.householdId, presented, sessionId === undefined ? undefined : { sessionId, now: app.apiContext.now() })
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/admin/parties',
    summary: 'List parties (no keys)',
    tags: ['operator'],
    auth: OPERATOR,
    query: z.strictObject({ kind: partyKind.optional(), ...page }),
    response: pageAnswer(z.object({ id: z.string(), kind: partyKind, name: z.string(), createdAt: timeOutput })),
    async handler({ query }) {
      const result = await listPartiesPage(db, { after: afterKey(PARTIES_CURSOR, query.cursor), limit: query.limit, kind: query.kind })
      return {
        items: result.items.map((p) => ({ id: p.id, kind: p.kind, name: p.name, createdAt: formatTimestamp(p.createdAt) })),
        nextCursor: nextCursor(PARTIES_CURSOR, result.next),
      }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/admin/households',
    summary: 'List households (no keys or passwords)',
    tags: ['operator'],
    auth: OPERATOR,
    query: z.strictObject({ ...page }),
    response: pageAnswer(z.object({ id: z.string(), name: z.string(), email: z.string(), createdAt: timeOutput })),
    async handler({ query }) {
      const result = await listHouseholdsPage(db, { after: afterKey(HOUSEHOLDS_CURSOR, query.cursor), limit: query.limit })
      return {
        items: result.items.map((h) => ({ id: h.id, name: h.name, email: h.email, createdAt: formatTimestamp(h.createdAt) })),
        nextCursor: nextCursor(HOUSEHOLDS_CURSOR, result.next),
      }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/admin/meters',
    summary: 'List meters (no secrets)',
    tags: ['operator'],
    auth: OPERATOR,
    query: z.strictObject({ operatorId: z.string().min(1).max(128).optional(), ...page }),
    response: pageAnswer(
      z.object({
        id: z.string(),
        operatorId: z.string(),
        commodity,
        intervalMinutes: z.literal([15, 30, 60]),
        createdAt: timeOutput,
        retiredAt: timeOutput.nullable().meta({ description: 'when it was taken out of service; null while in service' }),
      }),
    ),
    async handler({ query }) {
      const result = await listMetersPage(db, { after: afterKey(METERS_CURSOR, query.cursor), limit: query.limit, operatorId: query.operatorId })
      return {
        items: result.items.map((m) => ({
          id: m.id,
          operatorId: m.operatorId,
          commodity: m.commodity,
          intervalMinutes: m.intervalMinutes,
          createdAt: formatTimestamp(m.createdAt),
          retiredAt: m.retiredAt === null ? null : formatTimestamp(m.retiredAt),
        })),
        nextCursor: nextCursor(METERS_CURSOR, result.next),
      }
    },
  })
}
