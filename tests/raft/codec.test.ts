// The peer frame codec: every message variant round-trips; truncated, oversized or random bytes give
// a FrameError and nothing else.
import { describe, expect, test } from "bun:test";
import {
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameError,
  FrameReader,
  HANDSHAKE_BYTES_MAX,
  decodeHandshake,
  decodeMessage,
  encodeHandshake,
  encodeMessage,
  frameBytes,
} from "../../src/raft/codec.ts";
import { Rand } from "../../src/raft/rand.ts";
import type { Message } from "../../src/raft/types.ts";
import { EVERY_MESSAGE, entries } from "../helpers/raft-messages.ts";

const SEED = Number(process.env.SEED ?? 1);

function body(frame: Uint8Array): Uint8Array {
  return frame.subarray(FRAME_HEADER_BYTES);
}

/** Runs f; returns "ok", or the error's name (anything but FrameError fails the caller's expectation). */
function outcome(f: () => unknown): string {
  try {
    f();
    return "ok";
  } catch (err) {
    return err instanceof FrameError ? "FrameError" : `${(err as Error).name}: ${(err as Error).message}`;
  }
}

describe("round trip", () => {
  test("every variant decodes to what was encoded", () => {
    const seen = new Set<string>();
    for (const m of EVERY_MESSAGE) {
      const f = encodeMessage(m);
      expect(f.length).toBe(frameBytes(m));
      const back = decodeMessage(body(f));
      expect(back).toEqual(m);
      seen.add(m.type);
    }
    expect(seen.size).toBe(10);
  });

  test("decoded data is a copy: changing the frame afterwards changes nothing", () => {
    const m = EVERY_MESSAGE[0] as Message & { type: "append" };
    const f = encodeMessage(m);
    const back = decodeMessage(body(f)) as typeof m;
    f.fill(0);
    expect(back.entries[1]!.data).toEqual(entries[1]!.data);
  });

  test("a handshake round-trips", () => {
    const h = { clusterId: "c-7f3a", from: 3, to: 1 };
    expect(decodeHandshake(body(encodeHandshake(h)))).toEqual({ ...h, version: 1 });
    expect(encodeHandshake({ ...h, clusterId: "x".repeat(128) }).length).toBe(FRAME_HEADER_BYTES + HANDSHAKE_BYTES_MAX);
    expect(() => encodeHandshake({ ...h, clusterId: "x".repeat(129) })).toThrow(RangeError);
  });

  test("a message that cannot be encoded is a RangeError before any byte is written", () => {
    expect(() => encodeMessage({ type: "timeout-now", from: 0, to: 2, term: 1 })).toThrow(RangeError);
    expect(() => encodeMessage({ type: "timeout-now", from: 1, to: 2, term: 2 ** 53 })).toThrow(RangeError);
    expect(() => encodeMessage({ type: "timeout-now", from: 1, to: 2, term: -1 })).toThrow(RangeError);
    expect(() => encodeMessage(EVERY_MESSAGE[0]!, 1024)).toThrow(RangeError);
  });
});

