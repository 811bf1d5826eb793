// Random write sequences for the replay tests: a seeded generator of every write command kv
// has (keys and values that collide often, values from 0 bytes to 100 KB), a Map-based model of
// Redis 7's semantics that predicts each reply and the keyspace, keyspace dumps and their
// comparison, and a delta-debugging shrinker that cuts a failing sequence to a short repro.
//
// Time: relative TTLs are at least 1000 s (nothing expires during a test), absolute ones are
// either long past or past 2100, and GT/LT only meet those: every outcome is decided whatever
// the clock reads, so the same sequence gives the same replies on kv, the model and redis-server.

/** mulberry32: a seeded generator, so a sequence is reproducible from its seed. */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A command, or a step of the system around it: a snapshot, a clean restart, a kill -9 and restart. */
export type Op = { cmd: string[] } | { ctl: Ctl };
/** Snapshot (waited for, or in the background), clean restart, kill -9 and restart, expiry sweep. */
export type Ctl = "save" | "bgsave" | "restart" | "kill" | "sweep";

export interface GenOptions {
  /** Operations in the sequence. */
  length: number;
  /** The control steps to mix in (the in-process layer has no kill; only it sweeps on demand). */
  ctl: readonly Ctl[];
  /** Chance of a control step per operation. */
  ctlRate: number;
  /** Largest value generated (bytes). */
  bigValueBytes: number;
  /**
   * Also TTLs of a few ms, and GT/LT between relative times: only where the runner gives each
   * command its time exactly (the in-process layer), so these outcomes are decided too.
   */
  exactTime?: boolean;
}

const KEYS = ["a", "a", "a", "b", "b", "b", "c", "c", "d", "", "k\r\n\x00\xff"];
const NUMS = ["0", "1", "-1", "7", "42", "-100", "10", "1.5", "-0.25", "2.125", "3.0", "1e3", "9223372036854775806", "-9223372036854775807", "9223372036854775807", "007", "+5", " 1", "1.57", "-0", "0x1A", "inf", "1.", ".5", "0".repeat(5119) + "1", "0".repeat(5120) + "1"];
const TEXT = ["x", "abc", "hello", "\x00\r\n\xff", "\r\n", "*1\r\n$3\r\nSET\r\n", "e", "."];
const FLOAT_INCRS = ["1.5", "-0.25", "3", "0.125", "-2", "1e2", "0", "abc", "5.0e-1", "-0", "0x10", "0x1p-3", "inf", "-Infinity", "nan", "1e5000", "5e-4940", " 1", "1 ", "1e", "0.1"];
const INT_INCRS = ["1", "-1", "5", "-1000", "0", "9223372036854775807", "-9223372036854775808", "x", "1.5", "+1", "01", "-0", ""];
/** Seconds and milliseconds for relative expiries: far enough that nothing expires in a test. */
const REL_S = ["1000", "2000", "5000", "100000"];
/** Relative expiries too large for int64 milliseconds (an error, or past the limit). */
const REL_HUGE = ["9223372036854775", "9223372036854775807", "-9223372036854775808"];
const REL_MS = ["1500000", "3000000", "50000000"];
/** Milliseconds that run out within a few operations (exactTime only). */
const REL_SHORT_MS = ["3", "10", "40", "150"];
/** Relative expiries that are due at once (the key goes). */
const REL_DUE = ["0", "-1", "-1000"];
/** 2100-01-01 in unix seconds: absolute expiries in the future are beyond it. */
export const FAR_S = 4102444800;
const ABS_S = ["1", "1000", "1600000000", String(FAR_S), String(FAR_S + 1000), String(FAR_S + 2000), "9223372036854775", "9223372036854776"];
const ABS_MS = ["1", "1600000000000", String(FAR_S * 1000), String(FAR_S * 1000 + 1), String(FAR_S * 1000 + 500), "9007199254740993", "9223372036854775806", "9223372036854775807"];

