// Encodes commands as RESP multibulk into one growable output buffer per connection.

/** One command word: text (sent as UTF-8), raw bytes, or a number (sent in decimal). */
export type Arg = string | Uint8Array | number;

const CR = 13;
const LF = 10;
const SMALL_MAX = 1024;
const BULK_HEADERS: Buffer[] = [];
const ARRAY_HEADERS: Buffer[] = [];
for (let i = 0; i < SMALL_MAX; i++) {
  BULK_HEADERS.push(Buffer.from(`$${i}\r\n`, "latin1"));
  ARRAY_HEADERS.push(Buffer.from(`*${i}\r\n`, "latin1"));
}

/** Bytes queued for a socket: [start, end) is encoded but not yet written. */
export class OutBuffer {
  buf: Buffer;
  start = 0;
  end = 0;

  constructor(initialBytes = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  get pendingBytes(): number {
    return this.end - this.start;
  }

  /** Marks n bytes as written. */
  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) this.start = this.end = 0;
  }

  clear(): void {
    this.start = this.end = 0;
  }

  private ensure(extra: number): void {
    const need = this.end + extra;
    if (need <= this.buf.length) return;
    const live = this.end - this.start;
    if (live + extra <= this.buf.length / 2) {
      // Compact: the written prefix is dead.
      this.buf.copy(this.buf, 0, this.start, this.end);
    } else {
      let size = this.buf.length * 2;
      while (size < live + extra) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, this.start, this.end);
      this.buf = next;
    }
    this.start = 0;
    this.end = live;
  }

  private header(prefix: string, table: Buffer[], n: number): void {
    if (n < SMALL_MAX) {
      const h = table[n]!;
      this.ensure(h.length);
      this.buf.set(h, this.end);
      this.end += h.length;
    } else {
      const s = `${prefix}${n}\r\n`;
      this.ensure(s.length);
      this.end += this.buf.latin1Write(s, this.end);
    }
  }

  /** Appends `*n $len arg ...` for one command. */
  command(argv: readonly Arg[]): void {
    this.header("*", ARRAY_HEADERS, argv.length);
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i]!;
      if (typeof a === "string") {
        const len = a.length < 64 && isAscii(a) ? a.length : Buffer.byteLength(a, "utf8");
        this.header("$", BULK_HEADERS, len);
        this.ensure(len + 2);
        if (len > 0) this.end += this.buf.write(a, this.end, len, "utf8");
      } else if (typeof a === "number") {
        const s = String(a);
        this.header("$", BULK_HEADERS, s.length);
        this.ensure(s.length + 2);
        this.end += this.buf.latin1Write(s, this.end);
      } else {
        this.header("$", BULK_HEADERS, a.length);
        this.ensure(a.length + 2);
        this.buf.set(a, this.end);
        this.end += a.length;
      }
      this.buf[this.end++] = CR;
      this.buf[this.end++] = LF;
    }
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
