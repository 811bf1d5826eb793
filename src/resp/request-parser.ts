// Incremental, bounded parser for client requests: RESP multibulk frames and Redis inline
// commands. Pure. Bytes go in with push(); complete commands come out of next() as argv
// arrays of byte strings (one char per byte, latin1), in order.
//
// Resumable: a frame split across reads at any byte continues where it stopped, so a
// client sending one byte at a time costs O(bytes), not O(bytes^2).
import { assert, ProtocolError } from "../errors.ts";

export interface RequestLimits {
  /** Largest bulk string accepted (Redis: proto-max-bulk-len). */
  protoMaxBulkLen: number;
  /** Most arguments in one multibulk command. */
  multibulkArgsMax: number;
  /** Most bytes buffered for one unfinished command (Redis: client-query-buffer-limit). */
  queryBufferBytesMax: number;
}

/** Redis's PROTO_INLINE_MAX_SIZE: an inline line (or a `*n`/`$n` header) longer than this is an error. */
export const INLINE_BYTES_MAX = 64 * 1024;

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  protoMaxBulkLen: 512 * 1024 * 1024,
  multibulkArgsMax: 1024 * 1024,
  queryBufferBytesMax: 1024 * 1024 * 1024,
};

const CR = 13;
const LF = 10;
const STAR = 0x2a;
const DOLLAR = 0x24;

const EMPTY = Buffer.alloc(0);

/** Where the parser is inside the current command. */
const enum State {
  /** At the start of a command: `*` means multibulk, anything else inline. */
  Start,
  /** Waiting for the `$len` line of the next argument. */
  BulkHeader,
  /** Waiting for `bulkLen` bytes plus CRLF. */
  BulkBody,
}

export class RequestParser {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Bytes in buf that are valid (buf may be a growable pending buffer larger than its contents). */
  private end = 0;
  /** True when buf is our own pending buffer (safe to append into); false when it is a caller's chunk. */
  private owned = false;

  private state: State = State.Start;
  private args: string[] = [];
  private argsLeft = 0;
  /** Bytes of the arguments of the unfinished command parsed so far (counted against the query buffer limit). */
  private argsBytes = 0;
  private bulkLen = 0;
  /** Where the search for the next LF resumes (absolute offset in buf), so partial lines are not rescanned. */
  private scanFrom = 0;

  /** The last command name seen: pipelines repeat one command, so its string is reused. */
  private lastName = "";

  constructor(private readonly limits: RequestLimits = DEFAULT_REQUEST_LIMITS) {}

  /** The command name at buf[p, p+len): the previous one's string when the bytes match. */
  private commandName(buf: Buffer, p: number, len: number): string {
    const last = this.lastName;
    if (len === last.length && len <= 16) {
      let i = 0;
      while (i < len && buf[p + i] === last.charCodeAt(i)) i++;
      if (i === len) return last;
    }
    const name = buf.latin1Slice(p, p + len);
    if (len <= 16) this.lastName = name;
    return name;
  }

  /** Bytes received but not yet returned as commands. */
  bufferedBytes(): number {
    return this.end - this.pos;
  }

  /** Room left in the parser's own buffer before it must grow (CLIENT LIST's qbuf-free). */
  bufferFreeBytes(): number {
    return this.owned ? this.buf.length - this.end : 0;
  }

  /** Bytes of the arguments of a command still being received (CLIENT LIST's argv-mem). */
  partialArgBytes(): number {
    return this.state === State.Start ? 0 : this.argsBytes;
  }

  /** Adds bytes from the socket. The parser reads `chunk` in place until next() returns null, then copies what is left. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const rest = this.end - this.pos;
    if (rest === 0) {
      // Fast path: nothing pending, parse straight from the caller's chunk.
      this.buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      this.pos = 0;
      this.end = chunk.length;
      this.scanFrom = 0;
      this.owned = false;
      return;
    }
    if (rest + chunk.length > this.limits.queryBufferBytesMax) {
      throw new ProtocolError("Protocol error: query buffer limit exceeded");
    }
    if (this.owned && this.end + chunk.length <= this.buf.length) {
      this.buf.set(chunk, this.end);
      this.end += chunk.length;
      return;
    }
    // Copy the unconsumed rest and the new chunk into a fresh pending buffer (doubling growth).
    let size = Math.max(4096, this.buf.length);
    while (size < rest + chunk.length) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, this.pos, this.end);
    next.set(chunk, rest);
    this.scanFrom -= this.pos;
    this.buf = next;
    this.pos = 0;
    this.end = rest + chunk.length;
    this.owned = true;
  }

  /**
   * The next complete command, or null when more bytes are needed.
   * Throws ProtocolError on malformed input; the connection must then be closed.
   * Empty inline lines and `*0`/`*-1` frames are skipped, as Redis does.
   */
  next(): string[] | null {
    for (;;) {
      const argv = this.step();
      if (argv === null) {
        this.compact();
        return null;
      }
      if (argv.length > 0) return argv;
    }
  }

