import { expect, test } from "bun:test";
import { crc32c } from "../../src/storage/crc32c.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("known answers (RFC 3720 / iSCSI test vectors)", () => {
  expect(crc32c(enc("123456789"))).toBe(0xe3069283);
  expect(crc32c(new Uint8Array(0))).toBe(0);
  expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // 32 zero bytes
  expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
  const inc = new Uint8Array(32).map((_, i) => i);
  expect(crc32c(inc)).toBe(0x46dd794e);
  const dec = new Uint8Array(32).map((_, i) => 31 - i);
  expect(crc32c(dec)).toBe(0x113fdb5c);
  expect(crc32c(enc("a"))).toBe(0xc1d04330);
});

test("slice-by-8 agrees with a bytewise reference at every length and alignment", () => {
  const ref = (b: Uint8Array, s: number, e: number) => {
    let c = ~0;
    for (let i = s; i < e; i++) {
      c ^= b[i]!;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return ~c >>> 0;
  };
  const b = new Uint8Array(100).map((_, i) => (i * 37 + 11) & 0xff);
  for (let s = 0; s < 9; s++) for (let e = s; e <= b.length; e++) expect(crc32c(b, s, e)).toBe(ref(b, s, e));
});

test("chaining with a seed equals one pass over the concatenation", () => {
  const b = enc("the quick brown fox jumps over the lazy dog");
  for (let cut = 0; cut <= b.length; cut++) expect(crc32c(b, cut, b.length, crc32c(b, 0, cut))).toBe(crc32c(b));
});
