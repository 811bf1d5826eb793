// Segment files: naming, and scanning one segment's bytes into an index with a precise verdict
// on the first bad spot (torn tail vs corruption). Pure apart from the types it shares with wal.ts.
import {
  decodeAt,
  getU32,
  isEntryType,
  peekIndex,
  peekTerm,
  peekType,
  RECORD_BODY_BYTES_MAX,
  RECORD_FIXED_BODY_BYTES,
  RECORD_HEADER_BYTES,
  validRecordEnd,
  type DecodeResult,
} from "./codec.ts";
import { assert } from "../errors.ts";

export const WAL_DIR = "wal";

/**
 * A growable list of numbers in a Float64Array: per-record offsets and terms. About 10x cheaper to
 * append to than a JS array at a million records, and no per-element GC work.
 */
export class NumList {
  private a: Float64Array;
  private n = 0;
  constructor(capacity = 256) {
    this.a = new Float64Array(capacity);
  }
  get length(): number {
    return this.n;
  }
  /** Only shrinks (truncation). */
  set length(n: number) {
    if (n < this.n) this.n = Math.max(0, n);
  }
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  /** Element i (0 <= i < length), undefined outside. */
  at(i: number): number | undefined {
    return i >= 0 && i < this.n ? this.a[i] : undefined;
  }
  last(): number | undefined {
    return this.n > 0 ? this.a[this.n - 1] : undefined;
  }
}
const SEGMENT_RE = /^(\d{20})\.seg$/;

/** `00000000000000000001.seg`: 20 digits (u64 fits) so names sort like indexes. */
export function segmentName(firstIndex: number): string {
  return `${String(firstIndex).padStart(20, "0")}.seg`;
}

export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

export type ProblemKind = Exclude<DecodeResult["kind"], "ok"> | "index" | "term";

export interface SegmentProblem {
  /** Byte offset of the first bad record in the segment. */
  offset: number;
  kind: ProblemKind;
  detail: string;
  /** The index the bad record should have had. */
  expectedIndex: number;
  /** The first record with a good checksum after the bad spot, if any: proof this is not a torn write. */
  validAfter: { offset: number; index: number } | undefined;
}

export interface SegmentScan {
  name: string;
  /** From the file name; the first record must carry it. */
  firstIndex: number;
  /** Byte offset of each valid record; record i has index firstIndex + i. */
  offsets: NumList;
  terms: NumList;
  /** Offset of the last valid record that is not an entry (a hard state), if any. */
  lastHardState: number | undefined;
  /** End of the last valid record. */
  validBytes: number;
  fileBytes: number;
  problem: SegmentProblem | undefined;
}

/** Walks a segment's bytes, stopping at the first record that is not valid and in sequence. */
export function scanSegment(bytes: Uint8Array, name: string, firstIndex: number, prevTerm: number): SegmentScan {
  const offsets = new NumList();
  const terms = new NumList();
  let off = 0;
  let expected = firstIndex;
  let term = prevTerm;
  let problem: SegmentProblem | undefined;
  let lastHardState: number | undefined;
  while (off < bytes.length) {
    const next = validRecordEnd(bytes, off);
    if (next > 0) {
      const idx = peekIndex(bytes, off);
      const t = peekTerm(bytes, off);
      if (idx !== expected) {
        problem = mkProblem(off, "index", `record index ${idx} where ${expected} was expected`, expected);
        break;
      }
      if (t < term) {
        problem = mkProblem(off, "term", `term ${t} at index ${idx} is below the previous term ${term}`, expected);
        break;
      }
      term = t;
      if (isEntryType(peekType(bytes, off))) {
        offsets.push(off);
        terms.push(t);
        expected++;
      } else lastHardState = off;
      off = next;
      continue;
    }
    const r = decodeAt(bytes, off);
    assert(r.kind !== "ok", `validRecordEnd and decodeAt disagree at offset ${off}`);
    problem = mkProblem(off, r.kind, describe(r), expected);
    break;
  }
  // A zero run to the end of the file holds no records (preallocated space, or a zero-filled tail).
  if (problem && !(problem.kind === "zero" && allZeroFrom(bytes, problem.offset))) {
    problem.validAfter = findValidAfter(bytes, problem.offset + 1, expected);
  }
  return { name, firstIndex, offsets, terms, lastHardState, validBytes: off, fileBytes: bytes.length, problem };
}

/**
 * For a segment whose records are all covered by a verified snapshot: walks the record headers
 * (length, index, term) without checking checksums, which recovery then does not need. Any
 * irregularity falls back to the full scan, so damage is reported exactly as scanSegment would.
 * The checksums are checked again whenever these records are read (entries/replay).
 */
