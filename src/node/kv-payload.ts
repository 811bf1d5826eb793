// The bytes of the KV state machine in the Raft log: entry payloads (commands, leader-decided expirations) and snapshot images.
//
// Entry payload (integers little-endian):
//   [u8 version = 1][u8 kind][u64 timeMs][kind's body]
//   kind 1, command:    [u8 proto: 2 or 3][RESP array of bulk strings: the command, as encodeCommand writes it]
//   kind 2, expiration: [RESP array of bulk strings: the keys whose expiry the leader saw pass at timeMs]
// timeMs is the leader's clock when it proposed the entry (a non-negative safe integer). proto is the
// protocol of the client that sent the command: only that client's reply depends on it.
//
// Snapshot image: [u8 version = 2][u64 appliedMs][u64 entryCount][u64 deleteFloor] then per entry
//   [u8 flags][u32 keyBytes][u32 valueBytes][i64 expireAtMs if flags & 1][u64 rev if flags & 2][key][value]
// (the entry layout of a snapshot file's body, see src/storage/snapshot-store.ts), then
//   [u32 tombstoneCount] and per tombstone [u32 keyBytes][u64 rev][key]
// rev is a key's revision; deleteFloor and the tombstones are the removals the state keeps
// (Db.deleteFloor, Db.tombstones in src/kv/db.ts). Version 1 (still read) has no deleteFloor,
// no revisions and no tombstones. An empty image (no bytes) is the empty keyspace: the
// snapshot of a log that has none.
// Pure: no I/O, no clock.
import { assert } from "../errors.ts";
import { toExpiry, TOMBSTONE_KEY_BYTES_MAX, TOMBSTONES_MAX, type DbEntry, type Expiry } from "../kv/db.ts";
import type { Proto } from "../resp/encode.ts";
import { decodeCommand, encodeCommand, encodeCommandInto, encodedCommandBytes } from "../resp/request-parser.ts";

export const KV_PAYLOAD_VERSION = 1;
export const KV_IMAGE_VERSION = 2;
/** Keys one expiration entry may carry: a batch the leader proposes per sweep step. */
export const EXPIRE_BATCH_KEYS_MAX = 1024;

const KIND_COMMAND = 1;
const KIND_EXPIRE = 2;
const HEADER_BYTES = 10; // version, kind, timeMs
/** Bytes a command entry's payload adds to encodedCommandBytes(argv) (a write's size is checked before it is proposed). */
export const COMMAND_ENTRY_OVERHEAD_BYTES = HEADER_BYTES + 1;
const TWO_32 = 2 ** 32;
const FLAG_EXPIRE = 1;
const FLAG_REV = 2;
const IMAGE_HEADER_BYTES_V1 = 17;
const IMAGE_HEADER_BYTES = 25;
const IMAGE_ENTRY_HEAD_BYTES = 9;

export type KvPayload =
  | { readonly kind: "command"; readonly timeMs: number; readonly proto: Proto; readonly argv: string[] }
  | { readonly kind: "expire"; readonly timeMs: number; readonly keys: string[] };

/** An entry payload that is not one this version writes (damage, or a newer format). */
export class KvPayloadError extends Error {
  override name = "KvPayloadError";
}

/** A snapshot image that is not one this version writes (damage, or a newer format). */
export class KvImageError extends Error {
  override name = "KvImageError";
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function putTime(b: Buffer, o: number, ms: number): void {
  assert(Number.isSafeInteger(ms) && ms >= 0, `entry time ${ms} is not a non-negative safe integer`);
  b.writeUInt32LE(ms % TWO_32, o);
  b.writeUInt32LE(Math.floor(ms / TWO_32), o + 4);
}

function header(kind: number, timeMs: number, body: Buffer, extra: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES + extra + body.length);
  b[0] = KV_PAYLOAD_VERSION;
  b[1] = kind;
  putTime(b, 2, timeMs);
  body.copy(b, HEADER_BYTES + extra);
  return b;
}

