// The KV command table: Redis 7's string family and keyspace commands over a Db, with Redis's
// replies and error texts. Pure: time comes in as ctx.nowMs (the time stamped on the log entry).
//
// Arity is checked by the dispatcher before exec runs; exec writes exactly one reply.
import { addLongDouble, formatLongDouble, type LongDouble, parseLongDouble } from "./longdouble.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import { commandLookup, type CommandSpec } from "./command.ts";
import { Db, type Expiry, toExpiry, typeName, type Value } from "./db.ts";
import { INT64_MAX, INT64_MIN, isScanCursor, normInt, parseInt64 } from "./int64.ts";
import type { AclState } from "./acl.ts";
import { txnKvCommands } from "./txn.ts";
import { PUBSUB_KV_COMMANDS } from "./publish.ts";
import { type KvEvents, NOTIFY_FLUSH, NOTIFY_GENERIC as G, NOTIFY_STRING as S } from "./events.ts";

export interface KvCtx {
  db: Db;
  /** The replicated ACL users (KV.ACL changes them); absent where no users are kept. */
  acl?: AclState;
  /** Unix time in integer milliseconds at which the command takes effect. */
  nowMs: number;
  /** Where applied changes are reported (keyspace events); null or absent: nowhere. */
  events?: KvEvents | null;
  /** Called by a transaction (txn.ts) before each of its commands runs; null or absent: nothing to do. */
  beforeCommand?: ((spec: CommandSpec<KvCtx>, argv: string[]) => void) | null;
}

/** Reports a change of `key` (Redis's notifyKeyspaceEvent), if anyone listens. */
function ev(ctx: KvCtx, cls: number, event: string, key: string): void {
  if (ctx.events) ctx.events.keyEvent(cls, event, key);
}

/** Longest string value, as Redis's proto-max-bulk-len default (512 MiB). */
export const STRING_BYTES_MAX = 512 * 1024 * 1024;
/** SCAN's default COUNT, as Redis's. */
export const SCAN_COUNT_DEFAULT = 10;

export const ERR_SYNTAX = "ERR syntax error";
export const ERR_NOT_INT = "ERR value is not an integer or out of range";
export const ERR_OVERFLOW = "ERR increment or decrement would overflow";
export const ERR_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value";
export const ERR_STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const ERR_DECR_OVERFLOW = "ERR decrement would overflow";
const ERR_INVALID_CURSOR = "ERR invalid cursor";

function errExpireTime(cmd: string): string {
  return `ERR invalid expire time in '${cmd}' command`;
}

