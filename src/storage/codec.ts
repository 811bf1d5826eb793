// WAL record framing: encode a batch into one buffer, decode one record with a precise outcome. Pure.
//
// Layout (little-endian), one record:
//   [u32 bodyBytes][u32 crc32c(body)] body = [u64 index][u64 term][u8 type][u64 timestampMs][payload]
// bodyBytes counts the body only (25 + payload length). The CRC covers the whole body, so a flipped
// bit in index, term, type, time or payload is caught; a damaged length shows up as a CRC mismatch,
// a bad length or an incomplete record.
import { crc32c } from "./crc32c.ts";

export const RECORD_HEADER_BYTES = 8;
export const RECORD_FIXED_BODY_BYTES = 25;
/**
 * Largest payload accepted; a length field above this is treated as damage, not a huge record.
 * One write carrying the largest string kv holds (512 MiB: STRING_BYTES_MAX, the most
 * --proto-max-bulk-len allows) plus up to 1 MiB of command name, key and options fits in one record.
 */
export const RECORD_PAYLOAD_BYTES_MAX = 513 * 1024 * 1024;
export const RECORD_BODY_BYTES_MAX = RECORD_FIXED_BODY_BYTES + RECORD_PAYLOAD_BYTES_MAX;

/** What a record means to the layers above. New types get new numbers; numbers are never reused. */
export const RecordType = {
  /** A client command: payload is the RESP-encoded argv. */
  Command: 1,
  /** Raft: the no-op a new leader appends in its term. Empty payload. */
  NoOp: 2,
  /** Raft: a membership change. Payload defined by raft/. */
  Config: 3,
  /**
   * Raft's hard state (term, vote, commit): not a log entry. It takes no index of its own: its
   * index field is the index the next entry will have (lastIndex + 1) and its term the last
   * entry's term, so the sequence checks still hold. Payload: encodeHardStatePayload.
   */
  HardState: 4,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
const RECORD_TYPE_MAX = 4;

/** Does a record of this type hold a log entry (and take an index), or ride beside the entries? */
export function isEntryType(type: number): boolean {
  return type !== RecordType.HardState;
}

/** Bytes of a HardState record's payload: [u64 term][u64 vote][u64 commit]. */
export const HARD_STATE_PAYLOAD_BYTES = 24;

export function encodeHardStatePayload(hs: { term: number; vote: number; commit: number }): Uint8Array {
  const out = new Uint8Array(HARD_STATE_PAYLOAD_BYTES);
  checkU64(hs.term, "term");
  checkU64(hs.vote, "vote");
  checkU64(hs.commit, "commit");
  putU64(out, 0, hs.term);
  putU64(out, 8, hs.vote);
  putU64(out, 16, hs.commit);
  return out;
}

/** Undefined when the payload does not have the size a hard state has. */
export function decodeHardStatePayload(p: Uint8Array): { term: number; vote: number; commit: number } | undefined {
  if (p.length !== HARD_STATE_PAYLOAD_BYTES) return undefined;
  return { term: getU64(p, 0), vote: getU64(p, 8), commit: getU64(p, 16) };
}

export interface LogRecord {
  index: number;
  term: number;
  type: RecordType;
  /** Time stamped by whoever accepted the write (the leader), so replay is deterministic. */
  timestampMs: number;
  /** Opaque bytes. Decoded records may share memory with the buffer they came from. */
  payload: Uint8Array;
}

export function recordBytes(r: LogRecord): number {
  return recordBytesFor(r.payload.length);
}

/** Bytes a record with a payload of this size takes on disk. */
export function recordBytesFor(payloadBytes: number): number {
  return RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES + payloadBytes;
}

const TWO_32 = 2 ** 32;

// Byte-wise little-endian access: no DataView, because reading `.buffer` off a Uint8Array is
// costly in JavaScriptCore (it showed up as 20 % of append CPU in a profile).
function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

export function getU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function checkU64(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
}

function putU64(b: Uint8Array, o: number, n: number): void {
  const lo = n >>> 0;
  putU32(b, o, lo);
  putU32(b, o + 4, (n - lo) / TWO_32);
}

function getU64(b: Uint8Array, o: number): number {
  return getU32(b, o + 4) * TWO_32 + getU32(b, o);
}

/** Throws RangeError if the record cannot be encoded (checked before anything is queued). */
export function checkRecord(r: LogRecord): void {
  checkU64(r.index, "index");
  checkU64(r.term, "term");
  checkU64(r.timestampMs, "timestampMs");
  if (!(r.type >= 1 && r.type <= RECORD_TYPE_MAX) || !Number.isInteger(r.type)) throw new RangeError(`unknown record type ${r.type}`);
  if (r.payload.length > RECORD_PAYLOAD_BYTES_MAX) throw new RangeError(`record payload ${r.payload.length} bytes exceeds ${RECORD_PAYLOAD_BYTES_MAX}`);
}

/** Encodes records into one contiguous buffer (written to the segment with a single write). */
export function encodeRecords(records: readonly LogRecord[]): Uint8Array {
  let total = 0;
  for (const r of records) {
    checkRecord(r);
    total += recordBytes(r);
  }
  const out = new Uint8Array(total);
  encodeInto(records, out, 0);
  return out;
}

/** Encodes records into `out` at `off`; returns the offset after the last record. */
export function encodeInto(records: readonly LogRecord[], out: Uint8Array, off: number): number {
  for (const r of records) {
    checkRecord(r);
    const body = RECORD_FIXED_BODY_BYTES + r.payload.length;
    const b = off + RECORD_HEADER_BYTES;
    putU32(out, off, body);
    putU64(out, b, r.index);
    putU64(out, b + 8, r.term);
    out[b + 16] = r.type;
    putU64(out, b + 17, r.timestampMs);
    out.set(r.payload, b + RECORD_FIXED_BODY_BYTES);
    putU32(out, off + 4, crc32c(out, b, b + body));
    off = b + body;
  }
  return off;
}

export type DecodeResult =
  /** A whole record with a good CRC; `next` is the offset after it. */
  | { kind: "ok"; record: LogRecord; next: number }
  /** Fewer bytes left than the header or the length field promises: a torn write, or a damaged length. */
  | { kind: "incomplete"; needBytes: number; haveBytes: number }
  /** The 8 header bytes are all zero: a zero-filled (preallocated or never written) region. */
  | { kind: "zero" }
  /** The length field is impossible (below the fixed body or above the maximum). */
  | { kind: "bad-length"; bodyBytes: number }
  /** The body does not match its checksum. */
  | { kind: "crc-mismatch"; stored: number; computed: number; bodyBytes: number }
  /** A good checksum but a type this version does not know (written by a newer kv?). */
  | { kind: "bad-type"; type: number };

/**
 * The offset just past the record at `off` when it is whole, its checksum matches and its type is
 * known (what decodeAt calls "ok"), else -1. Allocates nothing: recovery scans check every record
 * this way and call decodeAt only to describe a bad one.
 */
export function validRecordEnd(bytes: Uint8Array, off: number, end = bytes.length): number {
  if (end - off < RECORD_HEADER_BYTES) return -1;
  const body = getU32(bytes, off);
  if (body < RECORD_FIXED_BODY_BYTES || body > RECORD_BODY_BYTES_MAX) return -1;
  const b = off + RECORD_HEADER_BYTES;
  if (b + body > end) return -1;
  if (crc32c(bytes, b, b + body) !== getU32(bytes, off + 4)) return -1;
  const type = bytes[b + 16]!;
  if (type < 1 || type > RECORD_TYPE_MAX) return -1;
  return b + body;
}

/** Decodes the record starting at `off` in bytes[0, end). Never throws on bad input. */
export function decodeAt(bytes: Uint8Array, off: number, end = bytes.length): DecodeResult {
  const have = end - off;
  if (have < RECORD_HEADER_BYTES) {
    for (let i = off; i < end; i++) if (bytes[i] !== 0) return { kind: "incomplete", needBytes: RECORD_HEADER_BYTES, haveBytes: have };
    return have === 0 ? { kind: "incomplete", needBytes: RECORD_HEADER_BYTES, haveBytes: 0 } : { kind: "zero" };
  }
  const body = getU32(bytes, off);
  const stored = getU32(bytes, off + 4);
  if (body === 0 && stored === 0) return { kind: "zero" };
  if (body < RECORD_FIXED_BODY_BYTES || body > RECORD_BODY_BYTES_MAX) return { kind: "bad-length", bodyBytes: body };
  const b = off + RECORD_HEADER_BYTES;
  if (b + body > end) return { kind: "incomplete", needBytes: RECORD_HEADER_BYTES + body, haveBytes: have };
  const computed = crc32c(bytes, b, b + body);
  if (computed !== stored) return { kind: "crc-mismatch", stored, computed, bodyBytes: body };
  const type = bytes[b + 16]!;
  if (type < 1 || type > RECORD_TYPE_MAX) return { kind: "bad-type", type };
  return {
    kind: "ok",
    record: {
      index: getU64(bytes, b),
      term: getU64(bytes, b + 8),
      type: type as RecordType,
      timestampMs: getU64(bytes, b + 17),
      payload: bytes.subarray(b + RECORD_FIXED_BODY_BYTES, b + body),
    },
    next: b + body,
  };
}

/** Decodes a buffer that must hold whole, valid records only (e.g. what encodeRecords produced). */
export function decodeAll(bytes: Uint8Array): LogRecord[] {
  const out: LogRecord[] = [];
  let off = 0;
  while (off < bytes.length) {
    const r = decodeAt(bytes, off);
    if (r.kind !== "ok") throw new Error(`decodeAll: ${r.kind} at offset ${off}`);
    out.push(r.record);
    off = r.next;
  }
  return out;
}

/** Reads the index field of a record header at `off` without checking anything (for resync prefilters). */
export function peekIndex(bytes: Uint8Array, off: number): number {
  return getU64(bytes, off + RECORD_HEADER_BYTES);
}

/** The term field of the record at `off` (no checks: callers validate the header first). */
export function peekTerm(bytes: Uint8Array, off: number): number {
  return getU64(bytes, off + RECORD_HEADER_BYTES + 8);
}

/** The type field of the record at `off` (no checks). */
export function peekType(bytes: Uint8Array, off: number): RecordType {
  return bytes[off + RECORD_HEADER_BYTES + 16]! as RecordType;
}

/** The timestamp field of the record at `off` (no checks). */
export function peekTimestamp(bytes: Uint8Array, off: number): number {
  return getU64(bytes, off + RECORD_HEADER_BYTES + 17);
}
