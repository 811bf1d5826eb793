// RESP2/RESP3 reply encoder writing straight into one growable byte buffer. Pure.
//
// Strings everywhere in kv are *byte strings*: a JS string whose every char code is
// 0..255 and stands for one byte (latin1). Keys and values keep the exact bytes the
// client sent, which makes the store binary-safe without holding a Buffer per value.
import { assert } from "../errors.ts";

export type Proto = 2 | 3;

/** Where command implementations write their reply. One call per RESP value. */
export interface ReplyWriter {
  readonly proto: Proto;
  ok(): void;
  /** `+s`. `s` must be a short byte string; CR/LF are replaced with spaces. */
  simple(s: string): void;
  /** `-s`. `s` starts with the error code, e.g. `ERR syntax error`. */
  error(s: string): void;
  /** `:n`; a bigint for values past 2^53 (64-bit counters). */
  int(n: number | bigint): void;
  /** `$len\r\n<bytes>\r\n` from a byte string. */
  bulk(s: string): void;
  bulkBytes(b: Uint8Array): void;
  /** The null bulk string: `$-1` in RESP2, `_` in RESP3. */
  nil(): void;
  /** The null array: `*-1` in RESP2, `_` in RESP3. */
  nilArray(): void;
  array(n: number): void;
  /** `%n` in RESP3; a flat `*2n` array in RESP2. Follow with n key/value pairs. */
  map(n: number): void;
  /** `~n` in RESP3; `*n` in RESP2. */
  set(n: number): void;
  /** `>n` in RESP3 (out-of-band push); `*n` in RESP2. */
  push(n: number): void;
  /** `,x` in RESP3; a bulk string in RESP2. */
  double(x: number): void;
  /** `#t`/`#f` in RESP3; `:1`/`:0` in RESP2. */
  bool(b: boolean): void;
}

const CR = 13;
const LF = 10;
const INITIAL_BYTES = 16 * 1024;

/** Small precomputed `:n\r\n` and `$n\r\n` headers: most replies hit these. */
const SMALL_MAX = 1024;
const INT_HEADERS: Uint8Array[] = [];
const BULK_HEADERS: Uint8Array[] = [];
for (let i = 0; i < SMALL_MAX; i++) {
  INT_HEADERS.push(Buffer.from(`:${i}\r\n`, "latin1"));
  BULK_HEADERS.push(Buffer.from(`$${i}\r\n`, "latin1"));
}
const OK = Buffer.from("+OK\r\n", "latin1");

/** A growable output buffer: replies for one read batch, flushed with one socket write. */
export class ReplyBuffer implements ReplyWriter {
  proto: Proto = 2;
  buf: Buffer;
  len = 0;
  /** The most bytes held at once, as of the last reset. */
  peak = 0;
  /** Called with the text of every error reply written here (the server counts them for INFO). */
  onError: ((text: string) => void) | null = null;

  constructor(initialBytes = INITIAL_BYTES) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Bytes written so far (a view, valid until the next write or reset). */
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  reset(): void {
    if (this.len > this.peak) this.peak = this.len;
    this.len = 0;
  }

  /** Drops everything from `mark` on (used to discard a partial reply). */
  truncate(mark: number): void {
    assert(mark >= 0 && mark <= this.len, "truncate mark out of range");
    this.len = mark;
  }

  private ensure(extra: number): void {
    const need = this.len + extra;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  private crlf(): void {
    this.buf[this.len++] = CR;
    this.buf[this.len++] = LF;
  }

  /** `<prefix><n>\r\n` for any integer n. */
  private header(prefix: number, n: number | bigint): void {
    this.ensure(24);
    this.buf[this.len++] = prefix;
    this.len += this.buf.latin1Write(String(n), this.len);
    this.crlf();
  }

  private line(prefix: number, s: string): void {
    if (s.indexOf("\r") !== -1 || s.indexOf("\n") !== -1) s = s.replace(/[\r\n]/g, " ");
    this.ensure(s.length + 3);
    this.buf[this.len++] = prefix;
    this.len += this.buf.latin1Write(s, this.len);
    this.crlf();
  }

  ok(): void {
    this.raw(OK);
  }

  simple(s: string): void {
    this.line(0x2b /* + */, s);
  }

  error(s: string): void {
    if (this.onError !== null) this.onError(s);
    this.line(0x2d /* - */, s);
  }

  int(n: number | bigint): void {
    if (typeof n === "number" && n >= 0 && n < SMALL_MAX && Number.isInteger(n)) this.raw(INT_HEADERS[n]!);
    else this.header(0x3a /* : */, n);
  }

  bulk(s: string): void {
    const n = s.length;
    if (n < SMALL_MAX) {
      const h = BULK_HEADERS[n]!;
      this.ensure(h.length + n + 2);
      this.buf.set(h, this.len);
      this.len += h.length;
    } else {
      this.header(0x24 /* $ */, n);
      this.ensure(n + 2);
    }
    if (n > 0) this.len += this.buf.latin1Write(s, this.len);
    this.crlf();
  }

  bulkBytes(b: Uint8Array): void {
    this.header(0x24, b.length);
    this.ensure(b.length + 2);
    this.buf.set(b, this.len);
    this.len += b.length;
    this.crlf();
  }

  nil(): void {
    if (this.proto === 3) this.raw(NULL3);
    else this.raw(NULL_BULK2);
  }

  nilArray(): void {
    if (this.proto === 3) this.raw(NULL3);
    else this.raw(NULL_ARRAY2);
  }

  array(n: number): void {
    this.header(0x2a /* * */, n);
  }

  map(n: number): void {
    if (this.proto === 3) this.header(0x25 /* % */, n);
    else this.header(0x2a, n * 2);
  }

  set(n: number): void {
    this.header(this.proto === 3 ? 0x7e /* ~ */ : 0x2a, n);
  }

  push(n: number): void {
    this.header(this.proto === 3 ? 0x3e /* > */ : 0x2a, n);
  }

  double(x: number): void {
    const s = formatDouble(x);
    if (this.proto === 3) this.line(0x2c /* , */, s);
    else this.bulk(s);
  }

  bool(b: boolean): void {
    if (this.proto === 3) this.raw(b ? TRUE3 : FALSE3);
    else this.int(b ? 1 : 0);
  }
}

const NULL3 = Buffer.from("_\r\n", "latin1");
const NULL_BULK2 = Buffer.from("$-1\r\n", "latin1");
const NULL_ARRAY2 = Buffer.from("*-1\r\n", "latin1");
const TRUE3 = Buffer.from("#t\r\n", "latin1");
const FALSE3 = Buffer.from("#f\r\n", "latin1");

/** Formats a double as Redis does: `inf`, `-inf`, `nan`, or the shortest round-trip form. */
export function formatDouble(x: number): string {
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (Number.isNaN(x)) return "nan";
  return String(x);
}

/** Converts UTF-8 text (log lines, INFO) into a byte string for the writer. */
export function utf8ToBytes(s: string): string {
  // Fast path: pure ASCII is already a valid byte string.
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, "utf8").latin1Slice();
  }
  return s;
}

/** The inverse of utf8ToBytes, for showing byte strings to humans. */
export function bytesToUtf8(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, "latin1").toString("utf8");
  }
  return s;
}