/** Case-insensitive equality of a byte string with a lower-case ASCII-letter word, no allocation. */
function eqi(s: string, lower: string): boolean {
  const n = lower.length;
  if (s.length !== n) return false;
  for (let i = 0; i < n; i++) {
    if ((s.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Writes an integer reply that may exceed 2^53. */
function replyInt(out: ReplyWriter, n: number | bigint): void {
  // ReplyBuffer.int formats anything outside its small-integer table with String(n),
  // which is exact for a bigint. TODO(resp): widen ReplyWriter.int to number | bigint.
  out.int(n as number);
}

// ---------------------------------------------------------------------------------------------
// SET / GETEX option parsing (Redis's parseExtendedStringArgumentsOrReply)

const F_NX = 1;
const F_XX = 2;
const F_GET = 4;
const F_KEEPTTL = 8;
const F_PERSIST = 16;
const F_EX = 32;
const F_PX = 64;
const F_EXAT = 128;
const F_PXAT = 256;
const F_ANY_EXPIRE = F_EX | F_PX | F_EXAT | F_PXAT;

// Results of the last parse; module state instead of an object per call (exec is synchronous).
let parsedFlags = 0;
let parsedExpire = "";

/** Parses SET (isSet) or GETEX options from argv[start]; false after replying a syntax error. */
function parseStringOptions(argv: string[], start: number, isSet: boolean, out: ReplyWriter): boolean {
  let flags = 0;
  let expire = "";
  const argc = argv.length;
  for (let j = start; j < argc; j++) {
    const opt = argv[j]!;
    const hasNext = j < argc - 1;
    if (isSet && eqi(opt, "nx") && !(flags & F_XX)) flags |= F_NX;
    else if (isSet && eqi(opt, "xx") && !(flags & F_NX)) flags |= F_XX;
    else if (isSet && eqi(opt, "get")) flags |= F_GET;
    else if (isSet && eqi(opt, "keepttl") && !(flags & (F_PERSIST | F_ANY_EXPIRE))) flags |= F_KEEPTTL;
    else if (!isSet && eqi(opt, "persist") && !(flags & (F_ANY_EXPIRE | F_KEEPTTL))) flags |= F_PERSIST;
    else if (eqi(opt, "ex") && !(flags & (F_KEEPTTL | F_PERSIST | F_EXAT | F_PX | F_PXAT)) && hasNext) {
      flags |= F_EX;
      expire = argv[++j]!;
    } else if (eqi(opt, "px") && !(flags & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PXAT)) && hasNext) {
      flags |= F_PX;
      expire = argv[++j]!;
    } else if (eqi(opt, "exat") && !(flags & (F_KEEPTTL | F_PERSIST | F_EX | F_PX | F_PXAT)) && hasNext) {
      flags |= F_EXAT;
      expire = argv[++j]!;
    } else if (eqi(opt, "pxat") && !(flags & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PX)) && hasNext) {
      flags |= F_PXAT;
      expire = argv[++j]!;
    } else {
      out.error(ERR_SYNTAX);
      return false;
    }
  }
  parsedFlags = flags;
  parsedExpire = expire;
  return true;
}

/**
 * The absolute expiry (unix ms) for SET/GETEX's EX/PX/EXAT/PXAT argument, as Redis's
 * getExpireMillisecondsOrReply: the value must be a positive int64, and the result must not
 * overflow int64. Returns null after replying an error.
 */
function expireAtFromArg(arg: string, flags: number, nowMs: number, cmd: string, out: ReplyWriter): Expiry | null {
  const v = parseInt64(arg);
  if (v === null) {
    out.error(ERR_NOT_INT);
    return null;
  }
  const seconds = (flags & (F_EX | F_EXAT)) !== 0;
  const relative = (flags & (F_EX | F_PX)) !== 0;
  if (v <= 0) {
    out.error(errExpireTime(cmd));
    return null;
  }
  if (typeof v === "number") {
    const ms = (seconds ? v * 1000 : v) + (relative ? nowMs : 0);
    // Exact while a safe integer: every time before the year 287396.
    if (Number.isSafeInteger(ms)) return ms;
  }
  if (seconds && BigInt(v) > INT64_MAX / 1000n) {
    out.error(errExpireTime(cmd));
    return null;
  }
  let ms = seconds ? BigInt(v) * 1000n : BigInt(v);
  if (relative) ms += BigInt(Math.trunc(nowMs));
  if (ms > INT64_MAX) {
    out.error(errExpireTime(cmd));
    return null;
  }
  return toExpiry(ms);
}

// ---------------------------------------------------------------------------------------------
// The string family

function getCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const v = ctx.db.get(argv[1]!, ctx.nowMs);
  if (v === undefined) out.nil();
  else if (typeof v === "string") out.bulk(v);
  else out.error(ERR_WRONGTYPE);
}

function setCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  const value = argv[2]!;
  if (argv.length === 3) {
    ctx.db.set(key, value);
    ev(ctx, S, "set", key);
    out.ok();
    return;
  }
  if (!parseStringOptions(argv, 3, true, out)) return;
  const flags = parsedFlags;
  const nowMs = ctx.nowMs;
  let expireAt: Expiry | null = null;
  if (flags & F_ANY_EXPIRE) {
    expireAt = expireAtFromArg(parsedExpire, flags, nowMs, "set", out);
    if (expireAt === null) return;
  }
  const db = ctx.db;
  const old = db.getForWrite(key, nowMs);
  if (flags & F_GET) {
    if (old === undefined) out.nil();
    else if (typeof old !== "string") {
      out.error(ERR_WRONGTYPE);
      return;
    } else out.bulk(old);
  }
  if ((flags & F_NX && old !== undefined) || (flags & F_XX && old === undefined)) {
    if (!(flags & F_GET)) out.nil();
    return;
  }
  if (expireAt !== null) db.setWithExpire(key, value, expireAt, nowMs);
  else if (flags & F_KEEPTTL) db.setKeepTtl(key, value);
  else db.set(key, value);
  ev(ctx, S, "set", key);
  if (expireAt !== null) ev(ctx, G, "expire", key);
  if (!(flags & F_GET)) out.ok();
}

function setnxCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  if (ctx.db.getForWrite(key, ctx.nowMs) !== undefined) {
    out.int(0);
    return;
  }
  ctx.db.set(key, argv[2]!);
  ev(ctx, S, "set", key);
  out.int(1);
}

/** SETEX key seconds value / PSETEX key ms value: SET with EX/PX. */
function setexGeneric(ctx: KvCtx, argv: string[], out: ReplyWriter, flag: number, cmd: string): void {
  const expireAt = expireAtFromArg(argv[2]!, flag, ctx.nowMs, cmd, out);
  if (expireAt === null) return;
  ctx.db.setWithExpire(argv[1]!, argv[3]!, expireAt, ctx.nowMs);
  ev(ctx, S, "set", argv[1]!);
  ev(ctx, G, "expire", argv[1]!);
  out.ok();
}

function setexCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  setexGeneric(ctx, argv, out, F_EX, "setex");
}

function psetexCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  setexGeneric(ctx, argv, out, F_PX, "psetex");
}

function getsetCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  const old = ctx.db.getForWrite(key, ctx.nowMs);
  if (old === undefined) out.nil();
  else if (typeof old !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  } else out.bulk(old);
  ctx.db.set(key, argv[2]!);
  ev(ctx, S, "set", key);
}

function getdelCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  const old = ctx.db.getForWrite(key, ctx.nowMs);
  if (old === undefined) out.nil();
  else if (typeof old !== "string") out.error(ERR_WRONGTYPE);
  else {
    out.bulk(old);
    ctx.db.delete(key);
    ev(ctx, G, "del", key);
  }
}

function getexCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  if (!parseStringOptions(argv, 2, false, out)) return;
  const flags = parsedFlags;
  const key = argv[1]!;
  const nowMs = ctx.nowMs;
  const db = ctx.db;
  const v = db.getForWrite(key, nowMs);
  if (v === undefined) {
    out.nil();
    return;
  }
  if (typeof v !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  }
  let expireAt: Expiry | null = null;
  if (flags & F_ANY_EXPIRE) {
    expireAt = expireAtFromArg(parsedExpire, flags, nowMs, "getex", out);
    if (expireAt === null) return;
  }
  out.bulk(v);
  if (expireAt !== null) {
    db.setExpire(key, expireAt, nowMs);
    ev(ctx, G, expireAt <= nowMs ? "del" : "expire", key);
  } else if (flags & F_PERSIST && db.removeExpire(key)) ev(ctx, G, "persist", key);
}

function msetCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  if (argv.length % 2 === 0) {
    out.error("ERR wrong number of arguments for 'mset' command");
    return;
  }
  const db = ctx.db;
  for (let i = 1; i < argv.length; i += 2) {
    db.set(argv[i]!, argv[i + 1]!);
    ev(ctx, S, "set", argv[i]!);
  }
  out.ok();
}

function msetnxCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  if (argv.length % 2 === 0) {
    out.error("ERR wrong number of arguments for 'msetnx' command");
    return;
  }
  const db = ctx.db;
  for (let i = 1; i < argv.length; i += 2) {
    if (db.getForWrite(argv[i]!, ctx.nowMs) !== undefined) {
      out.int(0);
      return;
    }
  }
  for (let i = 1; i < argv.length; i += 2) {
    db.set(argv[i]!, argv[i + 1]!);
    ev(ctx, S, "set", argv[i]!);
  }
  out.int(1);
}

function mgetCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const db = ctx.db;
  const nowMs = ctx.nowMs;
  out.array(argv.length - 1);
  for (let i = 1; i < argv.length; i++) {
    const v = db.get(argv[i]!, nowMs);
    if (typeof v === "string") out.bulk(v);
    else out.nil();
  }
}

function strlenCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const v = ctx.db.get(argv[1]!, ctx.nowMs);
  if (v === undefined) out.int(0);
  else if (typeof v === "string") out.int(v.length);
  else out.error(ERR_WRONGTYPE);
}

function appendCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  const suffix = argv[2]!;
  const db = ctx.db;
  const old = db.getForWrite(key, ctx.nowMs);
  if (old === undefined) {
    db.set(key, suffix);
    ev(ctx, S, "append", key);
    out.int(suffix.length);
    return;
  }
  if (typeof old !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  }
  const len = old.length + suffix.length;
  if (len > STRING_BYTES_MAX) {
    out.error(ERR_STRING_TOO_LONG);
    return;
  }
  db.setKeepTtl(key, old + suffix);
  ev(ctx, S, "append", key);
  out.int(len);
}

