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
