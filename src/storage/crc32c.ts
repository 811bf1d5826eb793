// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slice-by-8 tables. Pure: no I/O.
// Used for WAL records and snapshot bodies; zlib/Bun.hash only offer CRC-32 (IEEE).

const POLY = 0x82f63b78;
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/**
 * CRC-32C of bytes[start, end). Chain calls by passing the previous result as `seed`:
 * crc32c(b, 0, b.length, crc32c(a)) === crc32c(a ++ b).
 */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, seed = 0): number {
  let crc = ~seed;
  let i = start;
  const t = T;
  const b = bytes;
  while (end - i >= 8) {
    const lo = crc ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    const hi = b[i + 4]! | (b[i + 5]! << 8) | (b[i + 6]! << 16) | (b[i + 7]! << 24);
    crc =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + (hi & 0xff)]! ^
      t[512 + ((hi >>> 8) & 0xff)]! ^
      t[256 + ((hi >>> 16) & 0xff)]! ^
      t[hi >>> 24]!;
    i += 8;
  }
  while (i < end) crc = t[(crc ^ b[i++]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
