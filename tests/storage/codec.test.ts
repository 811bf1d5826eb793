import { expect, test } from "bun:test";
import {
  decodeAll,
  decodeAt,
  encodeRecords,
  type LogRecord,
  RECORD_FIXED_BODY_BYTES,
  RECORD_HEADER_BYTES,
  RecordType,
  recordBytes,
  validRecordEnd,
} from "../../src/storage/codec.ts";
import { crc32c } from "../../src/storage/crc32c.ts";
import { rec } from "./helpers.ts";

test("round trip: index, term, type, timestamp and payload survive, including u64 values above 2^32", () => {
  const records: LogRecord[] = [
    rec(1, 1, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
    { index: 2, term: 1, type: RecordType.NoOp, timestampMs: 0, payload: new Uint8Array(0) },
    { index: 2 ** 40 + 3, term: 2 ** 33 + 1, type: RecordType.Config, timestampMs: 2 ** 52, payload: new Uint8Array([0, 255, 1, 254]) },
    { index: Number.MAX_SAFE_INTEGER, term: 7, type: RecordType.Command, timestampMs: 1_700_000_000_123, payload: new Uint8Array(70_000).fill(9) },
  ];
  const buf = encodeRecords(records);
  expect(buf.length).toBe(records.reduce((n, r) => n + recordBytes(r), 0));
  const back = decodeAll(buf);
  expect(back.length).toBe(records.length);
  for (let i = 0; i < records.length; i++) {
    const a = records[i]!;
    const b = back[i]!;
    expect({ ...b, payload: [...b.payload] }).toEqual({ ...a, payload: [...a.payload] });
  }
});

test("refuses values that cannot be stored", () => {
  expect(() => encodeRecords([{ ...rec(1), index: -1 }])).toThrow(RangeError);
  expect(() => encodeRecords([{ ...rec(1), term: 1.5 }])).toThrow(RangeError);
  expect(() => encodeRecords([{ ...rec(1), index: 2 ** 53 }])).toThrow(RangeError);
  expect(() => encodeRecords([{ ...rec(1), type: 99 as RecordType }])).toThrow(RangeError);
});

test("every strict prefix of a record decodes as incomplete (or zero for all-zero headers), never ok", () => {
  const buf = encodeRecords([rec(5, 2, "hello")]);
  for (let n = 0; n < buf.length; n++) {
    const r = decodeAt(buf, 0, n);
    expect(r.kind).toBe("incomplete");
  }
  expect(decodeAt(buf, 0).kind).toBe("ok");
});

test("zero-filled bytes decode as zero", () => {
  expect(decodeAt(new Uint8Array(100), 0).kind).toBe("zero");
  expect(decodeAt(new Uint8Array(3), 0).kind).toBe("zero");
});

test("any flipped bit is detected: crc mismatch, bad length or incomplete, never a wrong ok", () => {
  const buf = encodeRecords([rec(9, 3, "payload bytes")]);
  for (let bit = 0; bit < buf.length * 8; bit++) {
    const b = buf.slice();
    b[bit >> 3]! ^= 1 << (bit & 7);
    const r = decodeAt(b, 0);
    expect(["crc-mismatch", "bad-length", "incomplete"]).toContain(r.kind);
  }
});

test("a length below the fixed body is bad-length; type outside the known set is bad-type", () => {
  const b = encodeRecords([rec(1)]);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, RECORD_FIXED_BODY_BYTES - 1, true);
  expect(decodeAt(b, 0).kind).toBe("bad-length");
  // A record whose type byte is unknown but whose CRC is right (a newer writer).
  const c = encodeRecords([rec(1)]);
  c[RECORD_HEADER_BYTES + 16] = 42;
  new DataView(c.buffer).setUint32(4, crc32c(c, RECORD_HEADER_BYTES, c.length), true);
  expect(decodeAt(c, 0)).toEqual({ kind: "bad-type", type: 42 });
});

test("validRecordEnd agrees with decodeAt on every prefix, every flipped bit and every type byte", () => {
  const buf = encodeRecords([rec(9, 3, "payload bytes"), rec(10, 3, "more")]);
  const agree = (b: Uint8Array, off: number, end: number) => {
    const r = decodeAt(b, off, end);
    expect(validRecordEnd(b, off, end)).toBe(r.kind === "ok" ? r.next : -1);
  };
  for (let n = 0; n <= buf.length; n++) agree(buf, 0, n);
  const second = recordBytes(rec(9, 3, "payload bytes"));
  agree(buf, second, buf.length);
  expect(validRecordEnd(buf, second)).toBe(buf.length);
  for (let bit = 0; bit < second * 8; bit++) {
    const b = buf.slice();
    b[bit >> 3]! ^= 1 << (bit & 7);
    agree(b, 0, b.length);
  }
  // A good checksum over an unknown type: decodeAt says bad-type, so validRecordEnd must refuse it.
  for (let type = 0; type < 256; type++) {
    const b = buf.slice(0, second);
    b[RECORD_HEADER_BYTES + 16] = type;
    b.set(u32le(crc32c(b, RECORD_HEADER_BYTES, b.length)), 4);
    agree(b, 0, b.length);
  }
  expect(validRecordEnd(new Uint8Array(64), 0)).toBe(-1);
});

function u32le(n: number): Uint8Array {
  return new Uint8Array([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]);
}