  /**
   * Called when next() runs out of complete commands. Drops the reference to the caller's
   * chunk (the socket layer may reuse it): unconsumed bytes move into a buffer we own.
   */
  private compact(): void {
    const rest = this.end - this.pos;
    if (rest === 0) {
      this.buf = EMPTY;
      this.owned = false;
    } else if (!this.owned) {
      const next = Buffer.allocUnsafe(Math.max(4096, rest * 2));
      this.buf.copy(next, 0, this.pos, this.end);
      this.buf = next;
      this.owned = true;
    } else if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.end);
    }
    this.scanFrom = Math.max(0, this.scanFrom - this.pos);
    this.pos = 0;
    this.end = rest;
  }

  /** Parses at most one command: argv, [] for an ignorable frame, or null when incomplete. */
  private step(): string[] | null {
    const buf = this.buf;
    for (;;) {
      switch (this.state) {
        case State.Start: {
          if (this.pos >= this.end) return null;
          if (buf[this.pos] !== STAR) return this.inline();
          const lf = this.findLf("Protocol error: too big mbulk count string");
          if (lf < 0) return null;
          const n = parseLength(buf, this.pos + 1, lf);
          if (n === null || n > this.limits.multibulkArgsMax) {
            throw new ProtocolError("Protocol error: invalid multibulk length");
          }
          this.pos = lf + 1;
          if (n <= 0) return [];
          this.args = new Array<string>();
          this.argsLeft = n;
          this.argsBytes = 0;
          this.state = State.BulkHeader;
          break;
        }
        case State.BulkHeader: {
          if (this.pos >= this.end) return null;
          if (buf[this.pos] !== DOLLAR) {
            throw new ProtocolError(`Protocol error: expected '$', got '${String.fromCharCode(buf[this.pos]!)}'`);
          }
          const lf = this.findLf("Protocol error: too big bulk count string");
          if (lf < 0) return null;
          const len = parseLength(buf, this.pos + 1, lf);
          if (len === null || len < 0 || len > this.limits.protoMaxBulkLen) {
            throw new ProtocolError("Protocol error: invalid bulk length");
          }
          this.pos = lf + 1;
          this.bulkLen = len;
          this.state = State.BulkBody;
          break;
        }
        case State.BulkBody: {
          const len = this.bulkLen;
          if (this.end - this.pos < len + 2) {
            // Bound memory by what has actually arrived; never allocate `len` up front.
            if (this.argsBytes + this.end - this.pos > this.limits.queryBufferBytesMax) {
              throw new ProtocolError("Protocol error: query buffer limit exceeded");
            }
            return null;
          }
          const p = this.pos;
          if (buf[p + len] !== CR || buf[p + len + 1] !== LF) {
            throw new ProtocolError("Protocol error: expected CRLF after bulk string");
          }
          this.args.push(this.args.length === 0 ? this.commandName(buf, p, len) : buf.latin1Slice(p, p + len));
          this.argsBytes += len;
          if (this.argsLeft > 1 && this.argsBytes > this.limits.queryBufferBytesMax) {
            throw new ProtocolError("Protocol error: query buffer limit exceeded");
          }
          this.pos = p + len + 2;
          this.scanFrom = this.pos;
          if (--this.argsLeft === 0) {
            this.state = State.Start;
            const argv = this.args;
            this.args = [];
            return argv;
          }
          this.state = State.BulkHeader;
          break;
        }
      }
    }
  }

  /**
   * Finds the LF that ends the line starting at pos, resuming an earlier scan.
   * Returns -1 when the line is not complete yet. A line past INLINE_BYTES_MAX is an error.
   */
  private findLf(tooBig: string): number {
    const from = Math.max(this.scanFrom, this.pos);
    const lf = this.buf.indexOf(LF, from);
    if (lf === -1 || lf >= this.end) {
      this.scanFrom = this.end;
      if (this.end - this.pos > INLINE_BYTES_MAX) throw new ProtocolError(tooBig);
      return -1;
    }
    if (lf - this.pos > INLINE_BYTES_MAX) throw new ProtocolError(tooBig);
    this.scanFrom = lf + 1;
    return lf;
  }

  private inline(): string[] | null {
    const lf = this.findLf("Protocol error: too big inline request");
    if (lf < 0) return null;
    let lineEnd = lf;
    if (lineEnd > this.pos && this.buf[lineEnd - 1] === CR) lineEnd--;
    const line = this.buf.latin1Slice(this.pos, lineEnd);
    this.pos = lf + 1;
    const argv = splitInline(line);
    if (argv === null) throw new ProtocolError("Protocol error: unbalanced quotes in request");
    if (argv.length > this.limits.multibulkArgsMax) throw new ProtocolError("Protocol error: invalid multibulk length");
    return argv;
  }
}