export function scanSegmentStructure(bytes: Uint8Array, name: string, firstIndex: number, prevTerm: number): SegmentScan {
  const offsets = new NumList();
  const terms = new NumList();
  let off = 0;
  let expected = firstIndex;
  let term = prevTerm;
  const end = bytes.length;
  let lastHardState: number | undefined;
  while (off < end) {
    if (end - off < RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES) return scanSegment(bytes, name, firstIndex, prevTerm);
    const body = getU32(bytes, off);
    if (body < RECORD_FIXED_BODY_BYTES || body > RECORD_BODY_BYTES_MAX || off + RECORD_HEADER_BYTES + body > end) {
      return scanSegment(bytes, name, firstIndex, prevTerm);
    }
    const idx = peekIndex(bytes, off);
    const t = peekTerm(bytes, off);
    if (idx !== expected || t < term) return scanSegment(bytes, name, firstIndex, prevTerm);
    term = t;
    if (isEntryType(peekType(bytes, off))) {
      offsets.push(off);
      terms.push(t);
      expected++;
    } else lastHardState = off;
    off += RECORD_HEADER_BYTES + body;
  }
  return { name, firstIndex, offsets, terms, lastHardState, validBytes: off, fileBytes: end, problem: undefined };
}

function mkProblem(offset: number, kind: ProblemKind, detail: string, expectedIndex: number): SegmentProblem {
  return { offset, kind, detail, expectedIndex, validAfter: undefined };
}

function describe(r: Exclude<DecodeResult, { kind: "ok" }>): string {
  switch (r.kind) {
    case "incomplete":
      return `incomplete record: ${r.needBytes} bytes expected, ${r.haveBytes} left in the file`;
    case "zero":
      return "zero-filled bytes where a record header should be";
    case "bad-length":
      return `impossible record length ${r.bodyBytes}`;
    case "crc-mismatch":
      return `checksum mismatch (stored 0x${r.stored.toString(16)}, computed 0x${r.computed.toString(16)})`;
    case "bad-type":
      return `unknown record type ${r.type} (written by a newer kv?)`;
  }
}

/**
 * Looks for any record with a good checksum starting after `from` whose index could follow the
 * damage (>= expectedIndex). Cheap prefilter on the length and index fields before the CRC.
 */
export function findValidAfter(bytes: Uint8Array, from: number, expectedIndex: number): { offset: number; index: number } | undefined {
  const minRecord = RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES;
  // A record's length field is not zero, so no record starts inside the trailing zero run
  // (preallocated space); its payload may still run into it.
  const startEnd = zeroRunStart(bytes);
  for (let p = from; p < startEnd && p + minRecord <= bytes.length; p++) {
    const body = getU32(bytes, p);
    if (body < RECORD_FIXED_BODY_BYTES || body > RECORD_BODY_BYTES_MAX || p + RECORD_HEADER_BYTES + body > bytes.length) continue;
    const idx = peekIndex(bytes, p);
    if (idx < expectedIndex || idx > expectedIndex + Math.ceil((bytes.length - from) / minRecord) + 1) continue;
    const r = decodeAt(bytes, p);
    if (r.kind === "ok") return { offset: p, index: r.record.index };
  }
  return undefined;
}

const ZEROS = new Uint8Array(64 * 1024);

