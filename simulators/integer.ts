/**
 * Exact integer division for the energy arithmetic. Operands stay below 2^53 (checked), so
 * the float quotient is off by at most one and is corrected by multiplying back.
 */
export function floorDiv(a: number, b: number): number {
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b <= 0) {
    throw new RangeError(`floorDiv needs safe integers and a positive divisor, got ${a} / ${b}`)
  }
  let q = Math.floor(a / b)
  if (q * b > a) q -= 1
  else if ((q + 1) * b <= a) q += 1
  return q
}

/** floor(a × b / c) through bigint, for products beyond 2^53. */
export function mulDivFloor(a: number, b: number, c: number): number {
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || !Number.isSafeInteger(c) || c <= 0 || a < 0 || b < 0) {
    throw new RangeError(`mulDivFloor needs non-negative safe integers and a positive divisor, got ${a} × ${b} / ${c}`)
  }
  const q = (BigInt(a) * BigInt(b)) / BigInt(c)
  if (q > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`mulDivFloor result ${q} is beyond 2^53`)
  return Number(q)
}

/**
 * floorDiv without the argument checks, for the inner loops of the meter model, whose
 * operands are bounded by validated inputs (annual kWh, peak power) well below 2^53.
 */
export function floorDivUnchecked(a: number, b: number): number {
  let q = Math.floor(a / b)
  if (q * b > a) q -= 1
  else if ((q + 1) * b <= a) q += 1
  return q
}
