// Incremental RESP2/RESP3 reply parser for the client: bytes in, reply values out. Pure and bounded.
//
// Feed chunks with push(); pull complete top-level replies with next(mode) until it returns
// NEED_MORE. Aggregates are parsed with an explicit stack, so a reply split at any byte
// boundary gives the same values, and no byte is parsed twice except a header whose body has
// not fully arrived. Chunks are borrowed (Bun may reuse a socket's read buffer after the data
// handler returns): the unconsumed tail is copied when next() returns NEED_MORE.
import { ProtocolError } from "../errors.ts";

/** An error reply (`-ERR ...` or RESP3 `!len`). Values, not exceptions: the caller decides. */
export class ErrorReply {
  constructor(readonly message: string) {}
}

/** A RESP3 out-of-band push frame (`>n`), e.g. pub/sub messages. Never a command's reply. */
export class PushReply {
  constructor(readonly data: RespValue[]) {}
}

/**
 * One parsed reply. Simple strings are always JS strings; bulk strings follow the BulkMode;
 * integers are numbers (bigint past 2^53); RESP3 maps become Map, sets become arrays,
 * doubles numbers, booleans booleans, big numbers bigint, nulls null.
 */
export type RespValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Uint8Array
  | ErrorReply
  | PushReply
  | RespValue[]
  | Map<RespValue, RespValue>;

/** How bulk strings are returned: UTF-8 text, a copied byte array, or a byte string (latin1). */
export type BulkMode = "utf8" | "bytes" | "latin1";

export const NEED_MORE: unique symbol = Symbol("need more bytes");

export interface ReplyParserLimits {
  /** Largest bulk string accepted (Redis's proto-max-bulk-len default). */
  bulkBytesMax: number;
  /** Largest element count an aggregate header may announce. */
  aggregateLenMax: number;
  /** Deepest nesting of aggregates. */
  depthMax: number;
  /** Longest header, simple string or error line. */
  lineBytesMax: number;
}

export const REPLY_LIMITS_DEFAULT: ReplyParserLimits = {
  bulkBytesMax: 512 * 1024 * 1024,
  aggregateLenMax: 2 ** 31 - 1,
  depthMax: 128,
  lineBytesMax: 64 * 1024,
};

type FrameKind = "array" | "map" | "set" | "push" | "attr";
interface Frame {
  kind: FrameKind;
  items: RespValue[];
  remaining: number;
}

const CR = 13;
const LF = 10;
const EMPTY = Buffer.alloc(0);
/** Returned internally when an aggregate frame was opened (no value yet). */
const OPENED: unique symbol = Symbol("opened");
/** Returned internally when an attribute finished (it annotates the next value; dropped). */
const SKIPPED: unique symbol = Symbol("skipped");

export class ReplyParser {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** True while `buf` is a caller's chunk that we must not keep past next() === NEED_MORE. */
  private borrowed = false;
  private chunks: Buffer[] = [];
  private chunksBytes = 0;
  /** Bytes needed from `pos` before parsing can make progress. */
  private need = 1;
  private readonly stack: Frame[] = [];
  private failed: ProtocolError | null = null;
  private readonly limits: ReplyParserLimits;

  constructor(limits: Partial<ReplyParserLimits> = {}) {
    this.limits = { ...REPLY_LIMITS_DEFAULT, ...limits };
  }

  /** Bytes received but not yet turned into a complete reply (plus partial aggregates). */
  get bufferedBytes(): number {
    return this.buf.length - this.pos + this.chunksBytes;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    if (this.pos >= this.buf.length && this.chunks.length === 0) {
      this.buf = b;
      this.pos = 0;
      this.borrowed = true;
      return;
    }
    // Copy now: a borrowed chunk may be reused by the caller after this call.
    this.chunks.push(Buffer.from(b));
    this.chunksBytes += b.length;
    if (this.buf.length - this.pos + this.chunksBytes >= this.need) this.merge();
  }

  private merge(): void {
    const parts = [this.buf.subarray(this.pos), ...this.chunks];
    this.buf = Buffer.concat(parts);
    this.pos = 0;
    this.borrowed = false;
    this.chunks = [];
    this.chunksBytes = 0;
  }