/**
 * The payload of a command entry: `argv` run at the leader's `timeMs`, its reply in `proto`.
 * `commandBytes`: encodedCommandBytes(argv) when the caller has it (one buffer, one pass).
 */
export function encodeCommandEntry(argv: readonly string[], timeMs: number, proto: Proto = 2, commandBytes = encodedCommandBytes(argv)): Buffer {
  assert(argv.length > 0, "a command entry without a command");
  const size = HEADER_BYTES + 1 + commandBytes;
  const b = Buffer.allocUnsafe(size);
  b[0] = KV_PAYLOAD_VERSION;
  b[1] = KIND_COMMAND;
  putTime(b, 2, timeMs);
  b[HEADER_BYTES] = proto;
  const end = encodeCommandInto(argv, b, HEADER_BYTES + 1);
  assert(end === size, `command entry of ${end} bytes, ${size} expected`);
  return b;
}

/** The payload of an expiration entry: delete each of `keys` still expired at the leader's `timeMs`. */
export function encodeExpireEntry(keys: readonly string[], timeMs: number): Buffer {
  assert(keys.length > 0 && keys.length <= EXPIRE_BATCH_KEYS_MAX, `an expiration entry of ${keys.length} keys (1..${EXPIRE_BATCH_KEYS_MAX})`);
  return header(KIND_EXPIRE, timeMs, encodeCommand(keys), 0);
}

/** Decodes an entry payload; anything but exactly what the encoders write is a KvPayloadError. */
export function decodeKvPayload(data: Uint8Array, names?: Map<number, string>): KvPayload {
  const b = asBuffer(data);
  if (b.length < HEADER_BYTES) throw new KvPayloadError(`entry payload of ${b.length} bytes is shorter than its ${HEADER_BYTES}-byte header`);
  if (b[0] !== KV_PAYLOAD_VERSION) throw new KvPayloadError(`entry payload version ${b[0]} (this node reads ${KV_PAYLOAD_VERSION})`);
  const hi = b.readUInt32LE(6);
  if (hi >= 2 ** 21) throw new KvPayloadError("entry time past 2^53 ms");
  const timeMs = hi * TWO_32 + b.readUInt32LE(2);
  switch (b[1]) {
    case KIND_COMMAND: {
      const proto = b[HEADER_BYTES];
      if (proto !== 2 && proto !== 3) throw new KvPayloadError(`command entry with reply protocol ${proto ?? "missing"}`);
      const argv = decodeCommand(b, HEADER_BYTES + 1, b.length, names);
      if (argv === null) throw new KvPayloadError("command entry whose command is not one RESP array of bulk strings");
      return { kind: "command", timeMs, proto, argv };
    }
    case KIND_EXPIRE: {
      const keys = decodeCommand(b, HEADER_BYTES, b.length);
      if (keys === null) throw new KvPayloadError("expiration entry whose keys are not one RESP array of bulk strings");
      if (keys.length > EXPIRE_BATCH_KEYS_MAX) throw new KvPayloadError(`expiration entry of ${keys.length} keys, past ${EXPIRE_BATCH_KEYS_MAX}`);
      return { kind: "expire", timeMs, keys };
    }
    default:
      throw new KvPayloadError(`entry payload of unknown kind ${b[1]}`);
  }
}

// ---- snapshot images ----

function putI64(dv: DataView, o: number, v: Expiry): void {
  if (typeof v === "number") {
    assert(Number.isSafeInteger(v), `expiry ${v} is not an integer`);
    const hi = Math.floor(v / TWO_32);
    dv.setUint32(o, v - hi * TWO_32, true);
    dv.setInt32(o + 4, hi, true);
  } else dv.setBigInt64(o, v, true);
}

