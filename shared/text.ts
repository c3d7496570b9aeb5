/**
 * Text PostgreSQL can store. Its `text` and `jsonb` refuse U+0000, and `jsonb` a lone UTF-16
 * surrogate (JSON.stringify writes one as `\ud800`, which jsonb will not read): either in one
 * row fails the whole statement it is in. Strings taken from what a device or a client sent go
 * through one of these before they are stored.
 */

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** Whether `s` holds U+0000 or a lone surrogate. */
export function hasUnstorableText(s: string): boolean {
  LONE_SURROGATE.lastIndex = 0
  return s.includes('\u0000') || LONE_SURROGATE.test(s)
}

/** `s` made storable for display: U+0000 written out as `\u0000`, a lone surrogate as U+FFFD. */
export function storableText(s: string): string {
  if (!hasUnstorableText(s)) return s
  LONE_SURROGATE.lastIndex = 0
  return s.replaceAll('\u0000', '\\u0000').replace(LONE_SURROGATE, '\uFFFD')
}

/**
 * Control characters (C0, DEL, C1), line and paragraph separators, the characters that reorder text
 * (bidirectional embeddings, overrides, isolates and marks) and invisible ones (zero-width space, BOM):
 * shown as they are they would break a line, turn "evil" around or hide a difference.
 */
export const DISPLAY_UNSAFE_RE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/

const DISPLAY_UNSAFE_GLOBAL_RE = new RegExp(DISPLAY_UNSAFE_RE.source, 'g')

/** Characters of a name a client sent (a field, a key, a parameter) that a message repeats; past it, cut with "…". */
export const SHOWN_NAME_CHARS_MAX = 64

/**
 * A name a client sent, fit to be repeated in an error message or a log line: cut after `max`
 * UTF-16 units (not inside a surrogate pair) with "…", its unsafe characters written out (`\u202e`).
 */
export function shownName(name: string, max = SHOWN_NAME_CHARS_MAX): string {
  let shown = name
  if (name.length > max) {
    const end = /[\uD800-\uDBFF]/.test(name[max - 1]!) ? max - 1 : max
    shown = `${name.slice(0, end)}…`
  }
  DISPLAY_UNSAFE_GLOBAL_RE.lastIndex = 0
  return shown.replace(DISPLAY_UNSAFE_GLOBAL_RE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