/** GETRANGE key start end (and SUBSTR): inclusive byte offsets, negative from the end. */
function getrangeCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const start0 = parseInt64(argv[2]!);
  const end0 = parseInt64(argv[3]!);
  if (start0 === null || end0 === null) {
    out.error(ERR_NOT_INT);
    return;
  }
  const v = ctx.db.get(argv[1]!, ctx.nowMs);
  if (v === undefined) {
    out.bulk("");
    return;
  }
  if (typeof v !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  }
  // Offsets beyond 2^53 behave like any other out-of-range offset.
  let start = Number(start0);
  let end = Number(end0);
  const len = v.length;
  if (start < 0 && end < 0 && start > end) {
    out.bulk("");
    return;
  }
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (start > end || len === 0) out.bulk("");
  else out.bulk(v.slice(start, end + 1));
}

/** SETRANGE key offset value: overwrites from offset, padding with zero bytes. */
function setrangeCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const offset0 = parseInt64(argv[2]!);
  if (offset0 === null) {
    out.error(ERR_NOT_INT);
    return;
  }
  if (offset0 < 0) {
    out.error("ERR offset is out of range");
    return;
  }
  const key = argv[1]!;
  const value = argv[3]!;
  const db = ctx.db;
  const old = db.getForWrite(key, ctx.nowMs);
  if (old !== undefined && typeof old !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  }
  if (value.length === 0) {
    out.int(old === undefined ? 0 : old.length);
    return;
  }
  if (Number(offset0) + value.length > STRING_BYTES_MAX) {
    out.error(ERR_STRING_TOO_LONG);
    return;
  }
  const offset = Number(offset0);
  const base = old ?? "";
  const head = base.length >= offset ? base.slice(0, offset) : base + "\0".repeat(offset - base.length);
  const next = head + value + base.slice(offset + value.length);
  db.setKeepTtl(key, next);
  ev(ctx, S, "setrange", key);
  out.int(next.length);
}

/**
 * The server's check of a write against its own --proto-max-bulk-len, before the write is logged:
 * the error to reply, or null to log it. SETRANGE is where a few request bytes build a large
 * string (`SETRANGE k 400000000 x` makes 400 MB), so it is held to the configured limit, as
 * Redis's SETRANGE is. The state machine caps strings at STRING_BYTES_MAX only, whatever the
 * flags: a logged SETRANGE then replays the same even after a restart with another limit.
 * (APPEND grows a string by at most one bulk string per request, like any write.)
 */
export function refuseBeforeLog(spec: { readonly name: string }, argv: readonly string[], stringBytesMax: number): string | null {
  if (spec.name !== "setrange" || argv.length !== 4 || argv[3]!.length === 0) return null;
  const offset = parseInt64(argv[2]!);
  // Not an integer, negative, or past 2^53: the state machine answers with its own error.
  if (typeof offset !== "number" || offset < 0) return null;
  return offset + argv[3]!.length > stringBytesMax ? ERR_STRING_TOO_LONG : null;
}

/** INCR/DECR/INCRBY/DECRBY: adds incr to the integer at key, keeping its TTL. */
function incrBy(ctx: KvCtx, key: string, incr: number | bigint, out: ReplyWriter): void {
  const db = ctx.db;
  const old: Value | undefined = db.getForWrite(key, ctx.nowMs);
  let value: number | bigint | null = 0;
  if (old !== undefined) {
    if (typeof old !== "string") {
      out.error(ERR_WRONGTYPE);
      return;
    }
    value = parseInt64(old);
    if (value === null) {
      out.error(ERR_NOT_INT);
      return;
    }
  }
  if (typeof value === "number" && typeof incr === "number") {
    const r = value + incr;
    if (Number.isSafeInteger(r)) {
      db.setKeepTtl(key, String(r));
      ev(ctx, S, "incrby", key);
      out.int(r);
      return;
    }
  }
  const r = BigInt(value) + BigInt(incr);
  if (r > INT64_MAX || r < INT64_MIN) {
    out.error(ERR_OVERFLOW);
    return;
  }
  db.setKeepTtl(key, r.toString());
  ev(ctx, S, "incrby", key);
  replyInt(out, normInt(r));
}

function incrCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  incrBy(ctx, argv[1]!, 1, out);
}

function decrCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  incrBy(ctx, argv[1]!, -1, out);
}

function incrbyCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const incr = parseInt64(argv[2]!);
  if (incr === null) out.error(ERR_NOT_INT);
  else incrBy(ctx, argv[1]!, incr, out);
}

function decrbyCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const incr = parseInt64(argv[2]!);
  if (incr === null) out.error(ERR_NOT_INT);
  else if (incr === INT64_MIN) out.error(ERR_DECR_OVERFLOW);
  else incrBy(ctx, argv[1]!, typeof incr === "number" ? -incr : normInt(-incr), out);
}

/** INCRBYFLOAT key increment: long double arithmetic and formatting as Redis (see longdouble.ts); keeps the TTL. */
function incrbyfloatCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  const db = ctx.db;
  const old = db.getForWrite(key, ctx.nowMs);
  if (old !== undefined && typeof old !== "string") {
    out.error(ERR_WRONGTYPE);
    return;
  }
  const value = old === undefined ? LD_ZERO : parseLongDouble(old);
  const incr = parseLongDouble(argv[2]!);
  if (value === null || incr === null) {
    out.error("ERR value is not a valid float");
    return;
  }
  const sum = value === "inf" || incr === "inf" ? "inf" : addLongDouble(value, incr);
  if (sum === "inf") {
    out.error("ERR increment would produce NaN or Infinity");
    return;
  }
  const s = formatLongDouble(sum);
  db.setKeepTtl(key, s);
  ev(ctx, S, "incrbyfloat", key);
  out.bulk(s);
}

const LD_ZERO: LongDouble = { neg: false, m: 0n, e: 0 };

// ---------------------------------------------------------------------------------------------
// Keyspace

function delCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const db = ctx.db;
  const nowMs = ctx.nowMs;
  let n = 0;
  for (let i = 1; i < argv.length; i++) {
    const key = argv[i]!;
    // An expired key is reclaimed but not counted.
    if (db.getForWrite(key, nowMs) !== undefined && db.delete(key)) {
      n++;
      ev(ctx, G, "del", key);
    }
  }
  out.int(n);
}

/** RENAME / RENAMENX: moves the value and its TTL; an existing target is replaced (RENAME) or kept (NX). */
function renameGeneric(ctx: KvCtx, argv: string[], out: ReplyWriter, nx: boolean): void {
  const db = ctx.db;
  const nowMs = ctx.nowMs;
  const from = argv[1]!;
  const to = argv[2]!;
  const v = db.getForWrite(from, nowMs);
  if (v === undefined) {
    out.error("ERR no such key");
    return;
  }
  if (from === to) {
    if (nx) out.int(0);
    else out.ok();
    return;
  }
  const at = db.expireAt(from);
  if (db.getForWrite(to, nowMs) !== undefined) {
    if (nx) {
      out.int(0);
      return;
    }
    db.delete(to);
  }
  db.delete(from);
  if (at === undefined) db.set(to, v);
  else db.setWithExpire(to, v, at, nowMs);
  ev(ctx, G, "rename_from", from);
  ev(ctx, G, "rename_to", to);
  if (nx) out.int(1);
  else out.ok();
}

function renameCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  renameGeneric(ctx, argv, out, false);
}

function renamenxCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  renameGeneric(ctx, argv, out, true);
}

/** COPY source destination [DB index] [REPLACE]: the value and its TTL; one keyspace, so DB 0 only. */
function copyCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  let replace = false;
  for (let i = 3; i < argv.length; i++) {
    const opt = argv[i]!.toUpperCase();
    if (opt === "REPLACE") replace = true;
    else if (opt === "DB" && i + 1 < argv.length) {
      const id = parseInt64(argv[++i]!);
      if (id === null) {
        out.error(ERR_NOT_INT);
        return;
      }
      if (id < -(2 ** 31) || id >= 2 ** 31) {
        out.error("ERR value is out of range, value must between -2147483648 and 2147483647");
        return;
      }
      if (id !== 0) {
        out.error("ERR DB index is out of range");
        return;
      }
    } else {
      out.error(ERR_SYNTAX);
      return;
    }
  }
  const from = argv[1]!;
  const to = argv[2]!;
  if (from === to) {
    out.error("ERR source and destination objects are the same");
    return;
  }
  const db = ctx.db;
  const nowMs = ctx.nowMs;
  const v = db.getForWrite(from, nowMs);
  if (v === undefined) {
    out.int(0);
    return;
  }
  if (db.getForWrite(to, nowMs) !== undefined) {
    if (!replace) {
      out.int(0);
      return;
    }
    db.delete(to);
  }
  const at = db.expireAt(from);
  if (at === undefined) db.set(to, v);
  else db.setWithExpire(to, v, at, nowMs);
  ev(ctx, G, "copy_to", to);
  out.int(1);
}

function existsCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const db = ctx.db;
  let n = 0;
  for (let i = 1; i < argv.length; i++) if (db.get(argv[i]!, ctx.nowMs) !== undefined) n++;
  out.int(n);
}

function typeCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const v = ctx.db.get(argv[1]!, ctx.nowMs);
  out.simple(v === undefined ? "none" : typeName(v));
}

function keysCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const keys = ctx.db.keys(argv[1]!, ctx.nowMs);
  out.array(keys.length);
  for (const k of keys) out.bulk(k);
}

function scanCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const cursor = argv[1]!;
  if (!isScanCursor(cursor)) {
    out.error(ERR_INVALID_CURSOR);
    return;
  }
  let count = SCAN_COUNT_DEFAULT;
  let match: string | null = null;
  let type: string | null = null;
  for (let i = 2; i < argv.length; ) {
    const opt = argv[i]!;
    const hasValue = i + 1 < argv.length;
    if (eqi(opt, "count") && hasValue) {
      const n = parseInt64(argv[i + 1]!);
      if (n === null) {
        out.error(ERR_NOT_INT);
        return;
      }
      if (n < 1) {
        out.error(ERR_SYNTAX);
        return;
      }
      count = Number(n);
      i += 2;
    } else if (eqi(opt, "match") && hasValue) {
      match = argv[i + 1]!;
      i += 2;
    } else if (eqi(opt, "type") && hasValue) {
      type = argv[i + 1]!.toLowerCase();
      i += 2;
    } else {
      out.error(ERR_SYNTAX);
      return;
    }
  }
  const found: string[] = [];
  const next = ctx.db.scan(cursor, { count, match, type }, ctx.nowMs, found);
  out.array(2);
  out.bulk(next);
  out.array(found.length);
  for (const k of found) out.bulk(k);
}

function dbsizeCmd(ctx: KvCtx, _argv: string[], out: ReplyWriter): void {
  out.int(ctx.db.dbsize());
}

function flushallCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  // ASYNC and SYNC behave alike: the Maps are cleared in place either way.
  if (argv.length > 2 || (argv.length === 2 && !eqi(argv[1]!, "sync") && !eqi(argv[1]!, "async"))) {
    out.error(ERR_SYNTAX);
    return;
  }
  ctx.db.flush();
  ev(ctx, NOTIFY_FLUSH, eqi(argv[0]!, "flushdb") ? "flushdb" : "flushall", "");
  out.ok();
}

// ---------------------------------------------------------------------------------------------
// Expiry

const EXPIRE_NX = 1;
const EXPIRE_XX = 2;
const EXPIRE_GT = 4;
const EXPIRE_LT = 8;

/** EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's expireGenericCommand). */
function expireGeneric(ctx: KvCtx, argv: string[], out: ReplyWriter, relative: boolean, seconds: boolean, cmd: string): void {
  let flags = 0;
  for (let j = 3; j < argv.length; j++) {
    const opt = argv[j]!;
    if (eqi(opt, "nx")) flags |= EXPIRE_NX;
    else if (eqi(opt, "xx")) flags |= EXPIRE_XX;
    else if (eqi(opt, "gt")) flags |= EXPIRE_GT;
    else if (eqi(opt, "lt")) flags |= EXPIRE_LT;
    else {
      out.error(`ERR Unsupported option ${opt}`);
      return;
    }
  }
  if (flags & EXPIRE_NX && flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT)) {
    out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return;
  }
  if (flags & EXPIRE_GT && flags & EXPIRE_LT) {
    out.error("ERR GT and LT options at the same time are not compatible");
    return;
  }
  const v = parseInt64(argv[2]!);
  if (v === null) {
    out.error(ERR_NOT_INT);
    return;
  }
  const nowMs = ctx.nowMs;
  let when: Expiry;
  const fast = typeof v === "number" ? (seconds ? v * 1000 : v) + (relative ? nowMs : 0) : NaN;
  // |v| < 2^53: no int64 overflow is possible; exact while the sum is a safe integer.
  if (Number.isSafeInteger(fast)) when = fast;
  else {
    let w = BigInt(v);
    if (seconds) {
      if (w > INT64_MAX / 1000n || w < INT64_MIN / 1000n) {
        out.error(errExpireTime(cmd));
        return;
      }
      w *= 1000n;
    }
    const base = relative ? BigInt(Math.trunc(nowMs)) : 0n;
    if (w > INT64_MAX - base) {
      out.error(errExpireTime(cmd));
      return;
    }
    when = toExpiry(w + base);
  }
  const db = ctx.db;
  const key = argv[1]!;
  if (db.getForWrite(key, nowMs) === undefined) {
    out.int(0);
    return;
  }
  if (flags) {
    const current = db.expireAt(key);
    if (
      (flags & EXPIRE_NX && current !== undefined) ||
      (flags & EXPIRE_XX && current === undefined) ||
      (flags & EXPIRE_GT && (current === undefined || when <= current)) ||
      (flags & EXPIRE_LT && current !== undefined && when >= current)
    ) {
      out.int(0);
      return;
    }
  }
  db.setExpire(key, when, nowMs);
  ev(ctx, G, when <= nowMs ? "del" : "expire", key);
  out.int(1);
}

function expireCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  expireGeneric(ctx, argv, out, true, true, "expire");
}
function pexpireCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  expireGeneric(ctx, argv, out, true, false, "pexpire");
}
function expireatCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  expireGeneric(ctx, argv, out, false, true, "expireat");
}
function pexpireatCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  expireGeneric(ctx, argv, out, false, false, "pexpireat");
}

/**
 * TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 missing, -1 no TTL, else the time left (or the
 * absolute time); seconds are rounded as Redis does: (ms + 500) / 1000.
 */
function ttlGeneric(ctx: KvCtx, argv: string[], out: ReplyWriter, ms: boolean, absolute: boolean): void {
  const key = argv[1]!;
  if (ctx.db.get(key, ctx.nowMs) === undefined) {
    out.int(-2);
    return;
  }
  const at = ctx.db.expireAt(key);
  if (at === undefined) {
    out.int(-1);
    return;
  }
  if (typeof at === "bigint") {
    // Beyond 2^53 ms: exact in BigInt (a TTL this long is past the year 287396).
    let t = absolute ? at : at - BigInt(Math.trunc(ctx.nowMs));
    if (t < 0n) t = 0n;
    replyInt(out, normInt(ms ? t : (t + 500n) / 1000n));
    return;
  }
  const t = Math.max(0, absolute ? at : at - ctx.nowMs);
  out.int(ms ? t : Math.floor((t + 500) / 1000));
}

function ttlCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  ttlGeneric(ctx, argv, out, false, false);
}
function pttlCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  ttlGeneric(ctx, argv, out, true, false);
}
function expiretimeCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  ttlGeneric(ctx, argv, out, false, true);
}
function pexpiretimeCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  ttlGeneric(ctx, argv, out, true, true);
}

function persistCmd(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const key = argv[1]!;
  if (ctx.db.getForWrite(key, ctx.nowMs) === undefined) out.int(0);
  else if (ctx.db.removeExpire(key)) {
    ev(ctx, G, "persist", key);
    out.int(1);
  } else out.int(0);
}

// ---------------------------------------------------------------------------------------------
// The table. Arity, flags and key positions as Redis 7's COMMAND reports them.

type Spec = CommandSpec<KvCtx>;

function cmd(
  name: string,
  arity: number,
  flags: Spec["flags"],
  firstKey: number,
  lastKey: number,
  keyStep: number,
  exec: Spec["exec"],
): Spec {
  return { name, arity, flags, firstKey, lastKey, keyStep, exec };
}

