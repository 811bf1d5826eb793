// RESP fuzz input generator: seeded, no I/O. Valid commands from kv's command table with random
// arguments, wrong arities, inline forms, broken headers, truncations and byte-level mutations.
import { ALL_COMMANDS } from "../../src/server/dispatch.ts";

/** A small fast seeded PRNG (mulberry32): the same seed gives the same inputs on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** A new independent generator, for one connection or one input. */
  fork(): Rng {
    return new Rng((this.next() * 4294967296) >>> 0);
  }
}

/**
 * Every command name in kv's table (connection commands and the state machine's), but KV.WAITINDEX:
 * it waits by design (up to 60 s for an index ahead of the log), which a fuzzer's hang check cannot
 * tell from a hang; tests/integration/cluster-reads.test.ts covers its arguments. Nor the
 * subscription commands: they answer one frame per channel (as Redis) and then stream pushes, where
 * the fuzzer's oracle counts one reply per command; tests/pubsub covers them.
 */
const STREAMING = new Set(["subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "kv.watch", "kv.unwatch"]);
export const COMMAND_NAMES: readonly string[] = ALL_COMMANDS.map((s) => s.name).filter((n) => n !== "kv.waitindex" && !STREAMING.has(n));
const ARITY = new Map(ALL_COMMANDS.map((s) => [s.name, s.arity]));

/** Numbers at the edges of the parsers kv has: int64, doubles, lengths, limits, and near misses. */
const EDGE_NUMBERS = [
  "0", "1", "-1", "2", "-0", "+1", "01", "007", " 1", "1 ", "1\t", "", " ", "-", "+", ".", "1.", ".5", "1.5", "-1.5",
  "0.1", "1e3", "1E3", "1e-3", "-1e308", "1e308", "1e309", "-1e309", "2.2250738585072014e-308", "4.9e-324", "0x10", "0b1",
  "inf", "-inf", "+inf", "Infinity", "-Infinity", "nan", "NaN", "-nan",
  "127", "128", "255", "256", "32767", "32768", "65535", "65536",
  "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
  "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740993",
  "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
  "18446744073709551615", "18446744073709551616", "99999999999999999999999999999999",
  "9223372036854775.807", "922337203685477580", "92233720368547758", "-92233720368547758",
  "1000000000000000000000", "100000000000000000000000000000000000000000000000000000000000000000000000000",
  "536870911", "536870912", "536870913", "100000000", "268435456", "400000000", "1048575", "1048576", "1048577", "65535", "4096",
  "1.7976931348623157e308", "1.7976931348623159e308", "0.0000000000000000000000000001", "1_000", "１", "\u0000",
];

/** Option words of the commands kv has (SET, GETEX, EXPIRE, SCAN, COPY, HELLO, CLIENT, CONFIG, COMMAND, INFO). */
const WORDS = [
  "EX", "PX", "EXAT", "PXAT", "NX", "XX", "GT", "LT", "GET", "KEEPTTL", "PERSIST", "MATCH", "COUNT", "TYPE", "DB", "REPLACE",
  "AUTH", "SETNAME", "default", "2", "3", "ID", "GETNAME", "SETINFO", "LIB-NAME", "LIB-VER", "INFO", "LIST", "NO-EVICT",
  "NO-TOUCH", "HELP", "RESETSTAT", "SET", "DOCS", "all", "everything", "default", "server", "clients", "memory",
  "persistence", "stats", "keyspace", "cpu", "replication", "string", "on", "off", "*", "?", "[", "[a-", "\\", "k*", "*[^a]*",
  "ex", "nx", "xx", "get", "px", "match", "count", "type", "replace", "db",
];

/** A small keyspace so commands collide on the same keys. */
const KEYS = Array.from({ length: 24 }, (_, i) => `k${i}`).concat(["", " ", "\x00", "{k}", "k\r\nk", "\xff\xfe"]);

export interface GenLimits {
  /** The server's --proto-max-bulk-len: bulk lengths just past it are tried. */
  protoMaxBulkLen: number;
  /** Longest random value the generator makes (values near the limit are rare). */
  valueBytesMax: number;
}

function randomBytes(rng: Rng, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(256));
  return s;
}

function randomDigits(rng: Rng, n: number, negative: boolean): string {
  let s = negative ? "-" : "";
  s += String(rng.range(1, 9));
  for (let i = 1; i < n; i++) s += String(rng.int(10));
  return s;
}

/** One argument of a random kind. */
export function randomArg(rng: Rng, lim: GenLimits): string {
  switch (rng.int(10)) {
    case 0:
    case 1:
      return rng.pick(KEYS);
    case 2:
    case 3:
      return rng.pick(EDGE_NUMBERS);
    case 4:
      return rng.pick(WORDS);
    case 5:
      // Integers of every size: small ones, and up to 20 digits (offsets and counts far past limits).
      return rng.chance(0.5) ? String(rng.range(-1000, 1000)) : randomDigits(rng, rng.range(1, 20), rng.chance(0.2));
    case 6:
      return (rng.next() * 10 ** rng.range(-5, 20) * (rng.chance(0.5) ? -1 : 1)).toString();
    case 7:
      return randomBytes(rng, rng.int(16));
    case 8: {
      // A longer value; rarely one near the bulk limit.
      const n = rng.chance(0.02) ? rng.range(lim.valueBytesMax >> 1, lim.valueBytesMax) : rng.int(2048);
      return rng.pick(["x", "ab", "\x00", "é"]).repeat(Math.max(1, n)).slice(0, n);
    }
    default:
      return rng.pick(COMMAND_NAMES);
  }
}

/** A command from the table with its name in random case, and arguments; sometimes every wrong arity. */
export function randomArgv(rng: Rng, lim: GenLimits, name = rng.pick(COMMAND_NAMES), argcWanted?: number): string[] {
  const arity = ARITY.get(name)!;
  let argc: number;
  if (argcWanted !== undefined) {
    argc = argcWanted;
  } else if (rng.chance(0.25)) {
    argc = rng.range(1, Math.abs(arity) + 2); // right or wrong
  } else {
    argc = arity > 0 ? arity : -arity + (rng.chance(0.3) ? 0 : rng.int(6));
  }
  const shown = rng.chance(0.7) ? name.toUpperCase() : rng.chance(0.5) ? name : [...name].map((c) => (rng.chance(0.5) ? c.toUpperCase() : c)).join("");
  const argv = [shown];
  // Commands with subcommands or options get a plausible word first, so deeper paths are reached.
  for (let i = 1; i < argc; i++) {
    if (i === 1 && ["client", "config", "command", "hello", "info"].includes(name) && rng.chance(0.8)) argv.push(rng.pick(WORDS));
    else if (i === 1 && ARITY.get(name) !== undefined && !["ping", "echo", "auth", "select", "keys", "scan", "hello"].includes(name) && rng.chance(0.6)) argv.push(rng.pick(KEYS));
    else if (i >= 2 && rng.chance(0.3)) argv.push(rng.chance(0.5) ? rng.pick(EDGE_NUMBERS) : randomDigits(rng, rng.range(1, 20), rng.chance(0.2)));
    else argv.push(randomArg(rng, lim));
  }
  // Option lists in wrong orders and repeats.
  if (argc > 3 && rng.chance(0.2)) {
    for (let i = argv.length - 1; i > 2; i--) {
      const j = 2 + rng.int(i - 1);
      [argv[i], argv[j]] = [argv[j]!, argv[i]!];
    }
  }
  return argv;
}

/** RESP multibulk encoding of argv, sometimes with a header mistake. */
export function encodeMultibulk(argv: readonly string[]): string {
  let s = `*${argv.length}\r\n`;
  for (const a of argv) s += `$${a.length}\r\n${a}\r\n`;
  return s;
}

/** Inline form (`SET k v\r\n`), quoted when needed; sometimes with broken quotes. */
export function encodeInline(rng: Rng, argv: readonly string[]): string {
  const parts = argv.map((a) => {
    if (a.length > 0 && /^[\x21-\x7e]+$/.test(a) && !/["']/.test(a) && rng.chance(0.7)) return a;
    let q = '"';
    for (const ch of a) {
      const c = ch.charCodeAt(0);
      if (ch === '"' || ch === "\\") q += "\\" + ch;
      else if (c < 0x20 || c > 0x7e) q += "\\x" + c.toString(16).padStart(2, "0");
      else q += ch;
    }
    return q + '"';
  });
  let line = parts.join(rng.chance(0.8) ? " " : rng.pick(["  ", "\t", " \t "]));
  if (rng.chance(0.1)) {
    // Unbalanced or glued quotes: a protocol error.
    line += rng.pick([' "abc', " 'abc", ' "a"b', " 'a'b", ' "\\x4', ' "\\"']);
  }
  return line + (rng.chance(0.85) ? "\r\n" : "\n");
}

/** Frames that are wrong on purpose: huge or negative counts and lengths, bad bytes, deep garbage. */
export function garbage(rng: Rng, lim: GenLimits): string {
  const big = rng.pick(["999999999", "2147483648", "2147483647", "4294967296", "9223372036854775807", "99999999999999999999", String(lim.protoMaxBulkLen + 1), String(lim.protoMaxBulkLen), "1048577", "-5", "-1", "-0", "", "x", "1x", " 3", "3 ", "+3", "0x3"]);
  switch (rng.int(16)) {
    case 0:
      return `*${big}\r\n`;
    case 1:
      return `*1\r\n$${big}\r\n`;
    case 2:
      return `*2\r\n$3\r\nGET\r\n$${big}\r\n`;
    case 3:
      return `*1\r\n$3\r\nPING\r\n`.replace("$3", `$${rng.range(0, 8)}`);
    case 4:
      return `*${rng.range(1, 3)}\r\n${rng.pick(["+PING", ":1", "-ERR", "*1", "%1", "~1", ">1", "_", "#t", ",1.5", "(1", "=3", "!3", "|1", "PING"])}\r\n`;
    case 5:
      return randomBytes(rng, rng.range(1, 64));
    case 6:
      return "\r\n".repeat(rng.range(1, 4)) + "\n".repeat(rng.int(3));
    case 7:
      if (rng.chance(0.7)) return `*${rng.range(1, 3)}\r\n$${rng.range(0, 5)}\r\n`; // a frame cut after its header
      // A line past the inline limit (64 KiB) without an LF yet, or with one.
      return "a".repeat(64 * 1024 + rng.range(-2, 2)) + (rng.chance(0.5) ? "\r\n" : "");
    case 8:
      if (rng.chance(0.7)) return "*" + "9".repeat(rng.range(10, 40)) + "\r\n";
      return "*" + "9".repeat(rng.range(10, 70 * 1024)) + "\r\n";
    case 9:
      return `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab\r\n`; // wrong length, then bytes of the next frame
    case 10:
      return `*1\r\n$4\r\nPING${rng.pick(["\r", "\n", "xx", "\n\r", "\r\r"])}\r\n`;
    case 11:
      return "*0\r\n*-1\r\n" + (rng.chance(0.5) ? "*-2\r\n" : "");
    case 12:
      return `*1\r\n*1\r\n$4\r\nPING\r\n`;
    case 13:
      return `$4\r\nPING\r\n`;
    case 14:
      return `*${rng.range(2, 5)}\r\n$3\r\nGET\r\n`; // fewer arguments than announced (waits)
    default:
      return '"' + randomBytes(rng, rng.int(20)) + (rng.chance(0.5) ? '"' : "") + "\r\n";
  }
}

/** A few random edits of a byte string: flips, inserts, deletes, duplicated slices, digit swaps. */
export function mutate(rng: Rng, s: string): string {
  const n = rng.range(1, 4);
  for (let k = 0; k < n && s.length > 0; k++) {
    const i = rng.int(s.length);
    switch (rng.int(6)) {
      case 0:
        s = s.slice(0, i) + String.fromCharCode(rng.int(256)) + s.slice(i + 1);
        break;
      case 1:
        s = s.slice(0, i) + String.fromCharCode(rng.pick([13, 10, 0x2a, 0x24, 0x22, 0x27, 0x2d, 0x30, 0x39, rng.int(256)])) + s.slice(i);
        break;
      case 2:
        s = s.slice(0, i) + s.slice(i + 1);
        break;
      case 3: {
        const j = Math.min(s.length, i + rng.range(1, 40));
        s = s.slice(0, j) + s.slice(i, j) + s.slice(j);
        break;
      }
      case 4:
        s = s.replace(/[*$](\d+)/, (m, d: string) => m[0]! + rng.pick(["999999999", "0", "-1", String(Number(d) + 1), String(Math.max(0, Number(d) - 1))]));
        break;
      default:
        s = s.slice(0, i); // truncated
    }
  }
  return s;
}

/** What one piece of a connection's input is, for the report of a failure. */
export type PieceKind = "valid" | "inline" | "garbage" | "mutated" | "hello" | "quit";

/**
 * One connection's input: pieces of the kinds above, as a latin1 byte string. Most pieces are
 * well-formed commands, so the parser gets deep into the table before a broken frame stops it.
 */
export function connectionInput(rng: Rng, lim: GenLimits, pieces: number): { bytes: string; kinds: PieceKind[] } {
  let bytes = "";
  const kinds: PieceKind[] = [];
  // Half the connections send only well-formed frames, so long pipelines get deep into the table.
  const clean = rng.chance(0.5);
  for (let i = 0; i < pieces; i++) {
    const r = clean ? rng.next() * 0.8 : rng.next();
    let kind: PieceKind;
    let s: string;
    if (r < 0.6) {
      kind = "valid";
      s = encodeMultibulk(randomArgv(rng, lim));
    } else if (r < 0.72) {
      kind = "inline";
      s = encodeInline(rng, randomArgv(rng, lim));
    } else if (r < 0.8) {
      kind = "hello"; // RESP3 on and off mid-stream
      s = encodeMultibulk(rng.pick([["HELLO", "3"], ["HELLO", "2"], ["HELLO", "3", "SETNAME", "fz"], ["RESET"], ["HELLO"], ["HELLO", "4"]]));
    } else if (r < 0.87) {
      kind = "mutated";
      s = mutate(rng, encodeMultibulk(randomArgv(rng, lim)));
    } else if (r < 0.995) {
      kind = "garbage";
      s = garbage(rng, lim);
    } else {
      kind = "quit";
      s = encodeMultibulk(["QUIT"]);
    }
    bytes += s;
    kinds.push(kind);
  }
  return { bytes, kinds };
}

/** Every command of the table with every word count from 1 to |arity| + 2, `variants` times each with other arguments. */
export function aritySweep(rng: Rng, lim: GenLimits, variants: number): string[] {
  const out: string[] = [];
  for (const name of COMMAND_NAMES) {
    const arity = ARITY.get(name)!;
    for (let argc = 1; argc <= Math.abs(arity) + 2; argc++) {
      for (let v = 0; v < variants; v++) out.push(encodeMultibulk(randomArgv(rng, lim, name, argc)));
    }
  }
  return out;
}
