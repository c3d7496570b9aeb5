import type { JsonSchema, OpenApiDocument, OpenApiOperation, OpenApiResponse } from './openapi.ts'
import { escapeHtml } from './portal/html.ts'

/**
 * The human documentation at `/docs`: one self-contained HTML page (inline style, no
 * script, no external asset) rendered from the OpenAPI document, so it never drifts
 * from what the routes validate.
 */

/** Inline `code` spans of our short descriptions; everything else stays text. */
function prose(s: string): string {
  return escapeHtml(s).replace(/`([^`]+)`/g, '<code>$1</code>')
}

const METHOD_ORDER = ['get', 'post', 'put', 'patch', 'delete']

interface Entry {
  method: string
  path: string
  op: OpenApiOperation
}

export function renderDocsPage(doc: OpenApiDocument): string {
  const entries: Entry[] = []
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) entries.push({ method, path, op })
  }
  entries.sort((a, b) => a.path.localeCompare(b.path) || METHOD_ORDER.indexOf(a.method) - METHOD_ORDER.indexOf(b.method))
  const groups = new Map<string, Entry[]>()
  for (const tag of doc.tags) groups.set(tag.name, [])
  for (const entry of entries) {
    const tag = entry.op.tags[0] ?? 'other'
    if (!groups.has(tag)) groups.set(tag, [])
    groups.get(tag)!.push(entry)
  }

  const toc: string[] = []
  const sections: string[] = []
  for (const [tag, list] of groups) {
    if (list.length === 0) continue
    const tagDoc = doc.tags.find((t) => t.name === tag)
    toc.push(`<li><a href="#tag-${escapeHtml(tag)}">${escapeHtml(tag)}</a><ul>${list
      .map((e) => `<li><a href="#${anchor(e)}"><span class="m m-${e.method}">${e.method.toUpperCase()}</span> ${escapeHtml(e.path)}</a></li>`)
      .join('')}</ul></li>`)
    sections.push(
      `<section id="tag-${escapeHtml(tag)}"><h2>${escapeHtml(tag)}</h2>${tagDoc === undefined ? '' : `<p>${prose(tagDoc.description)}</p>`}${list
        .map((e) => renderOperation(e, doc))
        .join('\n')}</section>`,
    )
  }

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(doc.info.title)}</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<nav><h1>${escapeHtml(doc.info.title)}</h1><p class="v">version ${escapeHtml(doc.info.version)} · <a href="/docs/openapi.json">openapi.json</a></p><ul>${toc.join('')}</ul></nav>
<main>
<section id="intro"><h2>Overview</h2>${doc.info.description
    .split('\n\n')
    .map((p) => `<p>${prose(p)}</p>`)
    .join('')}
${renderErrorFormat(doc)}
</section>
${sections.join('\n')}
</main>
</body>
</html>
`
}

function anchor(e: Entry): string {
  return e.op.operationId
}

function renderOperation(e: Entry, doc: OpenApiDocument): string {
  const { op } = e
  const roles = op['x-roles'] === 'public' ? 'none' : op['x-roles'].join(' or ')
  const schemes = op.security.flatMap((s) => Object.keys(s))
  const credentials =
    op['x-roles'] === 'public'
      ? 'No credentials needed.'
      : `Credentials: ${escapeHtml(roles)} (${schemes.map((s) => (s === 'bearerAuth' ? 'bearer token' : `cookie <code>${escapeHtml(String(doc.components.securitySchemes[s]?.name ?? s))}</code>`)).join(' or ')}).`
  const parts = [
    `<article id="${escapeHtml(anchor(e))}" class="op">`,
    `<h3><span class="m m-${e.method}">${e.method.toUpperCase()}</span> <code>${escapeHtml(e.path)}</code></h3>`,
    `<p class="summary">${prose(op.summary)}</p>`,
    op.description === undefined ? '' : `<p>${prose(op.description)}</p>`,
    `<p class="cred">${credentials}</p>`,
  ]
  if (op.parameters.length > 0) {
    parts.push('<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>description</th></tr></thead><tbody>')
    for (const p of op.parameters) {
      parts.push(
        `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${p.in}</td><td>${typeText(p.schema)}</td><td>${p.required ? 'yes' : 'no'}</td><td>${prose(p.description ?? '')}${constraintText(p.schema)}</td></tr>`,
      )
    }
    parts.push('</tbody></table>')
  }
  const body = op.requestBody?.content['application/json'].schema
  if (body !== undefined) {
    parts.push(
      '<h4>Body (JSON)</h4>',
      renderSchema(body, doc),
      `<p class="c">Example</p><pre>${escapeHtml(JSON.stringify(sampleOf(body, doc), null, 2))}</pre>`,
    )
  }
  parts.push('<h4>Answers</h4><dl class="answers">')
  for (const [status, response] of Object.entries(op.responses)) parts.push(renderResponse(status, response, doc))
  parts.push('</dl></article>')
  return parts.join('\n')
}

