/**
 * HTML built by a tagged template that escapes every interpolated value, unless it is
 * itself the output of `html` (or an explicit `trusted` constant). Nothing a household,
 * an operator or a recipient typed can become markup.
 */

export class SafeHtml {
  constructor(readonly value: string) {}

  toString(): string {
    return this.value
  }
}

export type HtmlValue = SafeHtml | string | number | bigint | boolean | null | undefined | readonly HtmlValue[]

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false || value === true) return ''
  if (value instanceof SafeHtml) return value.value
  if (Array.isArray(value)) return value.map(render).join('')
  return escapeHtml(String(value))
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!
  return new SafeHtml(out)
}

/** Markup written in this code base (never data): passed through as it is. */
export function trusted(markup: string): SafeHtml {
  return new SafeHtml(markup)
}
