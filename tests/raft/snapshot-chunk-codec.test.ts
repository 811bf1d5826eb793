// The snapshot transfer frames of the peer codec (chunks and acks): they round-trip, and every
// malformed body (truncated, a field out of range, a chunk past its total, a bad checksum, random
// bytes) gives a FrameError and nothing else.
import { describe, expect, test } from "bun:test";
import { crc32 } from "node:zlib";
import {
  FRAME_HEADER_BYTES,
  FrameError,
  SNAPSHOT_ACK_CODE,
  SNAPSHOT_CHUNK_CODE,
  SNAPSHOT_CHUNK_DATA_MAX,
  SNAPSHOT_TOTAL_BYTES_MAX,
  decodeSnapshotAck,
  decodeSnapshotChunk,
  encodeMessage,
  encodeSnapshotAck,
  encodeSnapshotChunk,
  encodeSnapshotChunkAround,
  frameKind,
  snapshotChunkDataAt,
  type SnapshotChunk,
} from "../../src/raft/codec.ts";
import { Rand } from "../../src/raft/rand.ts";

const SEED = Number(process.env.SEED ?? 1);
const sum = (d: Uint8Array) => crc32(d);

function body(frame: Uint8Array): Uint8Array {
  return frame.subarray(FRAME_HEADER_BYTES);
}

function outcome(f: () => unknown): string {
  try {
    f();
    return "ok";
  } catch (err) {
    return err instanceof FrameError ? "FrameError" : `${(err as Error).name}: ${(err as Error).message}`;
  }
}

const data = new Uint8Array(300).map((_, i) => (i * 7 + 3) & 255);
const chunk: Omit<SnapshotChunk, "checksum"> = {
  from: 1,
  to: 2,
  term: 7,
  transfer: 2 ** 40 + 5,
  meta: { index: 123_456, term: 6, confState: { voters: [1, 2, 3], learners: [4] } },
  offset: 1000,
  totalBytes: 5000,
  data,
};

/** Offsets in a chunk body: [u8 version][u8 type][u32 from][u32 to][u64 term][u64 transfer][u64 index][u64 sterm][u32 n][ids][u32 n][ids][u64 offset][u64 total][u32 crc][u32 len][data] */
function fieldsAt(c: Omit<SnapshotChunk, "checksum">) {
  const votersAt = 2 + 4 + 4 + 8 + 8 + 8 + 8;
  const learnersAt = votersAt + 4 + 4 * c.meta.confState.voters.length;
  const offsetAt = learnersAt + 4 + 4 * c.meta.confState.learners.length;
  return { from: 2, to: 6, votersAt, learnersAt, offsetAt, totalAt: offsetAt + 8, crcAt: offsetAt + 16, lenAt: offsetAt + 20, dataAt: offsetAt + 24 };
}

function setU32(b: Uint8Array, at: number, v: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, v >>> 0, true);
}
function setU64(b: Uint8Array, at: number, v: number): void {
  setU32(b, at, v % 2 ** 32);
  setU32(b, at + 4, Math.floor(v / 2 ** 32));
}

describe("round trip", () => {
  test("a chunk decodes to what was encoded, its data a view of the body", () => {
    const f = encodeSnapshotChunk(chunk, sum);
    expect(new DataView(f.buffer).getUint32(0, true)).toBe(f.length - FRAME_HEADER_BYTES);
    expect(frameKind(body(f))).toBe("snapshot-chunk");
    const d = decodeSnapshotChunk(body(f), sum);
    expect({ ...d, data: [...d.data] }).toEqual({ ...chunk, checksum: crc32(data), data: [...data] });
    expect(d.data.buffer).toBe(f.buffer);
  });

  test("an ack round-trips (ok and not ok)", () => {
    for (const ok of [true, false]) {
      const a = { from: 2, to: 1, transfer: 2 ** 52 - 1, index: 99, ok };
      const f = encodeSnapshotAck(a);
      expect(frameKind(body(f))).toBe("snapshot-ack");
      expect(decodeSnapshotAck(body(f))).toEqual(a);
    }
  });

  test("a Raft message is told apart from both", () => {
    const f = encodeMessage({ type: "timeout-now", from: 1, to: 2, term: 3 });
    expect(frameKind(body(f))).toBe("message");
  });

  test("a chunk that cannot be sent is a RangeError (the caller's bug)", () => {
    const bad: Partial<Omit<SnapshotChunk, "checksum">>[] = [
      { offset: 4800 }, // runs past the total
      { totalBytes: 0, offset: 0 },
      { totalBytes: SNAPSHOT_TOTAL_BYTES_MAX + 1 },
      { data: new Uint8Array(0) },
      { from: 0 },
      { term: -1 },
      { meta: { index: 1.5, term: 1, confState: { voters: [1], learners: [] } } },
    ];
    for (const b of bad) expect(() => encodeSnapshotChunk({ ...chunk, ...b }, sum)).toThrow(RangeError);
  });

  test("a chunk made around data read into its frame equals the copied one; data out of place is a RangeError", () => {
    const at = snapshotChunkDataAt(chunk.meta);
    const frame = new Uint8Array(at + 1000);
    frame.set(data, at);
    const f = encodeSnapshotChunkAround(frame, { ...chunk, data: frame.subarray(at, at + data.length) }, sum);
    expect(f.buffer).toBe(frame.buffer);
    expect([...f]).toEqual([...encodeSnapshotChunk(chunk, sum)]);
    expect(() => encodeSnapshotChunkAround(frame, { ...chunk, data: frame.subarray(at + 1, at + 1 + data.length) }, sum)).toThrow(RangeError);
    expect(() => encodeSnapshotChunkAround(frame, chunk, sum)).toThrow(RangeError);
  });
});

