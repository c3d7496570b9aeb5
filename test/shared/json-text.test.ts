import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { arrayElementSpans, jsonTextProblem } from '../../shared/json-text.ts'

const LIMITS = { nestingMax: 8, digitsMax: 15 }

/** JSON text of a value with whitespace of every kind JSON allows between its tokens. */
function spaced(value: unknown, gap: () => string): string {
  if (Array.isArray(value)) return `[${gap()}${value.map((v) => spaced(v, gap) + gap()).join(`,${gap()}`)}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}${gap()}:${gap()}${spaced(v, gap)}${gap()}`)
    return `{${gap()}${entries.join(`,${gap()}`)}}`
  }
  return JSON.stringify(value) ?? 'null'
}

describe('JSON text as written', () => {
  it('places every element of the array under a top-level key, whitespace left out, whatever the elements hold', () => {
    const gaps = fc.array(fc.constantFrom('', ' ', '\n', '\t', '\r\n  '), { minLength: 64, maxLength: 64 })
    const element = fc.jsonValue({ maxDepth: 3 })
    fc.assert(
      fc.property(fc.array(element, { maxLength: 6 }), fc.dictionary(fc.string({ maxLength: 5 }), element, { maxKeys: 2 }), gaps, (readings, others, g) => {
        let n = 0
        const gap = () => g[n++ % g.length]!
        const doc = { ...others, readings }
        delete (doc as Record<string, unknown>)['__proto__']
        const text = spaced(doc, gap)
        const spans = arrayElementSpans(text, 'readings', readings.length)
        expect(spans).not.toBeNull()
        expect(spans!.map(([a, b]) => JSON.parse(text.slice(a, b)) as unknown)).toEqual(JSON.parse(text).readings)
        for (const [a, b] of spans!) expect(text.slice(a, b)).toBe(text.slice(a, b).trim())
      }),
      { numRuns: 500 },
    )
  })

  it('places the last of a key written twice, as parsing keeps it, and nothing it cannot tell', () => {
    const placed = (text: string, count: number) => arrayElementSpans(text, 'readings', count)?.map(([a, b]) => text.slice(a, b))
    expect(placed('{"readings":[1,2],"readings":[ "]",{"a":[3]} ]}', 2)).toEqual(['"]"', '{"a":[3]}'])
    expect(placed('{"x":{"readings":[1]},"readings":[22]}', 1)).toEqual(['22'])
    // A key written with escapes, a count that differs from the parse, no such key, or not an array.
    expect(arrayElementSpans('{"read\\u0069ngs":[1]}', 'readings', 1)).toBeNull()
    expect(arrayElementSpans('{"readings":[1,2]}', 'readings', 3)).toBeNull()
    expect(arrayElementSpans('{"values":[1]}', 'readings', 1)).toBeNull()
    expect(arrayElementSpans('{"readings":{"a":1}}', 'readings', 0)).toBeNull()
    expect(arrayElementSpans('{"readings":[]}', 'readings', 0)).toEqual([])
  })

  it('finds number literals a double would round, naming their field, and says too deep a nesting first', () => {
    expect(jsonTextProblem('{"a":[1,{"b":2.5}],"c":1e3}', LIMITS)).toEqual({ kind: 'number', field: 'a[1].b', literal: '2.5' })
    expect(jsonTextProblem('[0, -1E+2]', LIMITS, 'body')).toEqual({ kind: 'number', field: 'body[1]', literal: '-1E+2' })
    expect(jsonTextProblem('{"n":1234567890123456}', LIMITS)).toEqual({ kind: 'number', field: 'n', literal: '1234567890123456' })
    expect(jsonTextProblem('{"n":-123456789012345,"m":0}', LIMITS)).toBeNull()
    // Digits, dots and exponents in strings and keys are text; escaped quotes do not end a string.
    expect(jsonTextProblem('{"1.5e3":"2.5","s":"\\"1.5","t":[true,false,null]}', LIMITS)).toBeNull()
    // Nesting past the limit is said even after a rounded literal, and at the root.
    const deep = '['.repeat(LIMITS.nestingMax + 1) + ']'.repeat(LIMITS.nestingMax + 1)
    expect(jsonTextProblem(`{"x":0.5,"y":${deep}}`, LIMITS, 'body')).toEqual({ kind: 'nesting', field: 'body' })
    expect(jsonTextProblem('['.repeat(LIMITS.nestingMax) + ']'.repeat(LIMITS.nestingMax), LIMITS)).toBeNull()
  })

  it('finds a key written twice in one object, as JSON.parse names keys, before any rounded literal', () => {
    expect(jsonTextProblem('{"a":1.5,"b":{"c":1,"c":2}}', LIMITS)).toEqual({ kind: 'duplicate', field: 'b.c' })
    expect(jsonTextProblem('{"readings":[{"ts":"x"}],"readings":[]}', LIMITS)).toEqual({ kind: 'duplicate', field: 'readings' })
    expect(jsonTextProblem('[{"k":1},{"k":2,"k":3}]', LIMITS, 'body')).toEqual({ kind: 'duplicate', field: 'body[1].k' })
    // Written with an escape, the same key, named as parsed (found by verifying: named as written).
    expect(jsonTextProblem('{"kind":1,"k\\u0069nd":2}', LIMITS)).toEqual({ kind: 'duplicate', field: 'kind' })
    expect(jsonTextProblem('{"v\\u0061lues":{"a":1.5}}', LIMITS)).toEqual({ kind: 'number', field: 'values.a', literal: '1.5' })
    expect(jsonTextProblem('{"kind":1,"k\u0069nd":2}', LIMITS)).toEqual({ kind: 'duplicate', field: 'k\u0069nd' })
    // The same key in different objects, or as a value, is no duplicate; an escape counts as what it means.
    expect(jsonTextProblem('{"a":{"k":1},"b":{"k":1},"k":"k","s":"\\u0041","t":"A"}', LIMITS)).toBeNull()
    expect(jsonTextProblem('{"\\u0041":1,"A":2}', LIMITS)).toEqual({ kind: 'duplicate', field: 'A' })
    expect(jsonTextProblem('{"\\\\u0041":1,"A":2}', LIMITS)).toBeNull()
    // Many keys: past the listed ones, still found.
    const many = Array.from({ length: 1_000 }, (_, i) => `"k${i}":${i}`)
    expect(jsonTextProblem(`{${many.join(',')}}`, LIMITS)).toBeNull()
    expect(jsonTextProblem(`{${many.join(',')},"k999":0}`, LIMITS)).toEqual({ kind: 'duplicate', field: 'k999' })
    expect(jsonTextProblem(`{${many.join(',')},"k3":0}`, LIMITS)).toEqual({ kind: 'duplicate', field: 'k3' })
  })
})