describe("bad bytes give a FrameError and nothing else", () => {
  test("every truncation of every frame: the reader waits, and the body alone does not decode", () => {
    for (const m of EVERY_MESSAGE) {
      const f = encodeMessage(m);
      // Large frames: every cut in the first and last 2 KiB and every 997th byte between.
      for (let k = 0; k < f.length; k += k < 2048 || k > f.length - 2048 ? 1 : 997) {
        const r = new FrameReader();
        r.push(f.subarray(0, k));
        expect(r.next()).toBeUndefined();
        if (k >= FRAME_HEADER_BYTES) expect(outcome(() => decodeMessage(f.subarray(FRAME_HEADER_BYTES, k)))).toBe("FrameError");
      }
    }
    const h = encodeHandshake({ clusterId: "abc", from: 1, to: 2 });
    for (let k = FRAME_HEADER_BYTES; k < h.length; k++) expect(outcome(() => decodeHandshake(h.subarray(FRAME_HEADER_BYTES, k)))).toBe("FrameError");
  });

  test("a byte after the end, an unknown type, version, entry type, flag or node id 0 is refused", () => {
    const f = encodeMessage(EVERY_MESSAGE[0]!);
    const longer = new Uint8Array(f.length + 1);
    longer.set(f);
    expect(outcome(() => decodeMessage(body(longer)))).toBe("FrameError");
    const at = (i: number, v: number, src = f) => {
      const c = src.slice();
      c[FRAME_HEADER_BYTES + i] = v;
      return outcome(() => decodeMessage(body(c)));
    };
    expect(at(0, 2)).toBe("FrameError"); // version
    expect(at(1, 11)).toBe("FrameError"); // type
    expect(at(1, 0)).toBe("FrameError");
    expect(at(2, 0)).toBe("FrameError"); // from 1 becomes node id 0
    const vr = encodeMessage(EVERY_MESSAGE[6]!); // vote-resp: reject flag at 18
    expect(at(18, 2, vr)).toBe("FrameError");
    expect(at(18, 1, vr)).toBe("ok");
    // entry type of the first entry: envelope 18 + 3*8 + count 4 + index 8 + term 8
    expect(at(18 + 24 + 4 + 16, 3)).toBe("FrameError");
    // a term above 2^53 - 1
    expect(at(17, 0x20)).toBe("FrameError");
  });

  test("a length past the limit is refused before the frame's bytes arrive (no allocation to match)", () => {
    const r = new FrameReader();
    r.push(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    expect(outcome(() => r.next())).toBe("FrameError");
    const h = new FrameReader(HANDSHAKE_BYTES_MAX);
    h.push(new Uint8Array([HANDSHAKE_BYTES_MAX + 1, 0, 0, 0]));
    expect(outcome(() => h.next())).toBe("FrameError");
    const big = new Uint8Array(4);
    new DataView(big.buffer).setUint32(0, FRAME_BYTES_MAX + 1, true);
    const r2 = new FrameReader();
    r2.push(big);
    expect(outcome(() => r2.next())).toBe("FrameError");
    // A count larger than the bytes left is caught before any array grows.
    const f = encodeMessage(EVERY_MESSAGE[1]!).slice(); // append, no entries: count at body offset 42
    f.set([0xff, 0xff, 0xff, 0xff], FRAME_HEADER_BYTES + 42);
    expect(() => decodeMessage(body(f))).toThrow(/entry count of 4294967295 does not fit/);
    const snap = encodeMessage(EVERY_MESSAGE[13]!).slice(); // snapshot: voters count at body offset 34
    snap.set([0xff, 0xff, 0xff, 0x7f], FRAME_HEADER_BYTES + 34);
    expect(() => decodeMessage(body(snap))).toThrow(/voters of 2147483647 does not fit/);
  });

  test("a claimed length of 1 GiB buffers only what arrived", () => {
    const r = new FrameReader();
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, FRAME_BYTES_MAX, true);
    r.push(head);
    for (let i = 0; i < 10; i++) r.push(new Uint8Array(1000));
    expect(r.next()).toBeUndefined();
    expect(r.buffered).toBe(10_004);
    expect((r as unknown as { buf: Uint8Array }).buf.length).toBeLessThan(64 * 1024);
  });

  test(`random bytes and mutated frames (seed ${SEED}): FrameError or a valid message, never another exception`, () => {
    const rand = new Rand(SEED);
    const frames = EVERY_MESSAGE.filter((m) => frameBytes(m) < 4096).map((m) => encodeMessage(m));
    const counts: Record<string, number> = {};
    for (let i = 0; i < 20_000; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) {
        b = new Uint8Array(rand.int(200));
        for (let j = 0; j < b.length; j++) b[j] = rand.int(256);
        if (b.length > 1 && rand.chance(0.5)) b[0] = 1; // often a valid version, to reach deeper
        if (b.length > 2 && rand.chance(0.5)) b[1] = 1 + rand.int(10);
      } else {
        b = body(rand.pick(frames)).slice();
        for (let n = 1 + rand.int(3); n > 0; n--) b[rand.int(b.length)] = rand.int(256);
      }
      const o = outcome(() => decodeMessage(b));
      counts[o] = (counts[o] ?? 0) + 1;
      const oh = outcome(() => decodeHandshake(b));
      counts[`h:${oh}`] = (counts[`h:${oh}`] ?? 0) + 1;
      // Through the reader too, with a random length prefix.
      const r = new FrameReader(4096);
      const pre = new Uint8Array(4);
      new DataView(pre.buffer).setUint32(0, rand.chance(0.5) ? b.length : rand.nextU32(), true);
      r.push(pre);
      r.push(b);
      const or = outcome(() => {
        const x = r.next();
        if (x !== undefined) decodeMessage(x);
      });
      counts[`r:${or}`] = (counts[`r:${or}`] ?? 0) + 1;
    }
    const kinds = Object.keys(counts).filter((k) => !/^(h:|r:)?(ok|FrameError)$/.test(k));
    expect(kinds).toEqual([]);
    expect(counts.FrameError).toBeGreaterThan(1000);
    expect(counts.ok).toBeGreaterThan(100); // mutations of data bytes still decode
  });
});

describe("FrameReader", () => {
  test("splits a stream cut at every byte into the same frames", () => {
    const frames = EVERY_MESSAGE.slice(2, 12).map((m) => encodeMessage(m));
    const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let off = 0;
    for (const f of frames) {
      stream.set(f, off);
      off += f.length;
    }
    for (const step of [1, 2, 3, 7, 64, stream.length]) {
      const r = new FrameReader();
      const got: Message[] = [];
      for (let i = 0; i < stream.length; i += step) {
        r.push(stream.subarray(i, i + step));
        for (let b = r.next(); b !== undefined; b = r.next()) got.push(decodeMessage(b));
      }
      expect(got).toEqual(EVERY_MESSAGE.slice(2, 12));
      expect(r.buffered).toBe(0);
    }
  });
});