function getI64(dv: DataView, o: number): Expiry {
  const n = dv.getInt32(o + 4, true) * TWO_32 + dv.getUint32(o, true);
  return Number.isSafeInteger(n) ? n : toExpiry(dv.getBigInt64(o, true));
}

/**
 * The image of a keyspace: every entry (expired ones not yet reclaimed included) and the time
 * applied. `entries` is iterated twice (sizes, then bytes), with nothing applied in between.
 */
export function encodeKvImage(appliedMs: number, entries: () => Iterable<DbEntry>, deleteFloor = 0, tombstones: readonly (readonly [string, number])[] = []): Uint8Array {
  // Two passes over the entries (size, then bytes): one exact allocation, no growing copies.
  let bytes = IMAGE_HEADER_BYTES + 4;
  for (const [k] of tombstones) bytes += 12 + k.length;
  let count = 0;
  for (const [k, v, at, rev] of entries()) {
    bytes += IMAGE_ENTRY_HEAD_BYTES + (at === undefined ? 0 : 8) + (rev === undefined ? 0 : 8) + k.length + v.length;
    count++;
  }
  const b = Buffer.allocUnsafe(bytes);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  b[0] = KV_IMAGE_VERSION;
  putTime(b, 1, appliedMs);
  putTime(b, 9, count);
  putTime(b, 17, deleteFloor);
  let o = IMAGE_HEADER_BYTES;
  let seen = 0;
  for (const [k, v, at, rev] of entries()) {
    b[o] = (at === undefined ? 0 : FLAG_EXPIRE) | (rev === undefined ? 0 : FLAG_REV);
    dv.setUint32(o + 1, k.length, true);
    dv.setUint32(o + 5, v.length, true);
    o += IMAGE_ENTRY_HEAD_BYTES;
    if (at !== undefined) {
      putI64(dv, o, at);
      o += 8;
    }
    if (rev !== undefined) {
      putTime(b, o, rev);
      o += 8;
    }
    o += b.latin1Write(k, o, k.length);
    o += b.latin1Write(v, o, v.length);
    seen++;
  }
  b.writeUInt32LE(tombstones.length, o);
  o += 4;
  for (const [k, rev] of tombstones) {
    b.writeUInt32LE(k.length, o);
    putTime(b, o + 4, rev);
    o += 12;
    o += b.latin1Write(k, o, k.length);
  }
  assert(o === bytes && seen === count, "the keyspace changed while its image was encoded");
  return b;
}

export interface KvImage {
  readonly appliedMs: number;
  /** Db.deleteFloor; undefined in a version 1 image (then: the snapshot's index). */
  readonly deleteFloor: number | undefined;
  /** Db.tombstones, oldest first (none in a version 1 image). */
  readonly tombstones: [string, number][];
  readonly count: number;
  /** The entries, decoded as they are iterated (the structure was checked whole beforehand). */
  readonly entries: Iterable<DbEntry>;
}