function renderResponse(status: string, response: OpenApiResponse, doc: OpenApiDocument): string {
  const content = response.content === undefined ? [] : Object.entries(response.content)
  const cls = status.startsWith('2') ? 'ok' : 'err'
  const head = `<dt class="${cls}">${escapeHtml(status)}</dt><dd>${prose(response.description)}`
  if (content.length === 0) return `${head}</dd>`
  const [type, { schema }] = content[0]!
  if (schema.$ref === '#/components/schemas/Error') return `${head} · <a href="#errors">error body</a></dd>`
  if (type !== 'application/json') return `${head} · <code>${escapeHtml(type)}</code></dd>`
  return `${head}${renderSchema(schema, doc)}</dd>`
}

function renderErrorFormat(doc: OpenApiDocument): string {
  const schema = doc.components.schemas.Error
  return `<h3 id="errors">Errors</h3><p>Every error answer has this body:</p><pre>{"error":{"code":"INVALID_INPUT","message":"kind: expected one of utility, third_party"}}</pre>${
    schema === undefined ? '' : renderSchema(schema, doc)
  }`
}

interface Row {
  name: string
  schema: JsonSchema
  required: boolean
  depth: number
  /** A line naming one form of a union, not a field. */
  heading?: boolean
}

/** Fields of a body as a table; nested objects and arrays of objects are unfolded. */
function renderSchema(schema: JsonSchema, doc: OpenApiDocument): string {
  const rows: Row[] = []
  collectRows(resolve(schema, doc), '', 0, rows, doc)
  if (rows.length === 0) return `<p>${typeText(resolve(schema, doc))}</p>`
  return `<table class="fields"><thead><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr></thead><tbody>${rows
    .map((r) =>
      r.heading === true
        ? `<tr class="form"><td colspan="4" style="padding-left:${0.5 + r.depth * 1.2}em">${escapeHtml(r.name)}</td></tr>`
        : `<tr><td style="padding-left:${0.5 + r.depth * 1.2}em"><code>${escapeHtml(r.name)}</code></td><td>${typeText(r.schema)}</td><td>${r.required ? 'yes' : 'no'}</td><td>${prose(
          typeof r.schema.description === 'string' ? r.schema.description : '',
        )}${constraintText(r.schema)}</td></tr>`,
    )
    .join('')}</tbody></table>`
}

const DEPTH_MAX = 6

function collectRows(schema: JsonSchema, prefix: string, depth: number, rows: Row[], doc: OpenApiDocument): void {
  if (depth > DEPTH_MAX) return
  const alternatives = (schema.oneOf ?? schema.anyOf) as JsonSchema[] | undefined
  if (alternatives !== undefined) {
    // One block of fields per form, named by its constant field (`granularity: "daily"`) when it has one.
    for (const [i, raw] of alternatives.entries()) {
      const alternative = resolve(raw, doc)
      if (alternative.properties === undefined) continue
      rows.push({ name: `${prefix === '' ? '' : prefix + ' '}form ${i + 1}${discriminatorLabel(alternative)}`, schema: {}, required: false, depth, heading: true })
      collectRows(alternative, prefix, depth + 1, rows, doc)
    }
    return
  }
  const properties = schema.properties as Record<string, JsonSchema> | undefined
  if (properties === undefined) return
  const required = new Set((schema.required ?? []) as string[])
  for (const [name, raw] of Object.entries(properties)) {
    const property = resolve(raw, doc)
    const full = prefix === '' ? name : `${prefix}.${name}`
    rows.push({ name: full, schema: property, required: required.has(name), depth })
    if (property.type === 'object' || property.oneOf !== undefined || property.anyOf !== undefined) collectRows(property, full, depth + 1, rows, doc)
    const items = property.items as JsonSchema | undefined
    if (property.type === 'array' && items !== undefined) collectRows(resolve(items, doc), `${full}[]`, depth + 1, rows, doc)
  }
}

function discriminatorLabel(schema: JsonSchema): string {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>
  for (const [name, property] of Object.entries(properties)) {
    if ('const' in property) return ` (${name} ${JSON.stringify(property.const)})`
  }
  return ''
}

/** A sample value for a schema: its example, its first allowed value, or a placeholder of its type. */
export function sampleOf(raw: JsonSchema, doc: OpenApiDocument, depth = 0): unknown {
  const schema = resolve(raw, doc)
  if (depth > DEPTH_MAX) return null
  if (Array.isArray(schema.examples) && schema.examples.length > 0) return schema.examples[0]
  if ('const' in schema) return schema.const
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0]
  const alternatives = (schema.oneOf ?? schema.anyOf) as JsonSchema[] | undefined
  if (alternatives !== undefined && alternatives.length > 0) return sampleOf(alternatives.find((a) => a.type !== 'null') ?? alternatives[0]!, doc, depth + 1)
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') as string | undefined) : (schema.type as string | undefined)
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {}
      const properties = (schema.properties ?? {}) as Record<string, JsonSchema>
      for (const [name, property] of Object.entries(properties)) out[name] = sampleOf(property, doc, depth + 1)
      return out
    }
    case 'array':
      return schema.items === undefined ? [] : [sampleOf(schema.items as JsonSchema, doc, depth + 1)]
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum : 0
    case 'boolean':
      return true
    case 'string':
      return schema.format === 'date-time' ? '2026-10-01T00:00:00Z' : schema.format === 'date' ? '2026-10-01' : 'string'
    default:
      return null
  }
}