export const KV_COMMANDS: readonly Spec[] = [
  cmd("get", 2, ["readonly", "fast"], 1, 1, 1, getCmd),
  cmd("set", -3, ["write"], 1, 1, 1, setCmd),
  cmd("setnx", 3, ["write", "fast"], 1, 1, 1, setnxCmd),
  cmd("getset", 3, ["write", "fast"], 1, 1, 1, getsetCmd),
  cmd("getdel", 2, ["write", "fast"], 1, 1, 1, getdelCmd),
  cmd("getex", -2, ["write", "fast"], 1, 1, 1, getexCmd),
  cmd("mget", -2, ["readonly", "fast"], 1, -1, 1, mgetCmd),
  cmd("mset", -3, ["write"], 1, -1, 2, msetCmd),
  cmd("msetnx", -3, ["write"], 1, -1, 2, msetnxCmd),
  cmd("strlen", 2, ["readonly", "fast"], 1, 1, 1, strlenCmd),
  cmd("append", 3, ["write", "fast"], 1, 1, 1, appendCmd),
  cmd("incr", 2, ["write", "fast"], 1, 1, 1, incrCmd),
  cmd("decr", 2, ["write", "fast"], 1, 1, 1, decrCmd),
  cmd("incrby", 3, ["write", "fast"], 1, 1, 1, incrbyCmd),
  cmd("decrby", 3, ["write", "fast"], 1, 1, 1, decrbyCmd),
  cmd("incrbyfloat", 3, ["write", "fast"], 1, 1, 1, incrbyfloatCmd),
  cmd("del", -2, ["write"], 1, -1, 1, delCmd),
  cmd("exists", -2, ["readonly", "fast"], 1, -1, 1, existsCmd),
  cmd("type", 2, ["readonly", "fast"], 1, 1, 1, typeCmd),
  cmd("keys", 2, ["readonly"], 0, 0, 0, keysCmd),
  cmd("scan", -2, ["readonly"], 0, 0, 0, scanCmd),
  cmd("dbsize", 1, ["readonly", "fast"], 0, 0, 0, dbsizeCmd),
  cmd("flushall", -1, ["write"], 0, 0, 0, flushallCmd),
  cmd("expire", -3, ["write", "fast"], 1, 1, 1, expireCmd),
  cmd("pexpire", -3, ["write", "fast"], 1, 1, 1, pexpireCmd),
  cmd("expireat", -3, ["write", "fast"], 1, 1, 1, expireatCmd),
  cmd("pexpireat", -3, ["write", "fast"], 1, 1, 1, pexpireatCmd),
  cmd("ttl", 2, ["readonly", "fast"], 1, 1, 1, ttlCmd),
  cmd("pttl", 2, ["readonly", "fast"], 1, 1, 1, pttlCmd),
  cmd("persist", 2, ["write", "fast"], 1, 1, 1, persistCmd),
  // Beyond the list: common in clients and tools, cheap to have exactly.
  cmd("setex", 4, ["write"], 1, 1, 1, setexCmd),
  cmd("psetex", 4, ["write"], 1, 1, 1, psetexCmd),
  cmd("getrange", 4, ["readonly"], 1, 1, 1, getrangeCmd),
  cmd("substr", 4, ["readonly"], 1, 1, 1, getrangeCmd),
  cmd("setrange", 4, ["write"], 1, 1, 1, setrangeCmd),
  cmd("unlink", -2, ["write", "fast"], 1, -1, 1, delCmd),
  cmd("touch", -2, ["readonly", "fast"], 1, -1, 1, existsCmd),
  cmd("rename", 3, ["write"], 1, 2, 1, renameCmd),
  cmd("renamenx", 3, ["write", "fast"], 1, 2, 1, renamenxCmd),
  cmd("copy", -3, ["write"], 1, 2, 1, copyCmd),
  cmd("flushdb", -1, ["write"], 0, 0, 0, flushallCmd),
  cmd("expiretime", 2, ["readonly", "fast"], 1, 1, 1, expiretimeCmd),
  cmd("pexpiretime", 2, ["readonly", "fast"], 1, 1, 1, pexpiretimeCmd),
  // MULTI/EXEC's log form and KV.REV (txn.ts).
  ...txnKvCommands((name) => lookupTxnInner(name)),
];

export const lookupKvCommand = commandLookup(KV_COMMANDS);
const lookupPublish = commandLookup(PUBSUB_KV_COMMANDS);

/** The logged commands a transaction may run: the keyspace's and PUBLISH/SPUBLISH (txn.ts adds PING, ECHO, UNWATCH). */
export function lookupTxnInner(name: string): CommandSpec<KvCtx> | undefined {
  return lookupKvCommand(name) ?? lookupPublish(name);
}

/** True for commands that change the keyspace: they go through the log. */
export function isWriteCommand(spec: { readonly flags: readonly string[] }): boolean {
  return spec.flags.includes("write");
}