/**
 * Parses the integer in buf[start, lf) where lf is the line's LF; a CR before it is dropped.
 * (Redis insists on CR; a bare LF is accepted here since the count is unambiguous.)
 * Null when the text is not an integer.
 */
function parseLength(buf: Buffer, start: number, lf: number): number | null {
  let end = lf;
  if (end > start && buf[end - 1] === CR) end--;
  if (end === start) return null;
  let i = start;
  let neg = false;
  if (buf[i] === 0x2d /* - */) {
    neg = true;
    i++;
    if (i === end) return null;
  }
  if (end - i > 15) return null; // beyond any limit we accept; avoids float imprecision
  let n = 0;
  for (; i < end; i++) {
    const c = buf[i]! - 0x30;
    if (c < 0 || c > 9) return null;
    n = n * 10 + c;
  }
  return neg ? -n : n;
}

function isSpace(c: number): boolean {
  // sdssplitargs uses isspace(): space, \t, \n, \v, \f, \r
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * Splits an inline command line with Redis's sdssplitargs rules: words separated by
 * whitespace; "double quotes" with \n \r \t \b \a \\ \" \xHH escapes; 'single quotes' with
 * \' only; a closing quote must be followed by whitespace or the end. Null on unbalanced quotes.
 */
export function splitInline(line: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && isSpace(line.charCodeAt(i))) i++;
    if (i >= n) return out;
    let cur = "";
    let inDq = false;
    let inSq = false;
    let done = false;
    while (!done) {
      if (inDq) {
        if (i >= n) return null;
        const c = line.charCodeAt(i);
        if (c === 0x5c /* \ */ && i + 3 < n && line.charCodeAt(i + 1) === 0x78 /* x */ &&
            hexVal(line.charCodeAt(i + 2)) >= 0 && hexVal(line.charCodeAt(i + 3)) >= 0) {
          cur += String.fromCharCode(hexVal(line.charCodeAt(i + 2)) * 16 + hexVal(line.charCodeAt(i + 3)));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          const e = line[i];
          cur += e === "n" ? "\n" : e === "r" ? "\r" : e === "t" ? "\t" : e === "b" ? "\b" : e === "a" ? "\x07" : e;
        } else if (c === 0x22 /* " */) {
          if (i + 1 < n && !isSpace(line.charCodeAt(i + 1))) return null;
          done = true;
        } else {
          cur += line[i];
        }
      } else if (inSq) {
        if (i >= n) return null;
        const c = line.charCodeAt(i);
        if (c === 0x5c && i + 1 < n && line.charCodeAt(i + 1) === 0x27 /* ' */) {
          i++;
          cur += "'";
        } else if (c === 0x27) {
          if (i + 1 < n && !isSpace(line.charCodeAt(i + 1))) return null;
          done = true;
        } else {
          cur += line[i];
        }
      } else {
        if (i >= n) {
          done = true;
          break;
        }
        const c = line.charCodeAt(i);
        if (isSpace(c)) done = true;
        else if (c === 0x22) inDq = true;
        else if (c === 0x27) inSq = true;
        else cur += line[i];
      }
      if (i < n) i++;
    }
    out.push(cur);
  }
}