function resolve(schema: JsonSchema, doc: OpenApiDocument): JsonSchema {
  const ref = schema.$ref
  if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) {
    return doc.components.schemas[ref.slice('#/components/schemas/'.length)] ?? schema
  }
  return schema
}

function typeText(schema: JsonSchema): string {
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => `<code>${escapeHtml(JSON.stringify(v))}</code>`).join(' | ')
  if ('const' in schema) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`
  const alternatives = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined
  if (alternatives !== undefined) {
    const objects = alternatives.filter((a) => a.type === 'object').length
    return objects > 1 ? `one of ${alternatives.length} forms` : alternatives.map(typeText).join(' | ')
  }
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : typeof schema.type === 'string' ? schema.type : 'any'
  if (type === 'array') {
    const items = schema.items as JsonSchema | undefined
    return `array of ${items === undefined ? 'any' : typeText(items)}`
  }
  if (type === 'object' && schema.additionalProperties !== undefined && typeof schema.additionalProperties === 'object') {
    return `map of ${typeText(schema.additionalProperties as JsonSchema)}`
  }
  const format = typeof schema.format === 'string' ? ` (${escapeHtml(schema.format)})` : ''
  return escapeHtml(type) + format
}

function constraintText(schema: JsonSchema): string {
  const notes: string[] = []
  const bound = (key: string, label: string): void => {
    if (typeof schema[key] === 'number') notes.push(`${label} ${String(schema[key])}`)
  }
  bound('minimum', 'min')
  bound('maximum', 'max')
  bound('exclusiveMinimum', 'more than')
  bound('exclusiveMaximum', 'less than')
  bound('minLength', 'min length')
  bound('maxLength', 'max length')
  bound('minItems', 'min items')
  bound('maxItems', 'max items')
  if (typeof schema.pattern === 'string') notes.push(`pattern <code>${escapeHtml(schema.pattern)}</code>`)
  if ('default' in schema) notes.push(`default <code>${escapeHtml(JSON.stringify(schema.default))}</code>`)
  const examples = schema.examples
  if (Array.isArray(examples) && examples.length > 0) notes.push(`e.g. <code>${escapeHtml(JSON.stringify(examples[0]))}</code>`)
  return notes.length === 0 ? '' : ` <span class="c">${notes.join(' · ')}</span>`
}

const STYLE = `
:root{--fg:#1d2327;--muted:#5b6670;--line:#dde3e8;--bg:#fff;--side:#f5f7f9;--get:#1f6feb;--post:#1a7f37;--patch:#9a6700;--put:#8250df;--delete:#cf222e}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);display:flex}
nav{position:sticky;top:0;height:100vh;overflow:auto;width:22rem;flex:none;background:var(--side);border-right:1px solid var(--line);padding:1rem}
nav h1{font-size:1.2rem;margin:0}nav .v{color:var(--muted);margin:.2rem 0 1rem}nav ul{list-style:none;padding-left:0;margin:0}nav ul ul{padding-left:.6rem;margin-bottom:.6rem}
nav a{color:inherit;text-decoration:none;font-size:.9rem}nav a:hover{text-decoration:underline}
main{padding:1rem 2rem 4rem;max-width:62rem;min-width:0}h2{border-bottom:2px solid var(--line);padding-bottom:.2rem;margin-top:2.5rem;text-transform:capitalize}
.op{border:1px solid var(--line);border-radius:6px;padding:.2rem 1rem 1rem;margin:1.2rem 0}.op h3{font-size:1.05rem}
.m{display:inline-block;min-width:3.8em;text-align:center;font:600 .75rem/1.6 ui-monospace,monospace;color:#fff;border-radius:3px;padding:0 .3em}
.m-get{background:var(--get)}.m-post{background:var(--post)}.m-patch{background:var(--patch)}.m-put{background:var(--put)}.m-delete{background:var(--delete)}
.summary{font-weight:600}.cred{color:var(--muted)}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.88em}
pre{background:var(--side);padding:.6rem;border-radius:4px;overflow:auto}table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}th{font-size:.8rem;color:var(--muted);font-weight:600}
.c{color:var(--muted);font-size:.85em}dl.answers dt{font-weight:700;font-family:ui-monospace,monospace;margin-top:.5rem}dl.answers dt.ok{color:var(--post)}dl.answers dt.err{color:var(--delete)}
dl.answers dd{margin-left:1.5rem}tr.form td{font-style:italic;color:var(--muted);background:var(--side)}
@media (max-width:800px){body{display:block}nav{position:static;height:auto;width:auto}}
`
