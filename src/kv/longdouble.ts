// INCRBYFLOAT's arithmetic, as Redis does it on x86-64: parse with strtold into an 80-bit long
// double (64-bit mantissa), add, and print with "%.17Lf" less trailing zeros. Emulated exactly
// with BigInt so kv answers digit for digit what redis-server answers, including the rounding
// artefacts of larger values (1000.1 + 0.1), and a replay gives the same string on any machine.
// Pure: no floating point is used to compute a result.

/** A finite long double: (-1)^neg * m * 2^e, with m < 2^64 (m = 0 for zero). */
export interface LongDouble {
  readonly neg: boolean;
  readonly m: bigint;
  readonly e: number;
}

/** Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are not numbers to it. */
const MAX_CHARS = 5 * 1024;
const MANT_BITS = 64;
/** Smallest exponent of the last mantissa bit (denormals included): 2^-16445. */
const E_MIN = -16445;
/** Largest exponent of the last mantissa bit for a finite value (below 2^16384). */
const E_MAX = 16384 - MANT_BITS;
const TOP = 1n << 63n;
const LIMIT = 1n << 64n;

function bitLength(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

/** Divides num by den, rounding half to even. */
function divRound(num: bigint, den: bigint): bigint {
  const q = num / den;
  const r2 = (num % den) * 2n;
  return r2 > den || (r2 === den && (q & 1n) === 1n) ? q + 1n : q;
}

/**
 * The long double nearest to p/q * 2^e0 (p >= 0, q > 0), ties to even; "inf" past the largest
 * finite value; "zero" for a nonzero value too small even for a denormal (strtold's ERANGE).
 */
function round(neg: boolean, p: bigint, q: bigint, e0: number): LongDouble | "inf" | "zero" {
  if (p === 0n) return { neg, m: 0n, e: 0 };
  // Choose e so that p/q / 2^(e - e0) lands in [2^63, 2^64).
  let e = e0 + bitLength(p) - bitLength(q) - MANT_BITS;
  for (;;) {
    const shift = e - e0;
    const num = shift < 0 ? p << BigInt(-shift) : p;
    const den = shift > 0 ? q << BigInt(shift) : q;
    if (e < E_MIN) {
      // Denormal range: a fixed last-bit exponent, fewer mantissa bits.
      const s = E_MIN - e0;
      const m = divRound(s < 0 ? p << BigInt(-s) : p, s > 0 ? q << BigInt(s) : q);
      return m === 0n ? "zero" : { neg, m, e: E_MIN };
    }
    const quot = num / den;
    if (quot >= LIMIT) {
      e++;
      continue;
    }
    if (quot < TOP) {
      e--;
      continue;
    }
    let m = divRound(num, den);
    if (m === LIMIT) {
      m = TOP;
      e++;
    }
    return e > E_MAX ? "inf" : { neg, m, e };
  }
}

const DEC = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/;
const INF = /^[+-]?inf(inity)?$/i;

/**
 * Parses s as Redis's string2ld does (strtold, whole string, no leading space, no NaN, nothing
 * out of range): the long double, "inf" for an infinity it accepts, or null if not a valid float.
 */
export function parseLongDouble(s: string): LongDouble | "inf" | null {
  if (s.length === 0 || s.length >= MAX_CHARS) return null;
  if (INF.test(s)) return "inf";
  let neg: boolean;
  let digits: bigint;
  let e0: number; // value = digits * base^e0 (base 10) or digits * 2^e0 (hex)
  let hex = false;
  let m = HEX.exec(s);
  if (m !== null) {
    const int = m[2]!;
    const frac = m[3] ?? "";
    if (int.length + frac.length === 0) return null;
    neg = m[1] === "-";
    digits = BigInt(`0x${int}${frac}`);
    const exp = m[4] === undefined ? 0 : Number(m[4]);
    e0 = exp - 4 * frac.length;
    hex = true;
  } else {
    m = DEC.exec(s);
    if (m === null) return null;
    const int = m[2]!;
    const frac = m[3] ?? "";
    if (int.length + frac.length === 0) return null;
    neg = m[1] === "-";
    digits = BigInt(`${int}${frac}`);
    const exp = m[4] === undefined ? 0 : Number(m[4]);
    e0 = exp - frac.length;
  }
  if (digits === 0n) return { neg, m: 0n, e: 0 };
  let r: LongDouble | "inf" | "zero";
  if (hex) {
    if (e0 > 2 * E_MAX) r = "inf";
    else if (e0 < 2 * E_MIN - 4 * MAX_CHARS) r = "zero";
    else r = round(neg, digits, 1n, e0);
  } else {
    // Beyond the largest long double (about 1.19e4932) or below half the smallest denormal
    // (about 3.6e-4951) whatever the digits: no need to compute.
    const magnitude = digits.toString().length + e0; // value < 10^magnitude
    if (e0 > 4933) r = "inf";
    else if (magnitude < -4952) r = "zero";
    else r = e0 >= 0 ? round(neg, digits * 10n ** BigInt(e0), 1n, 0) : round(neg, digits, 10n ** BigInt(-e0), 0);
  }
  return r === "inf" || r === "zero" ? null : r; // strtold's ERANGE: overflow and total underflow
}

/** a + b in long double arithmetic; "inf" when the sum overflows. */
export function addLongDouble(a: LongDouble, b: LongDouble): LongDouble | "inf" {
  if (a.m === 0n) return b.m === 0n ? { neg: a.neg && b.neg, m: 0n, e: 0 } : b;
  if (b.m === 0n) return a;
  const e = Math.min(a.e, b.e);
  const va = (a.neg ? -a.m : a.m) << BigInt(a.e - e);
  const vb = (b.neg ? -b.m : b.m) << BigInt(b.e - e);
  const sum = va + vb;
  if (sum === 0n) return { neg: false, m: 0n, e: 0 };
  const r = round(sum < 0n, sum < 0n ? -sum : sum, 1n, e);
  // A sum of two finite values cannot lose all its bits: "zero" only comes from parsing.
  return r === "zero" ? { neg: sum < 0n, m: 0n, e: 0 } : r;
}

/** printf("%.17Lf") with trailing zeros (and a bare point) removed, and "-0" as "0". */
export function formatLongDouble(v: LongDouble): string {
  const scaled = v.e >= 0 ? (v.m << BigInt(v.e)) * 10n ** 17n : divRound(v.m * 10n ** 17n, 1n << BigInt(-v.e));
  let s = scaled.toString().padStart(18, "0");
  s = `${s.slice(0, -17)}.${s.slice(-17)}`.replace(/0+$/, "").replace(/\.$/, "");
  if (v.neg && s !== "0") s = `-${s}`;
  return s;
}