/** Checks an image's whole structure, then gives its entries; anything else is a KvImageError. */
export function decodeKvImage(data: Uint8Array): KvImage {
  const b = asBuffer(data);
  if (b.length === 0) return { appliedMs: 0, deleteFloor: 0, tombstones: [], count: 0, entries: [] };
  const version = b[0]!;
  if (version !== 1 && version !== KV_IMAGE_VERSION) throw new KvImageError(`snapshot image version ${b[0]} (this node reads 1 to ${KV_IMAGE_VERSION})`);
  const headerBytes = version === 1 ? IMAGE_HEADER_BYTES_V1 : IMAGE_HEADER_BYTES;
  const flagsKnown = version === 1 ? FLAG_EXPIRE : FLAG_EXPIRE | FLAG_REV;
  if (b.length < headerBytes) throw new KvImageError(`snapshot image of ${b.length} bytes is shorter than its header`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u64 = (o: number, what: string): number => {
    const hi = dv.getUint32(o + 4, true);
    if (hi >= 2 ** 21) throw new KvImageError(`snapshot image ${what} past 2^53`);
    return hi * TWO_32 + dv.getUint32(o, true);
  };
  const appliedMs = u64(1, "time");
  const count = u64(9, "entry count");
  const deleteFloor = version === 1 ? undefined : u64(17, "deletion floor");
  // Each entry takes at least its head: a larger count cannot fit (checked before walking it).
  if (count > (b.length - headerBytes) / IMAGE_ENTRY_HEAD_BYTES) throw new KvImageError(`snapshot image claims ${count} entries in ${b.length} bytes`);
  let o = headerBytes;
  for (let i = 0; i < count; i++) {
    if (o + IMAGE_ENTRY_HEAD_BYTES > b.length) throw new KvImageError(`snapshot image truncated in entry ${i}`);
    const flags = b[o]!;
    if ((flags & ~flagsKnown) !== 0) throw new KvImageError(`snapshot image entry ${i} has flags ${flags}`);
    if (flags & FLAG_REV && o + IMAGE_ENTRY_HEAD_BYTES + (flags & FLAG_EXPIRE ? 8 : 0) + 8 <= b.length) u64(o + IMAGE_ENTRY_HEAD_BYTES + (flags & FLAG_EXPIRE ? 8 : 0), "revision");
    const len = IMAGE_ENTRY_HEAD_BYTES + (flags & FLAG_EXPIRE ? 8 : 0) + (flags & FLAG_REV ? 8 : 0) + dv.getUint32(o + 1, true) + dv.getUint32(o + 5, true);
    if (o + len > b.length) throw new KvImageError(`snapshot image truncated in entry ${i}`);
    o += len;
  }
  const tombstones: [string, number][] = [];
  if (version !== 1) {
    if (o + 4 > b.length) throw new KvImageError("snapshot image truncated before its tombstones");
    const n = b.readUInt32LE(o);
    o += 4;
    if (n > TOMBSTONES_MAX) throw new KvImageError(`snapshot image of ${n} tombstones, past ${TOMBSTONES_MAX}`);
    for (let i = 0; i < n; i++) {
      if (o + 12 > b.length) throw new KvImageError(`snapshot image truncated in tombstone ${i}`);
      const kLen = b.readUInt32LE(o);
      const rev = u64(o + 4, "tombstone index");
      if (kLen > TOMBSTONE_KEY_BYTES_MAX || o + 12 + kLen > b.length) throw new KvImageError(`snapshot image tombstone ${i} is damaged`);
      tombstones.push([b.latin1Slice(o + 12, o + 12 + kLen), rev]);
      o += 12 + kLen;
    }
  }
  if (o !== b.length) throw new KvImageError(`snapshot image has ${b.length - o} bytes past its ${count} entries`);
  function* entries(): Generator<DbEntry> {
    let p = headerBytes;
    for (let i = 0; i < count; i++) {
      const flags = b[p]!;
      const hasExpiry = (flags & FLAG_EXPIRE) !== 0;
      const kLen = dv.getUint32(p + 1, true);
      const vLen = dv.getUint32(p + 5, true);
      p += IMAGE_ENTRY_HEAD_BYTES;
      let at: Expiry | undefined;
      if (hasExpiry) {
        at = getI64(dv, p);
        p += 8;
      }
      let rev: number | undefined;
      if (flags & FLAG_REV) {
        rev = dv.getUint32(p + 4, true) * TWO_32 + dv.getUint32(p, true);
        p += 8;
      }
      const key = b.latin1Slice(p, p + kLen);
      p += kLen;
      const value = b.latin1Slice(p, p + vLen);
      p += vLen;
      yield [key, value, at, rev];
    }
  }
  return { appliedMs, deleteFloor, tombstones, count, entries: entries() };
}

// ---- snapshot file meta ----
//
// The state machine's own fields in a snapshot file's header (SnapshotWriteOptions.meta):
// "<appliedMs> <deleteFloor>" in ASCII (the applied time, and Db.deleteFloor), then, when there
// are tombstones (Db.tombstones), a 0 byte and [u32 count] with per tombstone [u16 keyBytes]
// [u64 rev][key]: at most TOMBSTONES_MAX keys of TOMBSTONE_KEY_BYTES_MAX bytes, about 19 KB, so
// the header stays within what a reader takes in one read. Before snapshot format 4, "<appliedMs>"
// alone (the deletion floor is then the snapshot's index, and there are no tombstones).

export interface KvSnapshotMeta {
  readonly appliedMs: number;
  /** Undefined in an older file's meta. */
  readonly deleteFloor: number | undefined;
  readonly tombstones: [string, number][];
}

export function encodeSnapshotMeta(appliedMs: number, deleteFloor: number, tombstones: readonly (readonly [string, number])[] = []): Uint8Array {
  assert(Number.isSafeInteger(appliedMs) && appliedMs >= 0 && Number.isSafeInteger(deleteFloor) && deleteFloor >= 0, "snapshot meta fields must be non-negative safe integers");
  const text = Buffer.from(`${appliedMs} ${deleteFloor}`, "latin1");
  if (tombstones.length === 0) return text;
  assert(tombstones.length <= TOMBSTONES_MAX, "too many tombstones for a snapshot's meta");
  let bytes = text.length + 5;
  for (const [k] of tombstones) bytes += 10 + k.length;
  const b = Buffer.alloc(bytes);
  text.copy(b, 0);
  let o = text.length + 1; // the 0 byte
  b.writeUInt32LE(tombstones.length, o);
  o += 4;
  for (const [k, rev] of tombstones) {
    assert(k.length <= TOMBSTONE_KEY_BYTES_MAX, "a tombstone's key is too long for a snapshot's meta");
    b.writeUInt16LE(k.length, o);
    putTime(b, o + 2, rev);
    o += 10;
    o += b.latin1Write(k, o, k.length);
  }
  return b;
}

/** The meta's fields, or a string saying why it is not one (damage). */
export function decodeSnapshotMeta(meta: Uint8Array): KvSnapshotMeta | string {
  const b = asBuffer(meta);
  const zero = b.indexOf(0);
  const text = b.latin1Slice(0, zero < 0 ? b.length : zero);
  const m = /^(\d{1,16})(?: (\d{1,16}))?$/.exec(text);
  const appliedMs = m === null ? NaN : Number(m[1]);
  const deleteFloor = m?.[2] === undefined ? undefined : Number(m[2]);
  if (m === null || !Number.isSafeInteger(appliedMs) || (deleteFloor !== undefined && !Number.isSafeInteger(deleteFloor)) || (zero >= 0 && deleteFloor === undefined)) {
    return `its state machine meta '${text.slice(0, 40)}' is not '<applied ms> [<deletion floor>]'`;
  }
  const tombstones: [string, number][] = [];
  if (zero >= 0) {
    let o = zero + 1;
    const bad = "its state machine meta has damaged tombstones";
    if (o + 4 > b.length) return bad;
    const n = b.readUInt32LE(o);
    o += 4;
    if (n > TOMBSTONES_MAX) return bad;
    for (let i = 0; i < n; i++) {
      if (o + 10 > b.length) return bad;
      const kLen = b.readUInt16LE(o);
      const hi = b.readUInt32LE(o + 6);
      if (kLen > TOMBSTONE_KEY_BYTES_MAX || hi >= 2 ** 21 || o + 10 + kLen > b.length) return bad;
      tombstones.push([b.latin1Slice(o + 10, o + 10 + kLen), hi * TWO_32 + b.readUInt32LE(o + 2)]);
      o += 10 + kLen;
    }
    if (o !== b.length) return bad;
  }
  return { appliedMs, deleteFloor, tombstones };
}
