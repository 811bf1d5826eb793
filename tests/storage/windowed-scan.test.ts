// Wal.open scans segments through a small window (scanSegmentWindowed) and reads a segment whole
// only when it is not clean. The windowed scan must agree with the whole-file scans on every
// clean segment, and refuse (undefined) everything else so the whole-file scan reports it.
import { expect, test } from "bun:test";
import { encodeRecords, RECORD_HEADER_BYTES, RecordType, type LogRecord } from "../../src/storage/codec.ts";
import { allZeroFrom, scanSegment, scanSegmentStructure, scanSegmentWindowed, type SegmentScan } from "../../src/storage/segment.ts";

const WINDOW = 64 * 1024;

/** A seeded generator (mulberry32), so a failure replays. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function segment(rand: () => number, first: number, count: number, bigRecords: boolean): Uint8Array {
  const records: LogRecord[] = [];
  let term = 1;
  for (let i = 0; i < count; i++) {
    if (rand() < 0.05) term++;
    const size = bigRecords && rand() < 0.1 ? WINDOW + Math.floor(rand() * 5000) : Math.floor(rand() * 300);
    const payload = new Uint8Array(size).map(() => Math.floor(rand() * 256));
    records.push({ index: first + i, term, type: RecordType.Command, timestampMs: 1000 + i, payload });
  }
  return encodeRecords(records);
}

function windowed(bytes: Uint8Array, first: number, structureOnly: boolean) {
  const window = new Uint8Array(WINDOW);
  return scanSegmentWindowed(
    (buf, off, len, pos) => {
      const n = Math.min(len, bytes.length - pos);
      buf.set(bytes.subarray(pos, pos + n), off);
      return n;
    },
    bytes.length,
    window,
    "x.seg",
    first,
    1,
    structureOnly,
  );
}

function same(a: SegmentScan, b: SegmentScan): void {
  expect(a.validBytes).toBe(b.validBytes);
  expect(a.offsets.length).toBe(b.offsets.length);
  for (let i = 0; i < a.offsets.length; i++) {
    expect(a.offsets.at(i)).toBe(b.offsets.at(i));
    expect(a.terms.at(i)).toBe(b.terms.at(i));
  }
}

test("on clean segments (with or without a zero tail) the windowed scan gives what the whole-file scans give", () => {
  let used = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const rand = rng(seed);
    const body = segment(rand, 10, 50 + Math.floor(rand() * 400), seed % 3 === 0);
    const tail = seed % 2 === 0 ? Math.floor(rand() * 3 * WINDOW) : 0;
    const bytes = new Uint8Array(body.length + tail);
    bytes.set(body);
    for (const structureOnly of [false, true]) {
      const whole = structureOnly ? scanSegmentStructure(bytes, "x.seg", 10, 1) : scanSegment(bytes, "x.seg", 10, 1);
      const w = windowed(bytes, 10, structureOnly);
      // Records larger than the window are checked whole (undefined) unless only the structure is read.
      const hasBig = whole.offsets.length > 0 && [...Array(whole.offsets.length).keys()].some((i) => {
        const end = i + 1 < whole.offsets.length ? whole.offsets.at(i + 1)! : whole.validBytes;
        return end - whole.offsets.at(i)! > WINDOW;
      });
      if (!structureOnly && hasBig) {
        expect(w).toBeUndefined();
        continue;
      }
      expect(w).toBeDefined();
      used++;
      same(w!.scan, whole);
      if (tail === 0) {
        expect(whole.problem).toBeUndefined();
        expect(w!.zeroTailFrom).toBeUndefined();
      } else {
        expect(whole.problem?.kind).toBe("zero");
        expect(allZeroFrom(bytes, whole.problem!.offset)).toBe(true);
        expect(w!.zeroTailFrom).toBe(whole.problem!.offset);
      }
    }
  }
  expect(used).toBeGreaterThan(80);
});

test("anything but a clean segment is refused, so the whole-file scan reports it", () => {
  for (let seed = 100; seed < 160; seed++) {
    const rand = rng(seed);
    const body = segment(rand, 1, 30 + Math.floor(rand() * 100), false);
    const bytes = new Uint8Array(body.length + 4096);
    bytes.set(body);
    const damaged = bytes.slice();
    const kind = seed % 4;
    let cut = damaged.length;
    if (kind === 0) damaged[Math.floor(rand() * body.length)]! ^= 1 << Math.floor(rand() * 8); // a flipped bit in a record
    else if (kind === 1) damaged[body.length + Math.floor(rand() * 4096)] = 1 + Math.floor(rand() * 255); // garbage in the zero tail
    else if (kind === 2) cut = Math.floor(rand() * (body.length - 1)) + 1; // a torn tail
    else damaged.set([7], body.length + RECORD_HEADER_BYTES + 1); // nonzero bytes right after the records
    const bytesCut = damaged.subarray(0, cut);
    const whole = scanSegment(bytesCut, "x.seg", 1, 1);
    const cleanZeroTail = whole.problem?.kind === "zero" && allZeroFrom(bytesCut, whole.problem.offset);
    const wFull = windowed(bytesCut, 1, false);
    if (whole.problem === undefined || cleanZeroTail) {
      // The damage happened to leave a clean segment (a cut at a record boundary): both agree.
      expect(wFull).toBeDefined();
      same(wFull!.scan, whole);
      expect(wFull!.zeroTailFrom).toBe(cleanZeroTail ? whole.problem!.offset : undefined);
    } else {
      expect(wFull).toBeUndefined();
    }
    // Structure only (segments covered by a snapshot, never the last one): accepted as clean
    // exactly when scanSegmentStructure finds it clean; a zero tail is only ever reported
    // (zeroTailFrom), which makes Wal.open read such a segment whole.
    const wStruct = windowed(bytesCut, 1, true);
    const struct = scanSegmentStructure(bytesCut, "x.seg", 1, 1);
    if (struct.problem === undefined) {
      expect(wStruct).toBeDefined();
      expect(wStruct!.zeroTailFrom).toBeUndefined();
      same(wStruct!.scan, struct);
    } else {
      expect(wStruct === undefined || wStruct.zeroTailFrom !== undefined).toBe(true);
    }
  }
});