/** Number of decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes `<prefix><n>\r\n` at o; returns the offset after it. */
function putHeader(b: Buffer, o: number, prefix: number, n: number): number {
  b[o++] = prefix;
  const d = digits(n);
  for (let i = o + d - 1; i >= o; i--) {
    b[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  o += d;
  b[o++] = CR;
  b[o++] = LF;
  return o;
}

/** Bytes encodeCommand(argv) takes, from the arguments' lengths alone (a write's size is checked before it is logged). */
export function encodedCommandBytes(argv: readonly { readonly length: number }[]): number {
  let size = 3 + digits(argv.length);
  for (const a of argv) size += 5 + digits(a.length) + a.length;
  return size;
}

/** Encodes argv as a RESP multibulk frame, exactly sized (the log's payload for a command). */
export function encodeCommand(argv: readonly string[]): Buffer {
  const size = encodedCommandBytes(argv);
  const b = Buffer.allocUnsafe(size);
  const o = encodeCommandInto(argv, b, 0);
  assert(o === size, "encodeCommand size");
  return b;
}

/** Writes argv's RESP multibulk frame into `b` at `off` (room for encodedCommandBytes(argv)); returns the offset after it. */
export function encodeCommandInto(argv: readonly string[], b: Buffer, off: number): number {
  let o = putHeader(b, off, STAR, argv.length);
  for (const a of argv) {
    o = putHeader(b, o, DOLLAR, a.length);
    if (a.length > 0) o += b.latin1Write(a, o, a.length);
    b[o++] = CR;
    b[o++] = LF;
  }
  return o;
}

/** Where readHeader stopped: the offset after the header's CRLF. */
let headerEnd = 0;

/** Reads "<mark><digits>\r\n" at p (no sign, no leading zero, at most 10 digits); -1 when it is not exactly that. */
function readHeader(b: Uint8Array, p: number, end: number, mark: number): number {
  if (p >= end || b[p] !== mark) return -1;
  let n = 0;
  let i = p + 1;
  const digitsEnd = Math.min(end, i + 10);
  for (; i < digitsEnd; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  if (i === p + 1 || i + 1 >= end || b[i] !== CR || b[i + 1] !== LF) return -1;
  if (b[p + 1] === 0x30 && i > p + 2) return -1; // "07": encodeCommand never writes it
  headerEnd = i + 2;
  return n;
}

/**
 * Decodes b[start, end) when it holds exactly one RESP array of bulk strings, as encodeCommand
 * writes (a log record's payload), else returns null. Recovery replays every record through
 * this: one pass over the bytes and one string per argument, no parser state. `names` caches
 * command names so a log of SETs shares one "SET" string.
 */
export function decodeCommand(b: Buffer, start: number, end: number, names?: Map<number, string>): string[] | null {
  const n = readHeader(b, start, end, STAR);
  // Each argument takes at least 6 bytes ("$0\r\n\r\n"): a larger count cannot fit.
  if (n < 1 || n > (end - headerEnd) / 6) return null;
  let p = headerEnd;
  const argv = new Array<string>(n);
  for (let k = 0; k < n; k++) {
    const len = readHeader(b, p, end, DOLLAR);
    if (len < 0) return null;
    p = headerEnd;
    if (p + len + 2 > end || b[p + len] !== CR || b[p + len + 1] !== LF) return null;
    if (k === 0 && names !== undefined && len <= 6) {
      let key = len;
      for (let i = 0; i < len; i++) key = key * 256 + b[p + i]!;
      let name = names.get(key);
      if (name === undefined) names.set(key, (name = b.latin1Slice(p, p + len)));
      argv[0] = name;
    } else argv[k] = b.latin1Slice(p, p + len);
    p += len + 2;
  }
  return p === end ? argv : null;
}

/** Where decodePlainSet found the key and the value (valid until its next call). */
export const plainSet = { keyStart: 0, keyEnd: 0, valueAt: 0 };

/**
 * True when b[start, end) is exactly `SET key value` (the name in any case, no options), as
 * encodeCommand writes it; then `plainSet` holds where the key's bytes are and where the
 * value's bulk string ("$<n>\r\n<bytes>\r\n") starts (read it back with bulkAt). Recovery uses
 * this to keep the values of replayed SETs in the mapped log file instead of copying them.
 */
export function decodePlainSet(b: Uint8Array, start: number, end: number): boolean {
  if (readHeader(b, start, end, STAR) !== 3) return false;
  let p = headerEnd;
  if (readHeader(b, p, end, DOLLAR) !== 3) return false;
  p = headerEnd;
  // (c | 0x20) is 0x73 only for "s" and "S" (and so on): the name in any case, nothing else.
  if (p + 5 > end || (b[p]! | 0x20) !== 0x73 || (b[p + 1]! | 0x20) !== 0x65 || (b[p + 2]! | 0x20) !== 0x74 || b[p + 3] !== CR || b[p + 4] !== LF) {
    return false;
  }
  const kLen = readHeader(b, p + 5, end, DOLLAR);
  if (kLen < 0) return false;
  const k = headerEnd;
  if (k + kLen + 2 > end || b[k + kLen] !== CR || b[k + kLen + 1] !== LF) return false;
  const v = k + kLen + 2;
  const vLen = readHeader(b, v, end, DOLLAR);
  if (vLen < 0 || headerEnd + vLen + 2 !== end || b[end - 2] !== CR || b[end - 1] !== LF) return false;
  plainSet.keyStart = k;
  plainSet.keyEnd = k + kLen;
  plainSet.valueAt = v;
  return true;
}

/** The bulk string at b[p] as a byte string (where decodePlainSet found a value). */
export function bulkAt(b: Buffer, p: number): string {
  const n = readHeader(b, p, b.length, DOLLAR);
  if (n < 0 || headerEnd + n > b.length) assert(false, `no bulk string at offset ${p}`);
  return b.latin1Slice(headerEnd, headerEnd + n);
}