export function genSequence(seed: number, o: GenOptions): Op[] {
  const r = prng(seed);
  const ri = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[ri(xs.length)]!;
  const key = () => pick(KEYS);
  const bytes = (n: number): string => {
    // A random 16-byte pattern repeated: every byte value appears, big values stay cheap.
    let unit = "";
    for (let i = 0; i < Math.min(n, 16); i++) unit += String.fromCharCode(ri(256));
    return unit.repeat(Math.ceil(n / 16)).slice(0, n);
  };
  const value = (): string => {
    const x = r();
    if (x < 0.12) return "";
    if (x < 0.37) return pick(NUMS);
    if (x < 0.5) return pick(TEXT);
    if (x < 0.8) return bytes(1 + ri(64));
    if (x < 0.96) return bytes(100 + ri(4000));
    return bytes(Math.min(o.bigValueBytes, 5000 + ri(o.bigValueBytes)));
  };
  const relMs = (): string => (o.exactTime && r() < 0.4 ? pick(REL_SHORT_MS) : pick(REL_MS));
  const relExpire = (): string[] => (r() < 0.5 ? ["EX", pick(REL_S)] : ["PX", relMs()]);
  const absExpire = (): string[] => (r() < 0.5 ? ["EXAT", pick(ABS_S)] : ["PXAT", pick(ABS_MS)]);
  const badExpire = (): string[] => [pick(["EX", "PX", "EXAT", "PXAT"]), pick(["0", "-5", "abc", ...REL_HUGE])];
  const setOpts = (): string[] => {
    const opts: string[] = [];
    const x = r();
    if (x < 0.2) opts.push("NX");
    else if (x < 0.4) opts.push("XX");
    if (r() < 0.25) opts.push("GET");
    const y = r();
    if (y < 0.2) opts.push(...relExpire());
    else if (y < 0.35) opts.push(...absExpire());
    else if (y < 0.5) opts.push("KEEPTTL");
    else if (y < 0.53) opts.push(...badExpire());
    else if (y < 0.55) opts.push(pick(["NX", "KEEPTTL", "EX"]), ...(r() < 0.5 ? ["XX"] : ["PX", "100"])); // syntax errors
    for (let i = opts.length - 1; i > 0; i--) {
      // Options in any order (an option's argument stays after it).
      if (/^(EX|PX|EXAT|PXAT)$/.test(opts[i - 1]!) || /^(EX|PX|EXAT|PXAT)$/.test(opts[i]!)) continue;
      if (r() < 0.5) [opts[i - 1], opts[i]] = [opts[i]!, opts[i - 1]!];
    }
    return opts;
  };
  const expireCmd = (): string[] => {
    const name = pick(["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]);
    const abs = name.endsWith("AT");
    const secs = !name.startsWith("P");
    const gtlt = r() < 0.3;
    let t: string;
    if (abs) t = pick(secs ? ABS_S : ABS_MS);
    else if ((gtlt && !o.exactTime) || r() < 0.3) t = pick(REL_DUE); // GT/LT compare two relative times only when time is exact
    else t = r() < 0.05 ? pick(REL_HUGE) : secs ? pick(REL_S) : relMs();
    const argv = [name, key(), t];
    if (gtlt) argv.push(pick(["GT", "LT"]));
    else if (r() < 0.3) argv.push(pick(["NX", "XX"]));
    if (r() < 0.04) argv.push(pick(["NX", "GT", "BAD"])); // incompatible or unknown options
    return argv;
  };
  const cmd = (): string[] => {
    const x = ri(100);
    if (x < 22) return ["SET", key(), value(), ...(r() < 0.5 ? setOpts() : [])];
    if (x < 25) return ["SETNX", key(), value()];
    if (x < 27) return [pick(["SETEX", "PSETEX"]), key(), r() < 0.9 ? pick(REL_S) + "000" : pick(["0", "-1", "x", ...REL_HUGE]), value()];
    if (x < 29) return ["GETSET", key(), value()];
    if (x < 33) {
      const argv = [r() < 0.7 ? "MSET" : "MSETNX"];
      for (let i = 1 + ri(3); i > 0; i--) argv.push(key(), value());
      if (r() < 0.03) argv.pop(); // odd: a wrong number of arguments
      return argv;
    }
    if (x < 38) {
      const argv = [r() < 0.8 ? "DEL" : "UNLINK"];
      for (let i = 1 + ri(3); i > 0; i--) argv.push(key());
      return argv;
    }
    if (x < 40) return [pick(["FLUSHALL", "FLUSHDB"]), ...(r() < 0.3 ? [pick(["ASYNC", "SYNC", "ASYNC", "SYNC", "FOO"])] : [])];
    if (x < 44) return [r() < 0.7 ? "RENAME" : "RENAMENX", key(), key()];
    if (x < 47) return ["COPY", key(), key(), ...(r() < 0.5 ? ["REPLACE"] : []), ...(r() < 0.1 ? ["DB", pick(["0", "0", "1", "x"])] : [])];
    if (x < 52) return ["APPEND", key(), value()];
    if (x < 55) return ["SETRANGE", key(), pick(["0", "1", "3", "10", "17", "100", "-1", "536870912", "99999999999999999999", "x"]), value()];
    if (x < 62) {
      const name = pick(["INCR", "DECR", "INCRBY", "DECRBY"]);
      return name.endsWith("BY") ? [name, key(), pick(INT_INCRS)] : [name, key()];
    }
    if (x < 66) return ["INCRBYFLOAT", key(), pick(FLOAT_INCRS)];
    if (x < 70) {
      const argv = ["GETEX", key()];
      const y = r();
      if (y < 0.25) argv.push(...relExpire());
      else if (y < 0.45) argv.push(...absExpire());
      else if (y < 0.65) argv.push("PERSIST");
      else if (y < 0.68) argv.push(...badExpire());
      return argv;
    }
    if (x < 73) return ["GETDEL", key()];
    if (x < 83) return expireCmd();
    if (x < 87) return ["PERSIST", key()];
    if (x < 93) return ["GET", key()];
    if (x < 94) return ["STRLEN", key()];
    if (x < 95) return [pick(["EXISTS", "TOUCH", "MGET"]), key(), key()];
    // DBSIZE counts expired keys not yet reclaimed: decided only while nothing expires on its own.
    if (x < 96) return r() < 0.5 || o.exactTime ? ["TYPE", key()] : ["DBSIZE"];
    return [pick(["GETRANGE", "SUBSTR"]), key(), pick(["0", "-3", "2", "-100"]), pick(["-1", "5", "100", "-100"])];
  };
  /** Names and options in any case, as clients send them (keys and values untouched). */
  const mangle = (argv: string[]): string[] => {
    if (r() >= 0.1) return argv;
    const word = (w: string) => (/^[A-Z]+$/.test(w) ? [...w].map((c) => (r() < 0.5 ? c.toLowerCase() : c)).join("") : w);
    const out = [word(argv[0]!)];
    for (let i = 1; i < argv.length; i++) out.push(/^(NX|XX|GT|LT|GET|KEEPTTL|EX|PX|EXAT|PXAT|PERSIST|REPLACE|DB|ASYNC|SYNC)$/.test(argv[i]!) && i >= 2 ? word(argv[i]!) : argv[i]!);
    return out;
  };
  const ops: Op[] = [];
  for (let i = 0; i < o.length; i++) {
    if (o.ctl.length > 0 && r() < o.ctlRate) ops.push({ ctl: pick(o.ctl) });
    else ops.push({ cmd: mangle(cmd()) });
  }
  return ops;
}

// ---------------------------------------------------------------------------------------------
// The model

export interface Entry {
  v: string;
  /** Absolute expiry in unix ms (any int64, exactly), or undefined. */
  at: bigint | undefined;
  /** The expiry was relative: its exact value depends on the clock (compare presence only). */
  rel: boolean;
}

/** A keyspace: key -> value and expiry. */
export type Keyspace = Map<string, Entry>;

const OK = "+OK\r\n";
const int = (n: number | bigint) => `:${n}\r\n`;
const bulk = (s: string) => `$${s.length}\r\n${s}\r\n`;
const err = (s: string) => `-${s}\r\n`;
const E_SYNTAX = err("ERR syntax error");
const E_NOT_INT = err("ERR value is not an integer or out of range");
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** Redis's string2ll: an exact, canonical int64. */
function parseLL(s: string): bigint | null {
  if (s.length === 0 || s.length > 20 || !/^(0|-?[1-9][0-9]*)$/.test(s)) return null;
  const n = BigInt(s);
  return n > INT64_MAX || n < INT64_MIN ? null : n;
}

/**
 * What Redis's string2ld makes of s (strtold, then no leading space, nothing left over, no
 * overflow or underflow to zero, no NaN): a dyadic rational m / 2^d when exact in a long double,
 * "inf", "other" for a finite value the model does not compute exactly, or null when invalid.
 */
function parseLD(s: string): { m: bigint; d: number } | "inf" | "other" | null {
  if (s.length === 0 || s.length >= 5 * 1024) return null;
  if (/^[+-]?(inf|infinity)$/i.test(s)) return "inf";
  const hex = parseHex(s);
  if (hex !== undefined) return hex === null ? null : hex.d <= 0 ? fits({ m: hex.m << BigInt(-hex.d), d: 0 }) : fits(hex);
  const x = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (x === null || (x[2] === "" && (x[3] ?? "") === "")) return null;
  const intDigits = (x[2] ?? "").replace(/^0+/, "");
  const frac = x[3] ?? "";
  const exp = Number(x[4] ?? "0");
  const all = (intDigits + frac).replace(/^0+/, "");
  if (all === "") return { m: 0n, d: 0 };
  // Decimal magnitude: value = 0.<all> * 10^mag.
  const mag = intDigits.length > 0 ? intDigits.length + exp : exp - (frac.length - frac.replace(/^0+/, "").length);
  if (mag > 4932) return null; // overflows a long double: ERANGE, +-HUGE_VAL
  if (mag < -4950) return null; // underflows to zero: ERANGE
  if (Math.abs(exp) > 60 || all.length > 40) return "other";
  let n = BigInt(intDigits + frac || "0");
  if (x[1] === "-") n = -n;
  const d10 = frac.length - exp; // value = n / 10^d10
  if (d10 <= 0) return fits({ m: n * 10n ** BigInt(-d10), d: 0 });
  const five = 5n ** BigInt(d10);
  if (n % five !== 0n) return "other";
  return fits({ m: n / five, d: d10 });
}

/** A hex float as m / 2^d (d may be negative), null when it has no digits, undefined when not hex. */
function parseHex(s: string): { m: bigint; d: number } | null | undefined {
  const hex = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/.exec(s);
  if (hex === null) return undefined;
  const digits = (hex[2] ?? "") + (hex[3] ?? "");
  if (digits === "") return null;
  const m = BigInt("0x" + digits);
  return { m: hex[1] === "-" ? -m : m, d: 4 * (hex[3] ?? "").length - Number(hex[4] ?? "0") };
}

/** A double near what strtold reads (hex included). */
function approxLD(s: string): number {
  const v = parseLD(s);
  if (v !== null && v !== "other" && v !== "inf") return Number(v.m) / 2 ** v.d;
  const h = parseHex(s);
  return h ? Number(h.m) / 2 ** h.d : parseFloat(s);
}

/** Exact in a long double and printed exactly by %.17Lf: small enough mantissa and few fraction bits. */
function fits(v: { m: bigint; d: number }): { m: bigint; d: number } | "other" {
  const abs = v.m < 0n ? -v.m : v.m;
  return abs < 2n ** 64n && v.d <= 17 ? v : "other";
}

/** %.17Lf of m / 2^d with its trailing zeros (and a trailing point) removed, as Redis prints. */
function formatDyadic(m: bigint, d: number): string {
  const neg = m < 0n;
  const abs = neg ? -m : m;
  const scaled = abs * 5n ** BigInt(d); // value * 10^d
  const s = scaled.toString().padStart(d + 1, "0");
  let intPart = s.slice(0, s.length - d);
  let frac = s.slice(s.length - d).replace(/0+$/, "");
  if (intPart === "") intPart = "0";
  const out = frac === "" ? intPart : `${intPart}.${frac}`;
  return neg && out !== "0" ? `-${out}` : out;
}

/**
 * SET/GETEX/SETEX's expiry argument as Redis's getExpireMillisecondsOrReply reads it: the
 * absolute time in ms, E_NOT_INT, or "time" for an invalid expire time.
 */
function expireArg(arg: string, unit: string, nowMs: number): bigint | string {
  const n = parseLL(arg);
  if (n === null) return E_NOT_INT;
  const secs = unit === "EX" || unit === "EXAT";
  if (n <= 0n || (secs && n > INT64_MAX / 1000n)) return "time";
  const at = n * (secs ? 1000n : 1n) + (unit === "EX" || unit === "PX" ? BigInt(nowMs) : 0n);
  return at > INT64_MAX ? "time" : at;
}

/** What the model expects for one command: an exact reply, or (where it defers) any reply then applied. */
export type Expect = { reply: string } | { defer: (actual: string) => void };

export class Model {
  readonly ks: Keyspace = new Map();
  /** Replies the model did not predict exactly (long double results it cannot print), counted. */
  deferred = 0;
  /** The null reply of the protocol in use (the only reply the commands here write differently in RESP3). */
  nil = "$-1\r\n";

  constructor(proto: 2 | 3 = 2) {
    if (proto === 3) this.nil = "_\r\n";
  }

  clone(): Model {
    const m = new Model();
    m.nil = this.nil;
    m.deferred = this.deferred;
    for (const [k, e] of this.ks) m.ks.set(k, { ...e });
    return m;
  }

  /** The keys live at nowMs. */
  liveKeyspace(nowMs: number): Keyspace {
    const out: Keyspace = new Map();
    for (const [k, e] of this.ks) if (e.at === undefined || e.at > BigInt(nowMs)) out.set(k, e);
    return out;
  }

  /** Live entry at nowMs (all expiries in the tests are decided, so expired keys are just gone). */
  private live(k: string, nowMs: number): Entry | undefined {
    const e = this.ks.get(k);
    if (e !== undefined && e.at !== undefined && e.at <= BigInt(nowMs)) {
      this.ks.delete(k);
      return undefined;
    }
    return e;
  }

  private put(k: string, v: string, at: bigint | undefined, rel: boolean, nowMs: number): void {
    if (at !== undefined && at <= BigInt(nowMs)) this.ks.delete(k);
    else this.ks.set(k, { v, at, rel: at !== undefined && rel });
  }

  /** Applies one command at nowMs and returns the reply Redis 7 gives. */
  apply(argv: readonly string[], nowMs: number): Expect {
    const name = argv[0]!.toUpperCase();
    const k = argv[1] ?? "";
    const r = (reply: string): Expect => ({ reply });
    switch (name) {
      case "GET": {
        const e = this.live(k, nowMs);
        return r(e ? bulk(e.v) : this.nil);
      }
      case "MGET":
        return r(`*${argv.length - 1}\r\n` + argv.slice(1).map((x) => {
          const e = this.live(x, nowMs);
          return e ? bulk(e.v) : this.nil;
        }).join(""));
      case "TYPE":
        return r(this.live(k, nowMs) ? "+string\r\n" : "+none\r\n");
      case "DBSIZE":
        return r(int(this.liveKeyspace(nowMs).size));
      case "TOUCH":
      case "STRLEN":
        if (name === "TOUCH") return r(int(argv.slice(1).filter((x) => this.live(x, nowMs) !== undefined).length));
        return r(int(this.live(k, nowMs)?.v.length ?? 0));
      case "EXISTS":
        return r(int(argv.slice(1).filter((x) => this.live(x, nowMs) !== undefined).length));
      case "GETRANGE":
      case "SUBSTR": {
        const v = this.live(k, nowMs)?.v ?? "";
        let s = Number(argv[2]);
        let e = Number(argv[3]);
        if (s < 0 && e < 0 && s > e) return r(bulk(""));
        if (s < 0) s = Math.max(0, v.length + s);
        if (e < 0) e = Math.max(0, v.length + e);
        if (e >= v.length) e = v.length - 1;
        return r(bulk(s > e || v.length === 0 ? "" : v.slice(s, e + 1)));
      }
      case "SET":
        return r(this.set(argv, nowMs));
      case "SETNX": {
        if (this.live(k, nowMs)) return r(int(0));
        this.put(k, argv[2]!, undefined, false, nowMs);
        return r(int(1));
      }
      case "SETEX":
      case "PSETEX": {
        const at = expireArg(argv[2]!, name === "SETEX" ? "EX" : "PX", nowMs);
        if (at === E_NOT_INT) return r(E_NOT_INT);
        if (typeof at === "string") return r(err(`ERR invalid expire time in '${name.toLowerCase()}' command`));
        this.put(k, argv[3]!, at, true, nowMs);
        return r(OK);
      }
      case "GETSET": {
        const e = this.live(k, nowMs);
        this.put(k, argv[2]!, undefined, false, nowMs);
        return r(e ? bulk(e.v) : this.nil);
      }
      case "GETDEL": {
        const e = this.live(k, nowMs);
        if (!e) return r(this.nil);
        this.ks.delete(k);
        return r(bulk(e.v));
      }
      case "GETEX":
        return r(this.getex(argv, nowMs));
      case "MSET":
      case "MSETNX": {
        if (argv.length % 2 === 0) return r(err(`ERR wrong number of arguments for '${name.toLowerCase()}' command`));
        if (name === "MSETNX") {
          for (let i = 1; i < argv.length; i += 2) if (this.live(argv[i]!, nowMs)) return r(int(0));
        }
        for (let i = 1; i < argv.length; i += 2) this.put(argv[i]!, argv[i + 1]!, undefined, false, nowMs);
        return r(name === "MSET" ? OK : int(1));
      }
      case "DEL":
      case "UNLINK": {
        let n = 0;
        for (const x of argv.slice(1)) if (this.live(x, nowMs) && this.ks.delete(x)) n++;
        return r(int(n));
      }
      case "FLUSHALL":
      case "FLUSHDB":
        if (argv.length > 2 || (argv.length === 2 && !/^(a?sync)$/i.test(argv[1]!))) return r(E_SYNTAX);
        this.ks.clear();
        return r(OK);
      case "RENAME":
      case "RENAMENX": {
        const nx = name === "RENAMENX";
        const e = this.live(k, nowMs);
        if (!e) return r(err("ERR no such key"));
        const to = argv[2]!;
        if (to === k) return r(nx ? int(0) : OK);
        if (nx && this.live(to, nowMs)) return r(int(0));
        this.ks.delete(k);
        this.ks.set(to, e);
        return r(nx ? int(1) : OK);
      }
      case "COPY": {
        let replace = false;
        let db = 0n;
        for (let j = 3; j < argv.length; j++) {
          const o = argv[j]!.toUpperCase();
          if (o === "REPLACE") replace = true;
          else if (o === "DB" && j + 1 < argv.length) {
            const n = parseLL(argv[++j]!);
            if (n === null) return r(E_NOT_INT);
            db = n;
          } else return r(E_SYNTAX);
        }
        if (db !== 0n) return r(err("ERR DB index is out of range")); // one database (redis-server --databases 1)
        const to = argv[2]!;
        if (to === k) return r(err("ERR source and destination objects are the same"));
        const e = this.live(k, nowMs);
        if (!e) return r(int(0));
        if (this.live(to, nowMs) && !replace) return r(int(0));
        this.ks.set(to, { ...e });
        return r(int(1));
      }
      case "APPEND": {
        const e = this.live(k, nowMs);
        const v = (e?.v ?? "") + argv[2]!;
        if (e) e.v = v;
        else this.put(k, v, undefined, false, nowMs);
        return r(int(v.length));
      }
      case "SETRANGE": {
        const off = parseLL(argv[2]!);
        if (off === null) return r(E_NOT_INT);
        if (off < 0n) return r(err("ERR offset is out of range"));
        const e = this.live(k, nowMs);
        const val = argv[3]!;
        if (val.length === 0) return r(int(e?.v.length ?? 0));
        if (off + BigInt(val.length) > 512n * 1024n * 1024n) return r(err("ERR string exceeds maximum allowed size (proto-max-bulk-len)"));
        const o = Number(off);
        const base = e?.v ?? "";
        const head = base.length >= o ? base.slice(0, o) : base + "\0".repeat(o - base.length);
        const v = head + val + base.slice(o + val.length);
        if (e) e.v = v;
        else this.put(k, v, undefined, false, nowMs);
        return r(int(v.length));
      }
      case "INCR":
      case "DECR":
      case "INCRBY":
      case "DECRBY": {
        let by: bigint | null = name === "INCR" ? 1n : name === "DECR" ? -1n : parseLL(argv[2]!);
        if (by === null) return r(E_NOT_INT);
        if (name === "DECRBY") {
          if (by === INT64_MIN) return r(err("ERR decrement would overflow"));
          by = -by;
        }
        const e = this.live(k, nowMs);
        const cur = e ? parseLL(e.v) : 0n;
        if (cur === null) return r(E_NOT_INT);
        const n = cur + by;
        if (n > INT64_MAX || n < INT64_MIN) return r(err("ERR increment or decrement would overflow"));
        if (e) e.v = n.toString();
        else this.put(k, n.toString(), undefined, false, nowMs);
        return r(int(n));
      }
      case "INCRBYFLOAT": {
        const e = this.live(k, nowMs);
        const cur = e ? parseLD(e.v) : { m: 0n, d: 0 };
        const by = parseLD(argv[2]!);
        if (cur === null || by === null) return r(err("ERR value is not a valid float"));
        if (cur === "inf" || by === "inf") return r(err("ERR increment would produce NaN or Infinity"));
        const sum = cur !== "other" && by !== "other" ? fits({ m: (cur.m << BigInt(Math.max(cur.d, by.d) - cur.d)) + (by.m << BigInt(Math.max(cur.d, by.d) - by.d)), d: Math.max(cur.d, by.d) }) : "other";
        if (sum !== "other") {
          const s = formatDyadic(sum.m, sum.d);
          if (e) e.v = s;
          else this.put(k, s, undefined, false, nowMs);
          return r(bulk(s));
        }
        // A long double result the model does not compute: take the system's reply when it is a
        // number close to the sum (the differential test holds kv to redis-server's digits here).
        this.deferred++;
        const approx = approxLD(e ? e.v : "0") + approxLD(argv[2]!);
        return {
          defer: (actual) => {
            const m = /^\$\d+\r\n(.*)\r\n$/s.exec(actual);
            const got = m ? Number(m[1]) : NaN;
            // Past a double's range (a long double reaches 1e4932) both read as the same infinity.
            if (!m || !(got === approx || Math.abs(got - approx) <= Math.abs(approx) * 1e-12 + 1e-12)) {
              throw new Error(`INCRBYFLOAT ${JSON.stringify(argv)}: expected a number near ${approx}, got ${JSON.stringify(actual)}`);
            }
            if (e) e.v = m[1]!;
            else this.put(k, m[1]!, undefined, false, nowMs);
          },
        };
      }
      case "EXPIRE":
      case "PEXPIRE":
      case "EXPIREAT":
      case "PEXPIREAT":
        return r(this.expire(name, argv, nowMs));
      case "PERSIST": {
        const e = this.live(k, nowMs);
        if (!e || e.at === undefined) return r(int(0));
        e.at = undefined;
        e.rel = false;
        return r(int(1));
      }
    }
    throw new Error(`model: no ${name}`);
  }

  private set(argv: readonly string[], nowMs: number): string {
    let nx = false, xx = false, get = false, keepttl = false;
    let unit = "";
    let expire = "";
    for (let j = 3; j < argv.length; j++) {
      const o = argv[j]!.toUpperCase();
      const next = j < argv.length - 1;
      if (o === "NX" && !xx) nx = true;
      else if (o === "XX" && !nx) xx = true;
      else if (o === "GET") get = true;
      else if (o === "KEEPTTL" && unit === "") keepttl = true;
      else if ((o === "EX" || o === "PX" || o === "EXAT" || o === "PXAT") && !keepttl && (unit === "" || unit === o) && next) {
        unit = o;
        expire = argv[++j]!;
      } else return E_SYNTAX;
    }
    let at: bigint | undefined;
    if (unit !== "") {
      const a = expireArg(expire, unit, nowMs);
      if (a === E_NOT_INT) return E_NOT_INT;
      if (typeof a === "string") return err("ERR invalid expire time in 'set' command");
      at = a;
    }
    const k = argv[1]!;
    const e = this.live(k, nowMs);
    const old = get ? (e ? bulk(e.v) : this.nil) : "";
    if ((nx && e) || (xx && !e)) return get ? old : this.nil;
    if (at !== undefined) this.put(k, argv[2]!, at, unit === "EX" || unit === "PX", nowMs);
    else if (keepttl) this.put(k, argv[2]!, e?.at, e?.rel ?? false, nowMs);
    else this.put(k, argv[2]!, undefined, false, nowMs);
    return get ? old : OK;
  }

  private getex(argv: readonly string[], nowMs: number): string {
    let unit = "";
    let expire = "";
    let persist = false;
    for (let j = 2; j < argv.length; j++) {
      const o = argv[j]!.toUpperCase();
      const next = j < argv.length - 1;
      if (o === "PERSIST" && unit === "") persist = true;
      else if ((o === "EX" || o === "PX" || o === "EXAT" || o === "PXAT") && !persist && (unit === "" || unit === o) && next) {
        unit = o;
        expire = argv[++j]!;
      } else return E_SYNTAX;
    }
    const k = argv[1]!;
    const e = this.live(k, nowMs);
    if (!e) return this.nil;
    if (unit !== "") {
      const at = expireArg(expire, unit, nowMs);
      if (at === E_NOT_INT) return E_NOT_INT;
      if (typeof at === "string") return err("ERR invalid expire time in 'getex' command");
      this.put(k, e.v, at, unit === "EX" || unit === "PX", nowMs);
    } else if (persist) {
      e.at = undefined;
      e.rel = false;
    }
    return bulk(e.v);
  }

  private expire(name: string, argv: readonly string[], nowMs: number): string {
    let nx = false, xx = false, gt = false, lt = false;
    for (const opt of argv.slice(3)) {
      const o = opt.toUpperCase();
      if (o === "NX") nx = true;
      else if (o === "XX") xx = true;
      else if (o === "GT") gt = true;
      else if (o === "LT") lt = true;
      else return err(`ERR Unsupported option ${opt}`);
    }
    if (nx && (xx || gt || lt)) return err("ERR NX and XX, GT or LT options at the same time are not compatible");
    if (gt && lt) return err("ERR GT and LT options at the same time are not compatible");
    const n = parseLL(argv[2]!);
    if (n === null) return E_NOT_INT;
    const relative = !name.endsWith("AT");
    const E_TIME = err(`ERR invalid expire time in '${name.toLowerCase()}' command`);
    // Redis: seconds past int64 / 1000 (C division truncates), or a sum past int64, is an error.
    if (!name.startsWith("P") && (n > INT64_MAX / 1000n || n < -(-INT64_MIN / 1000n))) return E_TIME;
    const when = n * (name.startsWith("P") ? 1n : 1000n) + (relative ? BigInt(nowMs) : 0n);
    if (when > INT64_MAX) return E_TIME;
    const k = argv[1]!;
    const e = this.live(k, nowMs);
    if (!e) return int(0);
    const cur = e.at;
    if ((nx && cur !== undefined) || (xx && cur === undefined) || (gt && (cur === undefined || when <= cur)) || (lt && cur !== undefined && when >= cur)) {
      return int(0);
    }
    this.put(k, e.v, when, relative, nowMs);
    return int(1);
  }
}

// ---------------------------------------------------------------------------------------------
// Keyspaces: dumps and their comparison

/** Keyspace from KEYS * then GET and PEXPIRETIME of each key (replies as raw RESP). */
export function keyspaceFromReplies(keys: string[], gets: string[], pexpiretimes: string[]): Keyspace {
  const ks: Keyspace = new Map();
  keys.forEach((k, i) => {
    const g = /^\$(\d+)\r\n/.exec(gets[i]!);
    if (!g) throw new Error(`GET ${JSON.stringify(k)} after KEYS: ${JSON.stringify(gets[i])}`);
    const v = gets[i]!.slice(g[0].length, g[0].length + Number(g[1]));
    const t = /^:(-?\d+)\r\n$/.exec(pexpiretimes[i]!)?.[1];
    if (t === undefined) throw new Error(`PEXPIRETIME ${JSON.stringify(k)}: ${JSON.stringify(pexpiretimes[i])}`);
    ks.set(k, { v, at: BigInt(t) >= 0n ? BigInt(t) : undefined, rel: false });
  });
  return ks;
}

/** The bulk strings of a RESP2 array reply. */
export function parseBulkArray(raw: string): string[] {
  const m = /^\*(\d+)\r\n/.exec(raw);
  if (!m) throw new Error(`not an array: ${JSON.stringify(raw.slice(0, 80))}`);
  const out: string[] = [];
  let p = m[0].length;
  for (let i = 0; i < Number(m[1]); i++) {
    const h = /^\$(\d+)\r\n/.exec(raw.slice(p, p + 24))!;
    p += h[0].length;
    out.push(raw.slice(p, p + Number(h[1])));
    p += Number(h[1]) + 2;
  }
  return out;
}

function show(s: string | undefined): string {
  if (s === undefined) return "(none)";
  const j = JSON.stringify(s.length > 60 ? s.slice(0, 40) : s);
  return s.length > 60 ? `${j}...(${s.length} bytes)` : j;
}

/**
 * Differences between two keyspaces, empty when equal. Values always exactly; expiries exactly,
 * except where either side marks one relative (then within ttlSlackMs, presence always).
 */
export function diffKeyspaces(want: Keyspace, got: Keyspace, ttlSlackMs: number, limit = 8): string[] {
  const out: string[] = [];
  for (const k of new Set([...want.keys(), ...got.keys()])) {
    const a = want.get(k);
    const b = got.get(k);
    let bad = a === undefined || b === undefined || a.v !== b.v || (a.at === undefined) !== (b.at === undefined);
    if (!bad && a!.at !== undefined) {
      const d = a!.at - b!.at!;
      bad = a!.rel || b!.rel ? (d < 0n ? -d : d) > BigInt(ttlSlackMs) : d !== 0n;
    }
    if (bad) out.push(`key ${show(k)}: want ${a ? `${show(a.v)} at ${a.at ?? "-"}` : "(missing)"}, got ${b ? `${show(b.v)} at ${b.at ?? "-"}` : "(missing)"}`);
    if (out.length >= limit) break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shrinking

/**
 * Delta debugging (ddmin) over the op list: the shortest list found for which `fails` still
 * holds, bounded by maxRuns calls and a deadline. `fails` reruns the ops through the system.
 */
export async function shrink(ops: Op[], fails: (ops: Op[]) => Promise<boolean>, maxRuns = 300, deadlineMs = Date.now() + 60_000): Promise<{ ops: Op[]; runs: number }> {
  let cur = ops;
  let n = 2;
  let runs = 0;
  const budget = () => runs < maxRuns && Date.now() < deadlineMs;
  while (cur.length >= 2 && budget()) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < n && budget(); i++) {
      const without = [...cur.slice(0, i * chunk), ...cur.slice((i + 1) * chunk)];
      if (without.length === cur.length || without.length === 0) continue;
      runs++;
      if (await fails(without)) {
        cur = without;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return { ops: cur, runs };
}

/** A readable listing of ops (one per line, long values abbreviated). */
export function formatOps(ops: readonly Op[]): string {
  return ops
    .map((op) => ("ctl" in op ? `  [${op.ctl}]` : `  ${op.cmd.map((a) => (/^[\x21-\x7e]+$/.test(a) && a.length <= 40 ? a : show(a))).join(" ")}`))
    .join("\n");
}

// ---------------------------------------------------------------------------------------------
// Running sequences over RESP (kv's binary, redis-server)

/** The whole keyspace of a server: KEYS *, then GET and PEXPIRETIME of each key, pipelined. */
export async function dumpResp(c: { call(cmds: readonly (readonly string[])[]): Promise<string[]> }): Promise<Keyspace> {
  const keys = parseBulkArray((await c.call([["KEYS", "*"]]))[0]!);
  const replies = await c.call(keys.flatMap((k) => [["GET", k], ["PEXPIRETIME", k]]));
  return keyspaceFromReplies(
    keys,
    replies.filter((_, i) => i % 2 === 0),
    replies.filter((_, i) => i % 2 === 1),
  );
}

/**
 * Checks a chunk of replies against the model (applied in order at nowMs); returns the first
 * disagreement or null. `index0` numbers the ops for the message.
 */
export function checkReplies(model: Model, cmds: readonly string[][], got: readonly string[], nowMs: number, index0: number): string | null {
  for (let j = 0; j < cmds.length; j++) {
    const want = model.apply(cmds[j]!, nowMs);
    const g = got[j]!;
    if ("reply" in want) {
      if (g !== want.reply) return `op ${index0 + j} ${JSON.stringify(cmds[j]).slice(0, 200)}: reply ${JSON.stringify(g).slice(0, 200)}, model ${JSON.stringify(want.reply).slice(0, 200)}`;
    } else {
      try {
        want.defer(g);
      } catch (e) {
        return `op ${index0 + j}: ${(e as Error).message}`;
      }
    }
  }
  return null;
}