/** True when bytes[from, end) are all zero (compared a chunk at a time, natively). */
export function allZeroFrom(bytes: Uint8Array, from: number): boolean {
  for (let p = from; p < bytes.length; p += ZEROS.length) {
    const n = Math.min(ZEROS.length, bytes.length - p);
    if (Buffer.compare(bytes.subarray(p, p + n), n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** Offset where the trailing run of zero bytes begins (bytes.length if the last byte is not zero). */
export function zeroRunStart(bytes: Uint8Array): number {
  let end = bytes.length;
  while (end > 0) {
    const n = Math.min(ZEROS.length, end);
    if (Buffer.compare(bytes.subarray(end - n, end), n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n)) !== 0) break;
    end -= n;
  }
  while (end > 0 && bytes[end - 1] === 0) end--;
  return end;
}

/** Is this problem a torn write (forgivable at the end of the last segment)? */
export function isTornTail(p: SegmentProblem): boolean {
  if (p.validAfter) return false;
  return TORN_KINDS.includes(p.kind);
}

const TORN_KINDS: readonly ProblemKind[] = ["incomplete", "zero", "crc-mismatch", "bad-length"];

/** A disk writes a sector whole or not at all; 512 bytes is the smallest sector disks use. */
export const SECTOR_BYTES = 512;

/**
 * A problem in the last segment that a power cut explains although records with good checksums
 * follow it: unsynced data reaches the disk in any order (the page cache writes pages back in any
 * order; a disk with a volatile cache persists them in any order), so a later sector can survive
 * where an earlier one never got written. Such a sector reads as zeros (preallocated space, or past
 * the old end of the file): the damaged bytes hold a run of zeros filling their share of a sector.
 * The records after it were never acknowledged: an fsync that covered them covered the damaged
 * bytes too. (etcd's WAL makes the same call: a record with a zero sector is torn.) Damage without
 * such a run (a flipped bit) still stops the node.
 */
export function isOutOfOrderTear(bytes: Uint8Array, p: SegmentProblem): boolean {
  if (p.validAfter === undefined || !TORN_KINDS.includes(p.kind)) return false;
  const end = p.validAfter.offset;
  for (let start = p.offset; start < end; ) {
    const next = Math.min(end, (Math.floor(start / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    let zeros = true;
    for (let i = start; i < next && zeros; i++) zeros = bytes[i] === 0;
    if (zeros) return true;
    start = next;
  }
  return false;
}

/** How many record-shaped pieces a dropped tail holds (0 for zeros or garbage shorter than a header). */
export function countTailRecords(bytes: Uint8Array, from: number): number {
  let n = 0;
  let off = from;
  while (off < bytes.length) {
    const r = decodeAt(bytes, off);
    if (r.kind === "zero") break;
    n++;
    if (r.kind === "ok") off = r.next;
    else if (r.kind === "crc-mismatch") off += RECORD_HEADER_BYTES + r.bodyBytes;
    else break;
  }
  return n;
}

/** Valid (checksum-good) records from `from` on, skipping damage: what a repair would throw away. */
export function countValidFrom(bytes: Uint8Array, from: number, expectedIndex: number): number {
  let n = 0;
  let off = from;
  let expected = expectedIndex;
  while (off < bytes.length) {
    const r = decodeAt(bytes, off);
    if (r.kind === "ok") {
      n++;
      expected = r.record.index + 1;
      off = r.next;
      continue;
    }
    const next = findValidAfter(bytes, off + 1, expected);
    if (!next) break;
    off = next.offset;
  }
  return n;
}

/** What scanSegmentWindowed found: every record valid and in sequence, then EOF or only zeros. */
export interface WindowedScan {
  scan: SegmentScan;
  /** Where the zero run that ends the file begins (records end there); undefined: no zero tail. */
  zeroTailFrom: number | undefined;
}

/**
 * The common case of scanSegment (or scanSegmentStructure when `structureOnly`) without holding
 * the file in memory: reads it through `window` a piece at a time. It accepts only a segment
 * whose records are all valid and in sequence, ending at EOF or followed by zeros to EOF
 * (preallocated space), and returns undefined for anything else (damage, a torn tail, a record
 * larger than the window when checksums are checked), so the caller scans the whole file the
 * usual way and reports exactly what scanSegment reports. `read(buf, off, len, pos)` is pread.
 */
export function scanSegmentWindowed(
  read: (buf: Uint8Array, off: number, len: number, pos: number) => number,
  fileBytes: number,
  window: Uint8Array,
  name: string,
  firstIndex: number,
  prevTerm: number,
  structureOnly: boolean,
): WindowedScan | undefined {
  const minRecord = RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES;
  assert(window.length >= 64 * 1024, "scanSegmentWindowed: window too small");
  const offsets = new NumList();
  const terms = new NumList();
  let winPos = 0; // file offset of window[0]
  let winLen = 0; // valid bytes in window
  /** Makes [pos, pos + need) readable in the window; false when the file ends first. */
  const ensure = (pos: number, need: number): boolean => {
    if (pos >= winPos && pos + need <= winPos + winLen) return true;
    if (pos + need > fileBytes || need > window.length) return false;
    winPos = pos;
    winLen = 0;
    const want = Math.min(window.length, fileBytes - pos);
    while (winLen < want) {
      const n = read(window, winLen, want - winLen, pos + winLen);
      if (n <= 0) return false;
      winLen += n;
    }
    return winLen >= need;
  };
  let off = 0;
  let expected = firstIndex;
  let term = prevTerm;
  let lastHardState: number | undefined;
  while (off < fileBytes) {
    if (!ensure(off, Math.min(minRecord, fileBytes - off))) return undefined;
    let w = off - winPos;
    if (fileBytes - off < minRecord || (getU32(window, w) === 0 && getU32(window, w + 4) === 0)) break; // maybe a zero tail
    const body = getU32(window, w);
    if (body < RECORD_FIXED_BODY_BYTES || body > RECORD_BODY_BYTES_MAX || off + RECORD_HEADER_BYTES + body > fileBytes) return undefined;
    const recordBytes = RECORD_HEADER_BYTES + body;
    if (!structureOnly) {
      if (!ensure(off, recordBytes)) return undefined;
      w = off - winPos;
      if (validRecordEnd(window, w, winLen) !== w + recordBytes) return undefined;
    }
    const idx = peekIndex(window, w);
    const t = peekTerm(window, w);
    if (idx !== expected || t < term) return undefined;
    term = t;
    if (isEntryType(peekType(window, w))) {
      offsets.push(off);
      terms.push(t);
      expected++;
    } else lastHardState = off;
    off += recordBytes;
  }
  const validBytes = off;
  // Anything after the records must be zeros to EOF.
  for (let p = off; p < fileBytes; ) {
    const n = Math.min(window.length, fileBytes - p);
    if (!ensure(p, n)) return undefined;
    const w = p - winPos;
    if (!allZeroFrom(window.subarray(w, w + n), 0)) return undefined;
    p += n;
  }
  return {
    scan: { name, firstIndex, offsets, terms, lastHardState, validBytes, fileBytes, problem: undefined },
    zeroTailFrom: validBytes < fileBytes ? validBytes : undefined,
  };
}
