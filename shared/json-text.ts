/**
 * JSON text read as written, for what parsing it loses: how deep it nests, a number literal that a
 * double would round (a fraction, an exponent, more digits than a double holds exactly), and where
 * each element of an array stands in the text. Used by the HTTP API on request bodies and by ingest
 * on meters' payloads: every number either takes is a whole one, and `600000.99999999999999` or
 * `6e5` would reach it as 600001 and 600000 if only the parsed value were looked at.
 *
 * Strings are skipped, escapes and all; the text need not have been parsed yet, but only valid JSON
 * gets meaningful answers.
 */

export type JsonTextProblem =
  /** Arrays and objects nested deeper than `nestingMax`. */
  | { kind: 'nesting'; field: string }
  /** A key written twice in one object: JSON.parse keeps the last, and what the first said is lost unseen. */
  | { kind: 'duplicate'; field: string }
  /** A number literal with a fraction or an exponent, or of more than `digitsMax` digits. */
  | { kind: 'number'; field: string; literal: string }

export interface JsonTextLimits {
  nestingMax: number
  /** Digits an integer literal may have (15: every such integer is exactly a double; 16 when a safe-integer check follows the parse). */
  digitsMax: number
}

const NUMBER_RE = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y

/** Keys of an object compared one by one up to this many; past it, kept in a Set (a payload of 10,000 keys). */
const KEYS_LISTED_MAX = 16

/** The keys read so far in one open object, as JSON.parse would name them. */
class SeenKeys {
  private list: string[] = []
  private set: Set<string> | null = null

  /** Adds a key; false when the object had it already. */
  add(key: string): boolean {
    if (this.set !== null) return this.set.size < this.set.add(key).size
    if (this.list.includes(key)) return false
    this.list.push(key)
    if (this.list.length > KEYS_LISTED_MAX) this.set = new Set(this.list)
    return true
  }
}

/**
 * What is wrong with JSON text: nesting deeper than allowed if it does (said first, since whoever
 * reads the text next may walk it), else its first key written twice in one object, else its first
 * number literal a double would round, with the field it is in: keys joined by dots, array positions
 * in brackets (`split.thirdParties[0].bps`, `readings[3].values.1-0:1.8.0`), after `root` when the
 * text is not an object (`body[0]`), or the root itself for the whole. Null when fit.
 */
export function jsonTextProblem(text: string, limits: JsonTextLimits, root = ''): JsonTextProblem | null {
  // The containers open at this point of the text: each with its current key (objects, as offsets
  // into the text, sliced only to name a field) or index (arrays).
  const open: Array<{ array: boolean; keyStart: number; keyEnd: number; keyEscaped: boolean; index: number; keys: SeenKeys | null }> = []
  /** A key as JSON.parse names it: its text, or with an escape its parse (found by verifying: `k\u0069nd` was named so). */
  const keyAt = (start: number, end: number, escaped: boolean): string => {
    const raw = text.slice(start, end)
    if (!escaped) return raw
    try {
      return JSON.parse(`"${raw}"`) as string
    } catch {
      // Not valid JSON: whoever parses the text says so.
      return raw
    }
  }
  const here = (): string => {
    let name = ''
    for (const level of open) {
      const key = keyAt(level.keyStart, level.keyEnd, level.keyEscaped)
      name += level.array ? `[${level.index}]` : name === '' ? key : `.${key}`
    }
    return name === '' || name.startsWith('[') ? `${root}${name}` : name
  }
  // The last string read, as offsets.
  let stringStart = 0
  let stringEnd = 0
  // The first number that would be rounded: said once the whole text is known not to nest too deep.
  let number: JsonTextProblem | null = null
  let duplicate: JsonTextProblem | null = null
  // Whether the last string read holds an escape (its name is then its parse, not its text).
  let stringEscaped = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      stringStart = i + 1
      stringEscaped = false
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) {
        if (text.charCodeAt(i) === 0x5c) {
          stringEscaped = true
          i++
        }
      }
      stringEnd = i
    } else if (c === 0x5b || c === 0x7b) {
      if (open.length >= limits.nestingMax) return { kind: 'nesting', field: root }
      open.push({ array: c === 0x5b, keyStart: 0, keyEnd: 0, keyEscaped: false, index: 0, keys: null })
    } else if (c === 0x5d || c === 0x7d) open.pop()
    else if (c === 0x3a && open.length > 0) {
      const level = open[open.length - 1]!
      level.keyStart = stringStart
      level.keyEnd = stringEnd
      level.keyEscaped = stringEscaped
      if (duplicate === null && !(level.keys ??= new SeenKeys()).add(keyAt(stringStart, stringEnd, stringEscaped))) duplicate = { kind: 'duplicate', field: here() }
    } else if (c === 0x2c && open.length > 0) open[open.length - 1]!.index++
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      NUMBER_RE.lastIndex = i
      const m = NUMBER_RE.exec(text)
      if (m === null) continue
      const literal = m[0]
      const digits = literal.length - (c === 0x2d ? 1 : 0)
      if (number === null && (m[1] !== undefined || m[2] !== undefined || digits > limits.digitsMax)) number = { kind: 'number', field: here(), literal }
      i += literal.length - 1
    }
  }
  return duplicate ?? number
}

/**
 * Where each element of the array under the top-level key `key` stands in the text, as
 * `[start, end)` offsets, whitespace around it left out; null when that cannot be told from the
 * text as written (no such key, or one written with escapes), or when the count differs from
 * `expected` (what parsing found). Of a key written twice, the last, as JSON.parse keeps it.
 */
export function arrayElementSpans(text: string, key: string, expected: number): Array<[number, number]> | null {
  let depth = 0
  let spans: Array<[number, number]> | null = null
  let collecting = false
  let keyHere = false
  let lastStringIsKey = false
  let elementStart = -1
  let elementEnd = -1
  const close = (): void => {
    if (elementStart >= 0) spans!.push([elementStart, elementEnd])
    elementStart = -1
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue
    if (collecting && depth === 2 && c !== 0x2c && c !== 0x5d && elementStart < 0) elementStart = i
    if (c === 0x22) {
      const start = i + 1
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
      lastStringIsKey = depth === 1 && text.slice(start, i) === key
    } else if (c === 0x3a) {
      keyHere = lastStringIsKey
      continue
    } else if (c === 0x5b || c === 0x7b) {
      depth++
      if (depth === 2 && keyHere && c === 0x5b) {
        spans = []
        collecting = true
        keyHere = false
        continue
      }
    } else if (c === 0x5d || c === 0x7d) {
      if (collecting && depth === 2) {
        close()
        collecting = false
      }
      depth--
    } else if (c === 0x2c && collecting && depth === 2) {
      close()
      continue
    }
    if (collecting && depth >= 2) elementEnd = i + 1
    keyHere = false
  }
  return spans !== null && spans.length === expected ? spans : null
}
