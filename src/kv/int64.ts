// 64-bit integer parsing as Redis's string2ll does it, with plain numbers on the fast path
// and BigInt only for values a double cannot hold exactly.

export const INT64_MAX = 9223372036854775807n;
export const INT64_MIN = -9223372036854775808n;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const SAFE_MIN = -SAFE_MAX;
/** Redis's LONG_STR_SIZE: a string this long or longer is never an integer. */
const INT_STR_BYTES_MAX = 20;

/**
 * Parses a canonical decimal int64 as Redis's string2ll: optional `-`, no `+`, no leading
 * zeros, no spaces, no `-0`. Returns a number when the value is a safe integer, a bigint
 * beyond that, and null when the string is not an int64.
 */
export function parseInt64(s: string): number | bigint | null {
  const n = s.length;
  if (n === 0 || n > INT_STR_BYTES_MAX) return null;
  let i = 0;
  let neg = false;
  if (s.charCodeAt(0) === 0x2d) {
    if (n === 1) return null;
    neg = true;
    i = 1;
  }
  const c0 = s.charCodeAt(i);
  if (c0 === 0x30) return n === 1 ? 0 : null;
  if (c0 < 0x31 || c0 > 0x39) return null;
  if (n - i <= 15) {
    // At most 15 digits: below 2^53, exact in a double.
    let v = c0 - 0x30;
    for (let j = i + 1; j < n; j++) {
      const c = s.charCodeAt(j);
      if (c < 0x30 || c > 0x39) return null;
      v = v * 10 + (c - 0x30);
    }
    return neg ? -v : v;
  }
  for (let j = i + 1; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return null;
  }
  const b = BigInt(s);
  if (b > INT64_MAX || b < INT64_MIN) return null;
  return b >= SAFE_MIN && b <= SAFE_MAX ? Number(b) : b;
}

/** A number or bigint from parseInt64 back to the smallest exact form. */
export function normInt(b: bigint): number | bigint {
  return b >= SAFE_MIN && b <= SAFE_MAX ? Number(b) : b;
}

/**
 * True when `s` is a cursor Redis 7.0's SCAN accepts (strtoul rules without leading space):
 * an optional sign and digits whose magnitude fits 64 bits, or the empty string (cursor 0).
 */
export function isScanCursor(s: string): boolean {
  const n = s.length;
  if (n === 0) return true;
  let i = 0;
  const c0 = s.charCodeAt(0);
  if (c0 === 0x2b || c0 === 0x2d) i = 1;
  if (i === n) return false;
  for (let j = i; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return false;
  }
  while (i < n - 1 && s.charCodeAt(i) === 0x30) i++;
  return n - i < 20 || (n - i === 20 && BigInt(s.slice(i)) <= 18446744073709551615n);
}