  /**
   * The next complete top-level reply, or NEED_MORE. Throws ProtocolError on malformed
   * input or a broken limit; the parser then stays failed (close the connection).
   * `mode` decides how bulk strings of this reply are returned.
   */
  next(mode: BulkMode = "utf8"): RespValue | typeof NEED_MORE {
    if (this.failed) throw this.failed;
    if (this.chunks.length > 0) {
      if (this.buf.length - this.pos + this.chunksBytes < this.need) return NEED_MORE;
      this.merge();
    }
    try {
      for (;;) {
        const v = this.parseOne(mode);
        if (v === NEED_MORE) return this.suspend();
        if (v === OPENED) continue;
        const done = this.complete(v);
        if (done === OPENED || done === SKIPPED) continue;
        return done;
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.failed = e;
      throw e;
    }
  }

  /** Attaches a finished value to the open aggregates; returns a top-level value or OPENED. */
  private complete(v: RespValue | typeof SKIPPED): RespValue | typeof OPENED | typeof SKIPPED {
    let val: RespValue | typeof SKIPPED = v;
    for (;;) {
      if (val === SKIPPED) return SKIPPED;
      const top = this.stack[this.stack.length - 1];
      if (top === undefined) return val;
      top.items.push(val);
      if (--top.remaining > 0) return OPENED;
      this.stack.pop();
      val = finish(top);
    }
  }

  private suspend(): typeof NEED_MORE {
    if (this.pos >= this.buf.length) {
      this.buf = EMPTY;
      this.pos = 0;
      this.borrowed = false;
    } else if (this.borrowed) {
      this.buf = Buffer.from(this.buf.subarray(this.pos));
      this.pos = 0;
      this.borrowed = false;
    }
    return NEED_MORE;
  }

  /** Index of the CR ending the line that starts at `from`, or -1 (need more). */
  private lineEnd(from: number): number {
    const buf = this.buf;
    const cr = buf.indexOf(CR, from);
    if (cr === -1 || cr + 1 >= buf.length) {
      const avail = buf.length - from;
      if (avail > this.limits.lineBytesMax) throw new ProtocolError("reply line too long");
      this.need = buf.length - this.pos + 1;
      return -1;
    }
    if (buf[cr + 1] !== LF) throw new ProtocolError("expected LF after CR");
    if (cr - from > this.limits.lineBytesMax) throw new ProtocolError("reply line too long");
    return cr;
  }

  private parseOne(mode: BulkMode): RespValue | typeof NEED_MORE | typeof OPENED | typeof SKIPPED {
    const buf = this.buf;
    const start = this.pos;
    if (start >= buf.length) {
      this.need = 1;
      return NEED_MORE;
    }
    const type = buf[start]!;
    const end = this.lineEnd(start + 1);
    if (end === -1) return NEED_MORE;
    switch (type) {
      case 0x2b /* + */: {
        this.pos = end + 2;
        return mode === "latin1" ? buf.latin1Slice(start + 1, end) : buf.toString("utf8", start + 1, end);
      }
      case 0x2d /* - */: {
        this.pos = end + 2;
        return new ErrorReply(buf.toString("utf8", start + 1, end));
      }
      case 0x3a /* : */: {
        const n = parseInteger(buf, start + 1, end);
        this.pos = end + 2;
        return n;
      }
      case 0x24 /* $ */:
      case 0x3d /* = */:
      case 0x21 /* ! */: {
        const len = this.length(buf, start + 1, end, this.limits.bulkBytesMax);
        if (len === -1) {
          if (type !== 0x24) throw new ProtocolError("null length on a non-bulk type");
          this.pos = end + 2;
          return null;
        }
        const bodyStart = end + 2;
        const bodyEnd = bodyStart + len;
        if (bodyEnd + 2 > buf.length) {
          this.need = bodyEnd + 2 - this.pos;
          return NEED_MORE;
        }
        if (buf[bodyEnd] !== CR || buf[bodyEnd + 1] !== LF) throw new ProtocolError("bulk string not followed by CRLF");
        this.pos = bodyEnd + 2;
        if (type === 0x21) return new ErrorReply(buf.toString("utf8", bodyStart, bodyEnd));
        let from = bodyStart;
        if (type === 0x3d) {
          if (len < 4 || buf[bodyStart + 3] !== 0x3a) throw new ProtocolError("verbatim string without a format");
          from += 4;
        }
        return decodeBulk(buf, from, bodyEnd, mode);
      }
      case 0x2a /* * */:
      case 0x25 /* % */:
      case 0x7e /* ~ */:
      case 0x3e /* > */:
      case 0x7c /* | */: {
        const n = this.length(buf, start + 1, end, this.limits.aggregateLenMax);
        this.pos = end + 2;
        if (n === -1) {
          if (type !== 0x2a) throw new ProtocolError("null length on a non-array aggregate");
          return null;
        }
        const kind: FrameKind =
          type === 0x2a ? "array" : type === 0x25 ? "map" : type === 0x7e ? "set" : type === 0x3e ? "push" : "attr";
        const count = kind === "map" || kind === "attr" ? n * 2 : n;
        if (count === 0) return finish({ kind, items: [], remaining: 0 });
        if (this.stack.length >= this.limits.depthMax) throw new ProtocolError("reply nested too deeply");
        this.stack.push({ kind, items: [], remaining: count });
        return OPENED;
      }
      case 0x5f /* _ */: {
        if (end !== start + 1) throw new ProtocolError("malformed null");
        this.pos = end + 2;
        return null;
      }
      case 0x23 /* # */: {
        const c = end === start + 2 ? buf[start + 1] : 0;
        if (c !== 0x74 && c !== 0x66) throw new ProtocolError("malformed boolean");
        this.pos = end + 2;
        return c === 0x74;
      }
      case 0x2c /* , */: {
        const s = buf.latin1Slice(start + 1, end);
        this.pos = end + 2;
        return parseDouble(s);
      }
      case 0x28 /* ( */: {
        const s = buf.latin1Slice(start + 1, end);
        if (!/^[-+]?\d+$/.test(s)) throw new ProtocolError("malformed big number");
        this.pos = end + 2;
        return BigInt(s);
      }
      default:
        throw new ProtocolError(`unknown reply type byte 0x${type.toString(16).padStart(2, "0")}`);
    }
  }

  /** A length field: -1 or 0..max. */
  private length(buf: Buffer, from: number, end: number, max: number): number {
    if (buf[from] === 0x3f /* ? */) throw new ProtocolError("streamed RESP3 aggregates are not supported");
    const n = parseInteger(buf, from, end);
    if (typeof n !== "number" || n < -1) throw new ProtocolError("invalid length");
    if (n > max) throw new ProtocolError(`length ${n} exceeds the limit ${max}`);
    return n;
  }
}

function finish(f: Frame): RespValue | typeof SKIPPED {
  switch (f.kind) {
    case "array":
    case "set":
      return f.items;
    case "push":
      return new PushReply(f.items);
    case "map": {
      const m = new Map<RespValue, RespValue>();
      for (let i = 0; i < f.items.length; i += 2) m.set(f.items[i]!, f.items[i + 1]!);
      return m;
    }
    case "attr":
      return SKIPPED;
  }
}

function decodeBulk(buf: Buffer, from: number, to: number, mode: BulkMode): RespValue {
  if (mode === "utf8") return buf.toString("utf8", from, to);
  if (mode === "latin1") return buf.latin1Slice(from, to);
  return Uint8Array.prototype.slice.call(buf, from, to);
}

/** A signed decimal integer between from and end: number when safe, bigint otherwise. */
function parseInteger(buf: Buffer, from: number, end: number): number | bigint {
  let i = from;
  let neg = false;
  if (buf[i] === 0x2d) {
    neg = true;
    i++;
  } else if (buf[i] === 0x2b) i++;
  if (i >= end) throw new ProtocolError("malformed integer");
  if (end - i > 15) {
    const s = buf.latin1Slice(from, end);
    if (!/^[-+]?\d+$/.test(s)) throw new ProtocolError("malformed integer");
    const big = BigInt(s);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) throw new ProtocolError("malformed integer");
    n = n * 10 + d;
  }
  return neg ? -n : n;
}

function parseDouble(s: string): number {
  const t = s.toLowerCase();
  if (t === "inf" || t === "+inf") return Infinity;
  if (t === "-inf") return -Infinity;
  if (t === "nan") return NaN;
  const x = Number(s);
  if (s.length === 0 || Number.isNaN(x)) throw new ProtocolError("malformed double");
  return x;
}