describe("malformed chunks and acks give a FrameError", () => {
  const good = () => body(encodeSnapshotChunk(chunk, sum)).slice();
  const at = fieldsAt(chunk);

  test("every truncation, and a byte past the end", () => {
    const b = good();
    for (let n = 0; n < b.length; n++) expect(outcome(() => decodeSnapshotChunk(b.subarray(0, n), sum))).toBe("FrameError");
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    expect(outcome(() => decodeSnapshotChunk(longer, sum))).toBe("FrameError");
    const a = body(encodeSnapshotAck({ from: 2, to: 1, transfer: 1, index: 1, ok: true }));
    for (let n = 0; n < a.length; n++) expect(outcome(() => decodeSnapshotAck(a.subarray(0, n)))).toBe("FrameError");
  });

  test("each field out of range", () => {
    const cases: [string, (b: Uint8Array) => void][] = [
      ["version", (b) => (b[0] = 9)],
      ["type", (b) => (b[1] = 1)],
      ["from 0", (b) => setU32(b, at.from, 0)],
      ["to 0", (b) => setU32(b, at.to, 0)],
      ["term past 2^53", (b) => setU32(b, 10 + 4, 2 ** 31)],
      ["voter id 0", (b) => setU32(b, at.votersAt + 4, 0)],
      ["voter count past the body", (b) => setU32(b, at.votersAt, 1_000_000)],
      ["a member twice", (b) => setU32(b, at.learnersAt + 4, 2)],
      ["total 0", (b) => setU64(b, at.totalAt, 0)],
      ["total past the limit", (b) => setU64(b, at.totalAt, SNAPSHOT_TOTAL_BYTES_MAX + 1)],
      ["chunk past its total", (b) => setU64(b, at.offsetAt, 4701)],
      ["data length 0", (b) => setU32(b, at.lenAt, 0)],
      ["data length past the limit", (b) => setU32(b, at.lenAt, SNAPSHOT_CHUNK_DATA_MAX + 1)],
      ["data length past the body", (b) => setU32(b, at.lenAt, data.length + 1)],
      ["checksum", (b) => setU32(b, at.crcAt, crc32(data) ^ 1)],
      ["a data byte flipped", (b) => (b[at.dataAt + 17]! ^= 0x20)],
    ];
    for (const [what, damage] of cases) {
      const b = good();
      damage(b);
      expect([what, outcome(() => decodeSnapshotChunk(b, sum))]).toEqual([what, "FrameError"]);
    }
    // The undamaged body decodes (so each case above failed for its own damage).
    expect(outcome(() => decodeSnapshotChunk(good(), sum))).toBe("ok");
    const ack = () => body(encodeSnapshotAck({ from: 2, to: 1, transfer: 1, index: 1, ok: true })).slice();
    const acks: [string, (b: Uint8Array) => void][] = [
      ["type", (b) => (b[1] = SNAPSHOT_CHUNK_CODE)],
      ["ok flag 2", (b) => (b[b.length - 1] = 2)],
      ["from 0", (b) => setU32(b, 2, 0)],
    ];
    for (const [what, damage] of acks) {
      const b = ack();
      damage(b);
      expect([what, outcome(() => decodeSnapshotAck(b))]).toEqual([what, "FrameError"]);
    }
    expect(outcome(() => decodeSnapshotAck(ack()))).toBe("ok");
    expect(outcome(() => frameKind(new Uint8Array([2, SNAPSHOT_ACK_CODE])))).toBe("FrameError");
    expect(outcome(() => frameKind(new Uint8Array([1])))).toBe("FrameError");
  });

  test(`random bytes and mutated chunks (seed ${SEED}): FrameError or a valid chunk, never another exception`, () => {
    const rand = new Rand(SEED);
    const base = good();
    let frameErrors = 0;
    for (let i = 0; i < 5000; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) {
        b = base.slice();
        const flips = 1 + rand.int(4);
        for (let k = 0; k < flips; k++) b[rand.int(b.length)] = rand.int(256);
      } else {
        b = new Uint8Array(rand.int(120));
        for (let k = 0; k < b.length; k++) b[k] = rand.int(256);
        if (b.length > 1) {
          b[0] = 1;
          b[1] = i % 4 === 1 ? SNAPSHOT_CHUNK_CODE : SNAPSHOT_ACK_CODE;
        }
      }
      const r = outcome(() => (b[1] === SNAPSHOT_ACK_CODE ? decodeSnapshotAck(b) : decodeSnapshotChunk(b, sum)));
      if (r === "FrameError") frameErrors++;
      else expect(r).toBe("ok");
    }
    expect(frameErrors).toBeGreaterThan(4000);
  });
});
