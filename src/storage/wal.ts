// The segmented write-ahead log on disk: group-committed appends, recovery, truncation, compaction.
//
// Files: <dataDir>/wal/<first index, 20 digits>.seg, each a run of records framed by codec.ts.
// One writer loop owns the files: appends queue up, the loop writes everything queued as one buffer
// and fdatasyncs it (on the threadpool, so the event loop keeps serving), then resolves the appends.
// Appends that arrive during the fsync form the next batch (group commit).
import { dirname, join, resolve } from "node:path";
import { assert, AssertionError, CorruptLogError } from "../errors.ts";
import { logger } from "../log.ts";
import {
  decodeAt,
  encodeRecords,
  getU32,
  isEntryType,
  peekIndex,
  peekTerm,
  peekTimestamp,
  peekType,
  RECORD_FIXED_BODY_BYTES,
  RECORD_HEADER_BYTES,
  recordBytes,
  type LogRecord,
  type RecordType,
  validRecordEnd,
} from "./codec.ts";
import { DataDirError, StorageIoError, WalFailedError } from "./errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { checkContiguous, type LogStore } from "./log-store.ts";
import {
  allZeroFrom,
  countTailRecords,
  countValidFrom,
  isOutOfOrderTear,
  isTornTail,
  NumList,
  parseSegmentName,
  scanSegment,
  scanSegmentStructure,
  scanSegmentWindowed,
  segmentName,
  WAL_DIR,
  type SegmentScan,
  type WindowedScan,
  zeroRunStart,
} from "./segment.ts";

// Looked up per message: a consola child made by withTag keeps the level it was created with, so a
// module-level instance would ignore setLogLevel() called later.
const log = () => logger("storage");

/**
 * When an append resolves (as Redis's appendfsync):
 * - "always": after an fdatasync covering it. Loses nothing acknowledged, even on power loss.
 * - "everysec": after write(2); a background fdatasync runs every second. A process crash loses
 *   nothing acknowledged (the page cache survives); power loss or a kernel crash can lose about the
 *   last 1-2 s of acknowledged writes.
 * - "no": after write(2); the kernel writes back when it likes (Linux: typically within ~30 s).
 *   A process crash loses nothing acknowledged; power loss can lose everything since the kernel's
 *   last writeback.
 */
export type FsyncMode = "always" | "everysec" | "no";
export const FSYNC_MODES: readonly FsyncMode[] = ["always", "everysec", "no"];

export const SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Smallest segment size accepted (--wal-segment-bytes): room for a record header and some body. */
export const SEGMENT_BYTES_MIN = 64;
/** Wal.open scans segments through a window this big; a record larger than it makes that segment be read whole. */
const WINDOW_BYTES = 4 * 1024 * 1024;
/** Reads (entries/replay) fetch at most this much per read(2). */
const READ_CHUNK_BYTES = 4 * 1024 * 1024;
/** The zero-filled file that becomes the next segment (not a .seg name: recovery ignores it). */
const SPARE_NAME = "next-segment.prealloc";
/** Start preparing the spare once the active segment holds this much (or half its maximum). */
const SPARE_AFTER_BYTES = 1024 * 1024;

export interface WalOptions {
  dataDir: string;
  fsync?: FsyncMode;
  /** A segment is closed and a new one started once it would grow past this. */
  segmentBytesMax?: number;
  /** "everysec" background fsync period. */
  everysecIntervalMs?: number;
  /** "threadpool" (default): fdatasync off the event loop. "inline": fdatasyncSync, blocks the loop. */
  syncMethod?: "threadpool" | "inline";
  /**
   * "always": how many batches may have an fsync running at once. 1 = classic group commit (the next
   * batch waits for the running fsync); 2 lets the next batch's write+fsync start while one is running.
   */
  syncsInFlightMax?: number;
  /**
   * Write new segments into files already filled with zeros (prepared on the threadpool once the
   * active segment holds 1 MiB or half its maximum), so fdatasync has no file-size metadata to
   * commit: faster fsyncs. Default true. A segment created while no spare is ready (the first one)
   * is not preallocated; the log switches to the spare as soon as it is ready.
   */
  preallocate?: boolean;
  io?: StorageIo;
  /**
   * Records up to this index are covered by a snapshot whose checksum was verified: recovery
   * walks the headers of segments wholly below it without recomputing their checksums (they
   * are checked again when read). Only a fallback to an older snapshot reads them.
   */
  trustThrough?: number;
}

export interface TornTailReport {
  file: string;
  offset: number;
  /** Every byte cut, zeroTailBytes included. */
  bytesDropped: number;
  /** The run of zero bytes the cut ended with (unused preallocated space, not data). */
  zeroTailBytes: number;
  recordsDropped: number;
  reason: string;
}

/** "N bytes (R records)", and the zeros after them said apart: they were never data. */
export function describeDropped(bytes: number, zeroTailBytes: number, records: string): string {
  const data = `${bytes - zeroTailBytes} bytes (${records})`;
  return zeroTailBytes > 0 ? `${data} and ${zeroTailBytes} zero bytes after them (unused preallocated space)` : data;
}

export interface RecoveryReport {
  segments: number;
  records: number;
  bytes: number;
  firstIndex: number;
  lastIndex: number;
  truncated: TornTailReport | undefined;
  /** Zero bytes after the last record of the last segment, kept (preallocated space). */
  zeroTailBytes: number;
}

interface Segment {
  name: string;
  path: string;
  firstIndex: number;
  offsets: NumList;
  terms: NumList;
  bytes: number;
  /** File size when it is larger than `bytes` (preallocated zeros after the last record), else 0. */
  allocated: number;
  syncedBytes: number;
  fd: number | undefined;
  /** fd is open for writing (the active segment): O_APPEND, or O_RDWR when preallocated. */
  writable: boolean;
  /** fsyncs in flight on fd: the segment may not be closed or deleted meanwhile. */
  syncing: number;
  /** Every record's checksum was verified by Wal.open (not only its structure). */
  checkedAtOpen: boolean;
  /** Deleted by fail() while an fsync was in flight on fd: close fd when the last one returns. */
  dropped?: boolean;
  /** Offset of the segment's last record that is not an entry (a hard state), if any. */
  lastHardState: number | undefined;
}

interface PendingAppend {
  records: readonly LogRecord[];
  bytes: Uint8Array;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Wal implements LogStore {
  readonly dir: string;
  readonly mode: FsyncMode;
  readonly segmentBytesMax: number;
  recovery!: RecoveryReport;
  failure: StorageIoError | undefined;
  /** Counters for tests and INFO: batches written, fdatasyncs issued, records appended. */
  readonly stats = { batches: 0, fsyncs: 0, records: 0, bytes: 0 };

  private readonly io: StorageIo;
  private readonly syncInline: boolean;
  /** The newest HardState record written to a segment and still in it: its payload and index field. */
  private hardState: { seg: Segment; offset: number; index: number; payload: Uint8Array } | undefined;
  private segments: Segment[] = [];
  private base = 0; // index just before the first record, while there are no segments
  private last = 0; // last appended index (queued or written)
  private lastTermValue = 0;
  private written = 0; // last index written to a segment
  private acked = 0; // last index whose append resolved
  private baseTerm: number | undefined = 0; // term of firstIndex()-1 when known
  private queue: PendingAppend[] = [];
  /** Batches written whose fsync is running (or done but behind an earlier one), in log order. */
  private inflight: { batch: PendingAppend[]; synced: boolean }[] = [];
  private readonly syncsInFlightMax: number;
  private readonly preallocate: boolean;
  /** A zero-filled file being prepared (or ready) to become the next segment. */
  private spare: { path: string; bytes: number; ready: boolean; done: Promise<void> } | undefined;
  private spareFailed = false;
  private kickScheduled = false;
  private tail: Promise<void> = Promise.resolve();
  private exclusive = false;
  private closed = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private bgSyncing = false;
  /** The active segment is being made durable on the threadpool before the log rolls past it. */
  private rollSyncing = false;

  private constructor(opts: WalOptions) {
    this.dir = join(opts.dataDir, WAL_DIR);
    this.mode = opts.fsync ?? "always";
    assert(FSYNC_MODES.includes(this.mode), `unknown fsync mode ${this.mode}`);
    this.segmentBytesMax = opts.segmentBytesMax ?? SEGMENT_BYTES_MAX_DEFAULT;
    assert(this.segmentBytesMax >= SEGMENT_BYTES_MIN, "segmentBytesMax too small");
    this.io = opts.io ?? nodeIo;
    this.syncInline = opts.syncMethod === "inline";
    this.syncsInFlightMax = opts.syncsInFlightMax ?? 1;
    this.preallocate = opts.preallocate ?? true;
    assert(this.syncsInFlightMax >= 1, "syncsInFlightMax must be >= 1");
  }

  /**
   * Opens (creating if needed) the WAL in dataDir/wal, validating every record. A torn tail in the last
   * segment is truncated with a warning (see `recovery.truncated`); anything else that fails its checks
   * throws CorruptLogError naming the file and offset. Unwritable dirs throw DataDirError.
   */
  static async open(opts: WalOptions): Promise<Wal> {
    const wal = new Wal(opts);
    wal.recover(opts.trustThrough ?? 0);
    if (wal.mode === "everysec") {
      wal.timer = setInterval(() => void wal.backgroundSync(), opts.everysecIntervalMs ?? 1000);
      (wal.timer as { unref?: () => void }).unref?.();
    }
    return wal;
  }

  // ---------------------------------------------------------------- recovery

  private recover(trustThrough: number): void {
    const io = this.io;
    openDataDir(io, this.dir);
    // A spare left by an earlier run: reuse it when it has the right size (its bytes are zeros either
    // way: written, or holes if a crash cut the preallocation short, which only costs speed).
    if (io.readdir(this.dir).includes(SPARE_NAME)) {
      const sparePath = join(this.dir, SPARE_NAME);
      const fd = io.openRead(sparePath);
      const size = io.fileSize(fd);
      io.close(fd);
      if (this.preallocate && size === this.segmentBytesMax) {
        this.spare = { path: sparePath, bytes: size, ready: true, done: Promise.resolve() };
      } else io.unlink(sparePath);
    }
    const names = io
      .readdir(this.dir)
      .map((name) => ({ name, first: parseSegmentName(name) }))
      .filter((s): s is { name: string; first: number } => s.first !== undefined)
      .sort((a, b) => a.first - b.first);
    let truncated: TornTailReport | undefined;
    let zeroTailBytes = 0;
    let prevLast: number | undefined;
    let prevTerm = 0;
    let bytesTotal = 0;
    // Segments are scanned through one small window (scanSegmentWindowed). Only a segment that is
    // not clean (damage, a torn tail) is read whole, into one buffer reused for all of them:
    // faulting in a fresh 64 MiB buffer costs more than the scan itself.
    const window = new Uint8Array(WINDOW_BYTES);
    const scratch = { buf: new Uint8Array(0) };
    for (let i = 0; i < names.length; i++) {
      const { name, first } = names[i]!;
      const path = join(this.dir, name);
      const rel = `${WAL_DIR}/${name}`;
      const isLast = i === names.length - 1;
      if (prevLast !== undefined && first !== prevLast + 1) {
        throw new CorruptLogError(
          `${rel}: starts at index ${first} but the previous segment ends at ${prevLast}: a segment is missing or damaged. ` +
            `Restore the data dir from a replica or backup, or run \`kv repair --data-dir <dir>\` to cut the log at index ${prevLast} (drops every later segment).`,
          path,
          0,
        );
      }
      // A segment wholly covered by the verified snapshot (the next one starts at or below
      // trustThrough + 1) needs only its structure; the last segment is always fully checked.
      const covered = !isLast && names[i + 1]!.first - 1 <= trustThrough;
      let scan: SegmentScan;
      let bytes: Uint8Array | undefined;
      let allocated = 0;
      const quick = scanWindowed(io, path, window, name, first, prevTerm, covered);
      if (quick !== undefined && (quick.zeroTailFrom === undefined || (isLast && this.preallocate))) {
        scan = quick.scan;
        if (quick.zeroTailFrom !== undefined) {
          // Zeros to the end of the active segment: preallocated space (ours), not damage. Keep it.
          allocated = scan.fileBytes;
          zeroTailBytes = scan.fileBytes - quick.zeroTailFrom;
        }
      } else {
        bytes = readWhole(io, path, scratch);
        scan = covered ? scanSegmentStructure(bytes, name, first, prevTerm) : scanSegment(bytes, name, first, prevTerm);
        if (scan.problem && isLast && this.preallocate && scan.problem.kind === "zero" && allZeroFrom(bytes, scan.problem.offset)) {
          allocated = bytes.length;
          zeroTailBytes = bytes.length - scan.problem.offset;
          scan.problem = undefined;
        }
      }
      if (scan.problem) {
        const p = scan.problem;
        assert(bytes !== undefined, "a segment with a problem was read whole");
        const outOfOrder = isLast && isOutOfOrderTear(bytes, p);
        if (!isLast || !(isTornTail(p) || outOfOrder)) {
          const after = p.validAfter ? `; a valid record (index ${p.validAfter.index}) follows at offset ${p.validAfter.offset}` : "";
          const where = isLast ? "" : " in a segment that is not the last one";
          throw new CorruptLogError(
            `${rel}: ${p.detail} at offset ${p.offset} (record index ${p.expectedIndex})${where}${after}. ` +
              `This is damage, not a torn write, so kv will not start. Restore this node's data dir from a replica or backup, ` +
              `or run \`kv repair --data-dir <dir>\` to truncate the log at this offset (it reports what it drops: the first index, the bytes and how many records had good checksums).`,
            path,
            p.offset,
          );
        }
        const dropped = bytes.length - p.offset;
        const records = countTailRecords(bytes, p.offset);
        const zeroTailBytes = bytes.length - Math.max(p.offset, zeroRunStart(bytes));
        truncated = { file: rel, offset: p.offset, bytesDropped: dropped, zeroTailBytes, recordsDropped: records, reason: p.detail };
        const fd = this.openOrThrow("truncate", path, () => io.openAppend(path));
        try {
          io.truncate(fd, p.offset);
          io.datasyncSync(fd);
        } catch (e) {
          throw new StorageIoError("truncate", path, e);
        } finally {
          io.close(fd);
        }
        const later = outOfOrder ? countValidFrom(bytes, p.offset, p.expectedIndex) : 0;
        log().warn(
          `${rel}: truncated a torn tail at offset ${p.offset}: dropped ${describeDropped(dropped, zeroTailBytes, `${records} incomplete record${records === 1 ? "" : "s"}, from index ${p.expectedIndex}`)}: ${p.detail}` +
            (outOfOrder
              ? `; a sector of it was never written (a power cut before the fsync), so the ${later} record${later === 1 ? "" : "s"} with good checksums after it were never acknowledged and went too`
              : ""),
        );
      }
      const seg: Segment = {
        name,
        path,
        firstIndex: first,
        offsets: scan.offsets,
        terms: scan.terms,
        bytes: scan.validBytes,
        allocated,
        syncedBytes: scan.validBytes,
        fd: undefined,
        writable: false,
        syncing: 0,
        checkedAtOpen: !covered,
        lastHardState: scan.lastHardState,
      };
      if (seg.offsets.length === 0 && !isLast) {
        throw new CorruptLogError(`${rel}: empty segment in the middle of the log. Run \`kv repair --data-dir <dir>\`.`, path, 0);
      }
      this.segments.push(seg);
      prevLast = first + scan.offsets.length - 1;
      if (scan.terms.length > 0) prevTerm = scan.terms.last()!;
      bytesTotal += scan.validBytes;
    }
    const firstSeg = this.segments[0];
    if (firstSeg) {
      this.baseTerm = firstSeg.firstIndex === 1 ? 0 : undefined;
      this.base = firstSeg.firstIndex - 1;
      this.last = this.written = prevLast!;
      this.lastTermValue = this.termOf(this.last) ?? this.baseTerm ?? 0;
      // The last segment becomes the active one: open it for append now, so a read-only dir fails at startup.
      this.activate(this.segments[this.segments.length - 1]!);
    } else {
      probeWritable(io, this.dir);
    }
    this.written = this.acked = this.last;
    for (let i = this.segments.length - 1; i >= 0 && this.hardState === undefined; i--) {
      const seg = this.segments[i]!;
      if (seg.lastHardState === undefined) continue;
      const head = new Uint8Array(RECORD_HEADER_BYTES);
      this.io.read(this.readFd(seg), head, 0, RECORD_HEADER_BYTES, seg.lastHardState);
      const len = RECORD_HEADER_BYTES + getU32(head, 0);
      const buf = new Uint8Array(len);
      const n = this.io.read(this.readFd(seg), buf, 0, len, seg.lastHardState);
      const r = decodeAt(buf, 0, n);
      if (r.kind !== "ok") throw changedAfterValidation(seg, seg.firstIndex, seg.lastHardState, r.kind);
      this.hardState = { seg, offset: seg.lastHardState, index: r.record.index, payload: r.record.payload.slice() };
      // A log that holds no entry after its base (a reset, then only hard states) keeps the base's
      // term in its hard-state records (written with the log's last term): without it a reopened
      // log would take 0 for its last term and refuse the next record of the real one.
      if (this.last === this.base && this.baseTerm === undefined && r.record.index === this.base + 1) {
        this.baseTerm = this.lastTermValue = r.record.term;
      }
    }
    let records = 0;
    for (const s of this.segments) records += s.offsets.length;
    this.recovery = { segments: this.segments.length, records, bytes: bytesTotal, firstIndex: this.firstIndex(), lastIndex: this.last, truncated, zeroTailBytes };
  }

  private openOrThrow(op: "open" | "create" | "truncate", path: string, f: () => number): number {
    try {
      return f();
    } catch (e) {
      throw dataDirError(e, path, op);
    }
  }

  // ---------------------------------------------------------------- reads

  /**
   * The newest HardState record written and still in the log (truncation, compaction and reset
   * drop it with its bytes): its payload and its index field (the index the next entry had).
   * Records appended but not yet written are not included.
   */
  lastHardState(): { index: number; payload: Uint8Array } | undefined {
    const h = this.hardState;
    return h === undefined ? undefined : { index: h.index, payload: h.payload };
  }

  firstIndex(): number {
    return this.segments[0]?.firstIndex ?? this.base + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  term(index: number): number | undefined {
    if (index === this.last) return this.lastTermValue;
    if (index === this.firstIndex() - 1) return this.baseTerm;
    return this.termOf(index);
  }

  private termOf(index: number): number | undefined {
    if (index > this.written) {
      for (const a of this.queue) for (const r of a.records) if (r.index === index && isEntryType(r.type)) return r.term;
      return undefined;
    }
    const seg = this.segmentFor(index);
    return seg?.terms.at(index - seg.firstIndex);
  }

  /** The file and byte offset of record `index`, for error messages (undefined if not held). */
  locate(index: number): { file: string; offset: number } | undefined {
    const seg = this.segmentFor(index);
    return seg === undefined ? undefined : { file: seg.path, offset: seg.offsets.at(index - seg.firstIndex)! };
  }

  private segmentFor(index: number): Segment | undefined {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = segs[mid]!;
      if (index < s.firstIndex) hi = mid - 1;
      else if (index >= s.firstIndex + s.offsets.length) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  entries(lo: number, hi: number, maxBytes = Infinity): LogRecord[] {
    if (!(lo >= this.firstIndex() && hi <= this.last + 1 && lo <= hi)) assert(false, `entries(${lo}, ${hi}) outside [${this.firstIndex()}, ${this.last + 1})`);
    const out: LogRecord[] = [];
    let payloadBytes = 0;
    let i = lo;
    while (i < hi && i <= this.written) {
      const seg = this.segmentFor(i)!;
      const k0 = i - seg.firstIndex;
      const kMax = Math.min(hi, seg.firstIndex + seg.offsets.length) - seg.firstIndex; // exclusive
      // Limit one read to READ_CHUNK_BYTES (and maxBytes), but always at least one record.
      const budget = Math.min(READ_CHUNK_BYTES, maxBytes === Infinity ? Infinity : maxBytes - payloadBytes + 64);
      const k1 = chunkEnd(seg, k0, kMax, budget);
      // A fresh buffer per chunk: the records handed out keep views of it.
      const buf = this.readChecked(seg, k0, k1, null);
      const start = seg.offsets.at(k0)!;
      for (let k = k0; k < k1; k++) {
        const off = seg.offsets.at(k)! - start;
        const payload = buf.subarray(off + RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES, off + RECORD_HEADER_BYTES + getU32(buf, off));
        if (out.length > 0 && payloadBytes + payload.length > maxBytes) return out;
        payloadBytes += payload.length;
        out.push({ index: seg.firstIndex + k, term: peekTerm(buf, off), type: peekType(buf, off), timestampMs: peekTimestamp(buf, off), payload });
      }
      i = seg.firstIndex + k1;
    }
    // Records still queued for the writer (appended, not yet written).
    if (i < hi) {
      for (const a of this.queue) {
        for (const r of a.records) {
          if (r.index < i || r.index >= hi || !isEntryType(r.type)) continue;
          if (out.length > 0 && payloadBytes + r.payload.length > maxBytes) return out;
          payloadBytes += r.payload.length;
          out.push(r);
        }
      }
    }
    return out;
  }

  /**
   * Recovery's replay without a record object per record: calls fn for every written record from
   * `from` on, in order, after checking its checksum and index as entries() does. The payload is
   * buf[payloadStart, payloadEnd), valid only during the call (one read buffer is reused).
   * Returns how many records it passed.
   */
  replayEach(
    from: number,
    fn: (index: number, term: number, type: RecordType, timestampMs: number, buf: Buffer, payloadStart: number, payloadEnd: number, mapped: boolean) => void,
    opts: { map?: boolean } = {},
  ): number {
    assert(this.written === this.last, "replayEach while records wait for the writer");
    let i = Math.max(from, this.firstIndex());
    let buf: Buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let count = 0;
    while (i <= this.written) {
      const seg = this.segmentFor(i)!;
      const k0 = i - seg.firstIndex;
      // Mapped: the whole rest of the segment, and payloads stay valid after the call for as
      // long as the caller holds the mapping (a record is never rewritten in place). Read: a
      // chunk into the reused buffer, valid only during the call.
      const m = opts.map ? this.mapChecked(seg, k0) : undefined;
      const k1 = m !== undefined ? seg.offsets.length : chunkEnd(seg, k0, seg.offsets.length, READ_CHUNK_BYTES);
      if (m === undefined) buf = this.readChecked(seg, k0, k1, buf);
      const b = m ?? buf;
      const base = m !== undefined ? 0 : seg.offsets.at(k0)!; // file offset of b[0]
      for (let k = k0; k < k1; k++) {
        const off = seg.offsets.at(k)! - base;
        fn(seg.firstIndex + k, peekTerm(b, off), peekType(b, off), peekTimestamp(b, off), b, off + RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES, off + RECORD_HEADER_BYTES + getU32(b, off), m !== undefined);
        count++;
      }
      i = seg.firstIndex + k1;
    }
    return count;
  }

  /**
   * seg mapped into memory with its records from k0 on checked as readChecked checks them, or
   * undefined when it cannot be mapped (the caller reads it instead). A segment whose checksums
   * Wal.open verified moments before (recovery, with the data dir locked) gets its records'
   * lengths and indexes checked, not their checksums again.
   */
  /** Segments mapped for mappedEntries, each checked once (dropped by endMapped). */
  private mappedSegments = new Map<Segment, Buffer | null>();

  /**
   * Written records [lo, hi) as mappedEntries found them: payloads are views of their segment
   * files mapped in memory (valid for as long as the caller holds them: a written record is never
   * rewritten in place, and a mapped file is only ever deleted whole), at least one record, then
   * up to maxBytes of payload. Each segment is mapped and checked once until endMapped. Undefined
   * when a segment cannot be mapped or a record is not written yet: read them with entries().
   * Recovery uses it so that the values of the records it applies may stay in the files.
   */
  mappedEntries(lo: number, hi: number, maxBytes = Infinity): { records: LogRecord[]; maps: Buffer[] } | undefined {
    if (!(lo >= this.firstIndex() && hi <= this.written + 1 && lo < hi)) return undefined;
    const records: LogRecord[] = [];
    const maps: Buffer[] = [];
    let payloadBytes = 0;
    let i = lo;
    while (i < hi) {
      const seg = this.segmentFor(i);
      if (seg === undefined) return undefined;
      let m = this.mappedSegments.get(seg);
      if (m === undefined) {
        m = this.mapChecked(seg, 0) ?? null;
        this.mappedSegments.set(seg, m);
      }
      if (m === null) return undefined;
      maps.push(m);
      const kEnd = Math.min(hi, seg.firstIndex + seg.offsets.length) - seg.firstIndex;
      for (let k = i - seg.firstIndex; k < kEnd; k++) {
        const off = seg.offsets.at(k)!;
        const payload = m.subarray(off + RECORD_HEADER_BYTES + RECORD_FIXED_BODY_BYTES, off + RECORD_HEADER_BYTES + getU32(m, off));
        if (records.length > 0 && payloadBytes + payload.length > maxBytes) return { records, maps };
        payloadBytes += payload.length;
        records.push({ index: seg.firstIndex + k, term: peekTerm(m, off), type: peekType(m, off), timestampMs: peekTimestamp(m, off), payload });
      }
      i = seg.firstIndex + kEnd;
    }
    return { records, maps };
  }

  /** Drops the mappings mappedEntries keeps (records handed out keep theirs alive). */
  endMapped(): void {
    this.mappedSegments.clear();
  }

  private mapChecked(seg: Segment, k0: number): Buffer | undefined {
    let u: Uint8Array;
    try {
      u = this.io.map(seg.path);
    } catch (e) {
      log().debug(`${seg.path}: not mapped (${(e as Error).message}); reading it instead`);
      return undefined;
    }
    const m = Buffer.from(u.buffer, u.byteOffset, u.length);
    if (m.length < seg.bytes) throw changedAfterValidation(seg, seg.firstIndex + seg.offsets.length - 1, m.length, "file shorter than validated");
    checkRecords(seg, k0, seg.offsets.length, m, 0, seg.bytes, !seg.checkedAtOpen);
    return m;
  }

  /**
   * Reads seg's records [k0, k1) with one read, into buf when it is big enough (else into a new
   * buffer), and checks each one's length, checksum and index against what recovery validated.
   * Returns the buffer; record k starts at seg.offsets.at(k) - seg.offsets.at(k0).
   */
  private readChecked(seg: Segment, k0: number, k1: number, buf: Buffer | null): Buffer {
    const start = seg.offsets.at(k0)!;
    const len = recordEnd(seg, k1 - 1) - start;
    // Uninitialized is safe: every record is checked against the bytes the read filled.
    if (buf === null || buf.length < len) buf = Buffer.allocUnsafe(len);
    const n = this.io.read(this.readFd(seg), buf, 0, len, start);
    if (n !== len) throw changedAfterValidation(seg, seg.firstIndex + k0, start + n, "short read");
    checkRecords(seg, k0, k1, buf, start, len, true);
    return buf;
  }

  *replay(from: number): Iterable<LogRecord> {
    let i = Math.max(from, this.firstIndex());
    while (i <= this.last) {
      const chunk = this.entries(i, this.last + 1, READ_CHUNK_BYTES);
      yield* chunk;
      i += chunk.length;
    }
  }

  private readFd(seg: Segment): number {
    if (seg.fd === undefined) seg.fd = this.openOrThrow("open", seg.path, () => this.io.openRead(seg.path));
    return seg.fd;
  }

  // ---------------------------------------------------------------- writes

  /**
   * Queues records for the writer. By default they are written at the end of this event-loop
   * turn, so appends from the same turn share a batch; `writeNow` is for a caller that already
   * batches per turn and is at its end (the write starts at once, still behind any fsyncs in flight).
   */
  append(records: readonly LogRecord[], writeNow = false): Promise<void> {
    if (this.failure) return Promise.reject(new WalFailedError(this.failure));
    assert(!this.closed, "append after close");
    assert(!this.exclusive, "append while truncateAfter/reset/close is running");
    if (records.length === 0) return Promise.resolve();
    checkContiguous(records, this.last, this.lastTermValue);
    const bytes = encodeRecords(records);
    for (let i = records.length - 1; i >= 0; i--) {
      const r = records[i]!;
      if (!isEntryType(r.type)) continue;
      this.last = r.index;
      this.lastTermValue = r.term;
      break;
    }
    const p = new Promise<void>((resolve, reject) => {
      this.queue.push({ records, bytes, resolve, reject });
    });
    this.tail = p.catch(() => {});
    if (writeNow) this.pump();
    else this.kick();
    return p;
  }

  /** Starts the writer at the end of this event-loop turn, so appends from the same turn share a batch. */
  private kick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      this.pump();
    });
  }

  /**
   * Writes everything queued as one batch and starts its fsync, while fewer than syncsInFlightMax
   * fsyncs are running; appends arriving meanwhile wait and form the next batch. Batches are
   * acknowledged strictly in log order, each after its own fsync (which also covers all earlier data).
   */
  private pump(): void {
    while (this.queue.length > 0 && !this.failure && !this.rollSyncing && (this.mode !== "always" || this.inflight.length < this.syncsInFlightMax)) {
      const fit = this.nextBatchLength();
      if (fit === 0) {
        this.syncBeforeRoll();
        return;
      }
      const batch = fit === this.queue.length ? this.queue : this.queue.slice(0, fit);
      this.queue = fit === this.queue.length ? [] : this.queue.slice(fit);
      let toSync: Segment[];
      try {
        toSync = this.writeBatch(batch);
      } catch (e) {
        this.fail(asIoError(e, "write", this.dir), batch);
        return;
      }
      if (this.mode !== "always") {
        this.ackBatch(batch);
        continue;
      }
      const entry = { batch, synced: false };
      this.inflight.push(entry);
      this.syncAll(toSync).then(
        () => {
          entry.synced = true;
          while (this.inflight.length > 0 && this.inflight[0]!.synced) this.ackBatch(this.inflight.shift()!.batch);
          this.pump();
        },
        (e) => this.fail(asIoError(e, "fsync", this.dir), batch),
      );
    }
  }

  /**
   * How many queued appends form the next batch: those that fit in the segment they go to, so a
   * batch never spans a roll (a roll inside one would have to sync the bytes just written on the
   * event loop). 0 when the next append starts a new segment and the active one is not yet
   * durable as it stands: syncBeforeRoll runs first.
   */
  private nextBatchLength(): number {
    const seg = this.segments[this.segments.length - 1];
    let bytes = 0;
    // The batch's first append goes into the segment whatever its size when the segment holds no
    // entry yet: a fresh one, or one holding only hard states (never rolled away from: the next
    // segment would take its name, and recovery refuses a segment without entries in the middle).
    let first = true;
    if (seg !== undefined && seg.offsets.length > 0) {
      // As writeBatch decides: switch to a ready spare at once, or roll when the next append does not fit.
      const rolls = startsEntries(this.queue[0]!) && ((this.spare?.ready === true && seg.allocated === 0) || seg.bytes + this.queue[0]!.bytes.length > this.segmentBytesMax);
      if (!rolls) {
        bytes = seg.bytes;
        first = false;
      } else if (seg.allocated > seg.bytes || seg.syncedBytes < seg.bytes) return 0;
    } else if (seg !== undefined) bytes = seg.bytes;
    let n = 0;
    // Appends holding hard states only never roll (they are small), so they always fit.
    while (n < this.queue.length && (first || bytes + this.queue[n]!.bytes.length <= this.segmentBytesMax || !startsEntries(this.queue[n]!))) {
      if (startsEntries(this.queue[n]!)) first = false;
      bytes += this.queue[n]!.bytes.length;
      n++;
    }
    return n;
  }


  /**
   * Makes the active segment durable as it stands (its unused preallocation cut, then fdatasync on
   * the threadpool) before anything goes to the next one, so that roll() has nothing left to sync.
   * Writes wait meanwhile; the event loop keeps serving. With --fsync no a whole segment can be
   * dirty at this point (64 MB): synced inline, it stalled every client for tens of milliseconds.
   */
  private syncBeforeRoll(): void {
    const seg = this.segments[this.segments.length - 1]!;
    let cut = false;
    if (seg.allocated > seg.bytes) {
      try {
        this.io.truncate(seg.fd!, seg.bytes);
      } catch (e) {
        this.fail(new StorageIoError("truncate", seg.path, e), []);
        return;
      }
      seg.allocated = 0;
      cut = true;
    }
    this.rollSyncing = true;
    this.syncSegment(seg, cut).then(
      () => {
        this.rollSyncing = false;
        this.pump();
      },
      (e) => {
        this.rollSyncing = false;
        this.fail(asIoError(e, "fsync", this.dir), []);
      },
    );
  }

  private async syncAll(segs: Segment[]): Promise<void> {
    for (const seg of segs) await this.syncSegment(seg);
  }

  private ackBatch(batch: PendingAppend[]): void {
    for (const a of batch) for (const r of a.records) if (isEntryType(r.type)) this.acked = r.index;
    for (const a of batch) a.resolve();
  }

  /** Writes a batch (one write(2) per segment touched), rolling segments; returns segments to fsync. */
  private writeBatch(batch: PendingAppend[]): Segment[] {
    const touched: Segment[] = [];
    let seg = this.activeSegment(batch[0]!.records[0]!.index);
    // A spare is ready and this segment was not preallocated (the first one, say): switch now
    // rather than when it is full, so fsyncs get cheaper early on a fresh node.
    if (this.spare?.ready && seg.allocated === 0 && seg.offsets.length > 0 && startsEntries(batch[0]!)) seg = this.roll(batch[0]!.records[0]!.index);
    let group: PendingAppend[] = [];
    let groupBytes = 0;
    for (const a of batch) {
      const holdsEntries = seg.offsets.length > 0 || group.some(startsEntries);
      if (holdsEntries && seg.bytes + groupBytes + a.bytes.length > this.segmentBytesMax && startsEntries(a)) {
        if (group.length > 0) this.writeGroup(seg, group, groupBytes);
        if (!touched.includes(seg)) touched.push(seg);
        seg = this.roll(a.records[0]!.index);
        group = [];
        groupBytes = 0;
      }
      group.push(a);
      groupBytes += a.bytes.length;
    }
    this.writeGroup(seg, group, groupBytes);
    if (!touched.includes(seg)) touched.push(seg);
    this.stats.batches++;
    return touched;
  }

  private writeGroup(seg: Segment, group: PendingAppend[], groupBytes: number): void {
    let buf: Uint8Array;
    if (group.length === 1) buf = group[0]!.bytes;
    else {
      buf = new Uint8Array(groupBytes);
      let off = 0;
      for (const a of group) {
        buf.set(a.bytes, off);
        off += a.bytes.length;
      }
    }
    try {
      // At seg.bytes: needed for a preallocated segment; an O_APPEND fd appends anyway.
      this.io.write(seg.fd!, buf, seg.bytes);
    } catch (e) {
      // Cut back a partial write so the file ends at a record boundary (best effort; recovery would too).
      try {
        this.io.truncate(seg.fd!, seg.bytes);
        seg.allocated = 0;
      } catch {}
      throw new StorageIoError("write", seg.path, e);
    }
    let off = seg.bytes;
    for (const a of group) {
      for (const r of a.records) {
        if (isEntryType(r.type)) {
          seg.offsets.push(off);
          seg.terms.push(r.term);
        } else {
          seg.lastHardState = off;
          this.hardState = { seg, offset: off, index: r.index, payload: r.payload };
        }
        off += recordBytes(r);
        this.stats.records++;
      }
    }
    seg.bytes = off;
    this.stats.bytes += groupBytes;
    if (this.preallocate && !this.spare && !this.spareFailed && seg.bytes > Math.min(this.segmentBytesMax / 2, SPARE_AFTER_BYTES)) this.prepareSpare();
    this.written = seg.firstIndex + seg.offsets.length - 1;
  }

  /** The segment appends go to, created (named by `nextIndex`) if there is none. */
  private activeSegment(nextIndex: number): Segment {
    const seg = this.segments[this.segments.length - 1];
    if (seg) return seg;
    return this.createSegment(nextIndex);
  }

  private roll(nextIndex: number): Segment {
    const old = this.segments[this.segments.length - 1]!;
    // Only the last segment may end in zeros or a torn record: before any record goes to the next
    // segment, the old one is durable as it stands, its unused preallocation cut. Else the new
    // segment's records could reach the disk first (its own fsync, writeback), and a power cut
    // would leave a damaged segment that is not the last, which recovery refuses. pump() sees to
    // it before the batch that rolls (syncBeforeRoll, on the threadpool; nextBatchLength keeps a
    // batch from spanning a roll), in every fsync mode: one fdatasync per segment.
    assert(old.allocated <= old.bytes && old.syncedBytes >= old.bytes, `roll past ${old.name} before it is durable as it stands`);
    old.writable = false; // fd stays open for reads and the pending fsync
    this.spareFailed = false; // a new segment: worth trying to preallocate again
    return this.createSegment(nextIndex);
  }

  /** Starts filling the spare file with zeros on the threadpool; a failure only costs speed. */
  private prepareSpare(): void {
    const spare = { path: join(this.dir, SPARE_NAME), bytes: this.segmentBytesMax, ready: false, done: Promise.resolve() };
    this.spare = spare;
    spare.done = this.io.preallocate(spare.path, spare.bytes).then(
      () => {
        if (this.spare === spare) spare.ready = true;
      },
      (e) => {
        if (this.spare !== spare) return;
        this.spare = undefined;
        this.spareFailed = true;
        log().warn(`could not preallocate the next WAL segment (${(e as Error).message}); continuing without`);
        try {
          this.io.unlink(spare.path);
        } catch {}
      },
    );
  }

  private createSegment(firstIndex: number): Segment {
    const name = segmentName(firstIndex);
    const path = join(this.dir, name);
    let fd: number;
    let allocated = 0;
    let renamed = false;
    try {
      const spare = this.spare;
      if (spare?.ready) {
        // The spare is zero-filled and fsynced: renaming it in is the whole cost of a new segment.
        this.spare = undefined;
        this.io.rename(spare.path, path);
        renamed = true;
        fd = this.io.openReadWrite(path);
        allocated = spare.bytes;
      } else {
        fd = this.io.openAppend(path);
      }
      this.io.fsyncDir(this.dir);
    } catch (e) {
      // Leave no file behind that is not in the log (it would read as a gap at the next start).
      if (renamed) {
        try {
          this.io.unlink(path);
        } catch {}
      }
      throw new StorageIoError("create", path, e);
    }
    const seg: Segment = { name, path, firstIndex, offsets: new NumList(), terms: new NumList(), bytes: 0, allocated, syncedBytes: 0, fd, writable: true, syncing: 0, checkedAtOpen: false, lastHardState: undefined };
    this.segments.push(seg);
    return seg;
  }

  private activate(seg: Segment): void {
    if (seg.writable) return;
    if (seg.fd !== undefined) this.io.close(seg.fd);
    seg.fd = this.openOrThrow("open", seg.path, () => (seg.allocated > seg.bytes ? this.io.openReadWrite(seg.path) : this.io.openAppend(seg.path)));
    seg.writable = true;
  }

  /** fdatasync of seg when it has unsynced bytes, or always with `force` (after a size change). */
  private async syncSegment(seg: Segment, force = false): Promise<void> {
    if ((!force && seg.syncedBytes === seg.bytes) || seg.fd === undefined) return;
    const target = seg.bytes;
    seg.syncing++;
    try {
      if (this.syncInline) this.io.datasyncSync(seg.fd!);
      else await this.io.datasync(seg.fd!);
      this.stats.fsyncs++;
    } catch (e) {
      throw new StorageIoError("fsync", seg.path, e);
    } finally {
      seg.syncing--;
      if (seg.dropped && seg.syncing === 0 && seg.fd !== undefined) {
        try {
          this.io.close(seg.fd);
        } catch {}
        seg.fd = undefined;
      }
    }
    seg.syncedBytes = Math.max(seg.syncedBytes, target);
  }

  private async backgroundSync(): Promise<void> {
    if (this.bgSyncing || this.failure || this.closed) return;
    this.bgSyncing = true;
    try {
      for (const seg of [...this.segments]) await this.syncSegment(seg);
    } catch (e) {
      this.fail(asIoError(e, "fsync", this.dir), []);
    } finally {
      this.bgSyncing = false;
    }
  }

  /**
   * A write or fsync failed: reject the batch and everything queued, forget what was not
   * acknowledged, and refuse writes from now on (see WalFailedError for why there is no retry).
   */
  private fail(err: StorageIoError, batch: PendingAppend[]): void {
    if (!this.failure) {
      this.failure = err;
      log().error(`write-ahead log failed: ${err.message}; refusing writes until restart`);
    }
    for (const a of batch) a.reject(err);
    // Later batches in flight are written already and must not be acknowledged past a failed one;
    // their bytes may be on disk, and the cut below may not remove them (an fsync still running on
    // the segment, or a cut that fails): their outcome is unknown too, like the failing batch's.
    // Only what was never written is refused.
    for (const f of this.inflight) if (f.batch !== batch) for (const a of f.batch) a.reject(err);
    this.inflight = [];
    for (const a of this.queue) a.reject(new WalFailedError(err));
    this.queue = [];
    // Best effort: cut the files back to what was acknowledged so the next start sees a clean end
    // (recovery would treat the rest as a torn tail anyway). Segments created by the failed batch go.
    this.forgetAfter(this.acked);
    let deleted = false;
    while (this.segments.length > 1 && this.segments[this.segments.length - 1]!.firstIndex > this.acked + 1) {
      const seg = this.segments.pop()!;
      try {
        // A file left here would start past a gap once the previous segment is cut back, and
        // the next start would refuse it. One with an fsync in flight is unlinked now; its fd
        // closes when the fsync returns.
        if (seg.syncing > 0) {
          seg.dropped = true;
          this.io.unlink(seg.path);
        } else this.deleteSegment(seg);
        deleted = true;
      } catch {}
    }
    if (deleted) {
      try {
        this.io.fsyncDir(this.dir);
      } catch {}
    }
    for (const seg of this.segments) {
      if (seg.fd === undefined || seg.syncing > 0) continue;
      if (seg.firstIndex + seg.offsets.length - 1 < this.acked) continue;
      try {
        if (this.io.fileSize(seg.fd) > seg.bytes) this.io.truncate(seg.fd, seg.bytes);
        seg.allocated = 0;
      } catch {}
    }
    this.last = this.written = this.acked;
    this.lastTermValue = this.termOf(this.last) ?? this.baseTerm ?? 0;
  }

  /** Drops in-memory index entries after `index` (files are handled by the caller). */
  private forgetAfter(index: number): void {
    for (const seg of this.segments) {
      const keep = Math.max(0, index - seg.firstIndex + 1);
      if (keep < seg.offsets.length) {
        seg.bytes = seg.offsets.at(keep)!;
        seg.syncedBytes = Math.min(seg.syncedBytes, seg.bytes);
        seg.offsets.length = keep;
        seg.terms.length = keep;
        this.dropHardStateFrom(seg, seg.bytes);
      }
    }
  }

  /** Forgets seg's hard-state records at or after byte `from` (cut off or deleted with it). */
  private dropHardStateFrom(seg: Segment, from: number): void {
    if (seg.lastHardState !== undefined && seg.lastHardState >= from) seg.lastHardState = undefined;
    if (this.hardState?.seg === seg && this.hardState.offset >= from) this.hardState = undefined;
  }

  /**
   * Resolves once no fdatasync is running: the everysec background one, a roll's, or a batch's
   * still running after a failure rejected it. Callers that then close, delete or reopen segment
   * files do so without yielding, so none can start in between.
   */
  private async syncsSettled(): Promise<void> {
    while (this.bgSyncing || this.rollSyncing || this.segments.some((seg) => seg.syncing > 0)) await new Promise((r) => setTimeout(r, 1));
  }

  /** Resolves when every append made so far has been written (and, in "always", synced) or rejected. */
  private async drained(): Promise<void> {
    let t: Promise<void>;
    do {
      t = this.tail;
      await t;
    } while (t !== this.tail);
  }

  async truncateAfter(index: number): Promise<void> {
    assert(index >= this.firstIndex() - 1, `truncateAfter(${index}) below the first index ${this.firstIndex()}`);
    if (index >= this.last) return;
    assert(!this.exclusive, "truncateAfter during another exclusive operation");
    this.exclusive = true;
    try {
      await this.drained();
      await this.syncsSettled();
      if (this.failure) throw new WalFailedError(this.failure);
      // Newest segments first, so a crash part-way leaves a prefix of the log, never a gap.
      let deleted = false;
      while (this.segments.length > 0 && this.segments[this.segments.length - 1]!.firstIndex > index) {
        const gone = this.segments.pop()!;
        this.dropHardStateFrom(gone, 0);
        this.deleteSegment(gone);
        deleted = true;
      }
      if (deleted) this.fsyncDirOrThrow();
      const seg = this.segments[this.segments.length - 1];
      if (seg) {
        const keep = index - seg.firstIndex + 1;
        this.activate(seg);
        if (keep < seg.offsets.length) {
          const newBytes = seg.offsets.at(keep)!;
          try {
            this.io.truncate(seg.fd!, newBytes);
            this.io.datasyncSync(seg.fd!);
          } catch (e) {
            throw new StorageIoError("truncate", seg.path, e);
          }
          seg.offsets.length = keep;
          seg.terms.length = keep;
          seg.bytes = seg.syncedBytes = newBytes;
          seg.allocated = 0;
          this.dropHardStateFrom(seg, newBytes);
        }
      }
      if (this.segments.length === 0) this.base = index;
      this.last = this.written = this.acked = index;
      this.lastTermValue = this.termOf(index) ?? this.baseTerm ?? 0;
    } finally {
      this.exclusive = false;
    }
  }

  async deleteThrough(index: number): Promise<void> {
    let deleted = 0;
    // Oldest first, so a crash part-way leaves a suffix; the last segment always stays (it holds lastIndex).
    while (this.segments.length > 1) {
      const seg = this.segments[0]!;
      const segLast = seg.firstIndex + seg.offsets.length - 1;
      if (segLast > index || seg.syncing > 0 || seg.writable) break;
      this.baseTerm = seg.terms.last();
      this.dropHardStateFrom(seg, 0);
      this.deleteSegment(seg);
      this.segments.shift();
      deleted++;
    }
    if (deleted > 0) {
      this.fsyncDirOrThrow();
      log().debug(`deleted ${deleted} segment(s) through index ${index}; log starts at ${this.firstIndex()}`);
    }
  }

  async reset(index: number, term: number): Promise<void> {
    assert(!this.exclusive, "reset during another exclusive operation");
    this.exclusive = true;
    try {
      await this.drained();
      await this.syncsSettled();
      if (this.failure) throw new WalFailedError(this.failure);
      while (this.segments.length > 0) this.deleteSegment(this.segments.pop()!);
      this.hardState = undefined;
      this.fsyncDirOrThrow();
      this.base = this.last = this.written = this.acked = index;
      this.lastTermValue = term;
      this.baseTerm = term;
    } finally {
      this.exclusive = false;
    }
  }

  private deleteSegment(seg: Segment): void {
    assert(seg.syncing === 0, "deleting a segment with an fsync in flight");
    if (seg.fd !== undefined) this.io.close(seg.fd);
    seg.fd = undefined;
    try {
      this.io.unlink(seg.path);
    } catch (e) {
      throw new StorageIoError("delete", seg.path, e);
    }
  }

  private fsyncDirOrThrow(): void {
    try {
      this.io.fsyncDir(this.dir);
    } catch (e) {
      throw new StorageIoError("fsync", this.dir, e);
    }
  }

  async sync(): Promise<void> {
    await this.drained();
    if (this.failure) throw new WalFailedError(this.failure);
    try {
      for (const seg of [...this.segments]) await this.syncSegment(seg);
    } catch (e) {
      const err = asIoError(e, "fsync", this.dir);
      this.fail(err, []);
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.exclusive = true;
    await this.drained();
    if (this.timer) clearInterval(this.timer);
    await this.spare?.done; // never rejects (failures are handled in prepareSpare)
    await this.syncsSettled();
    try {
      if (!this.failure) for (const seg of this.segments) await this.syncSegment(seg);
    } finally {
      for (const seg of this.segments) {
        if (seg.fd !== undefined) this.io.close(seg.fd);
        seg.fd = undefined;
      }
      this.closed = true;
    }
  }

  /** Total bytes in all segments (for "snapshot when the log passes N bytes"). */
  bytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.bytes;
    return n;
  }

  /** Segment file names, oldest first (tests, INFO). */
  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }
}

export function asIoError(e: unknown, op: "write" | "fsync", path: string): StorageIoError {
  if (e instanceof AssertionError) throw e; // a broken invariant crashes; it is no I/O error
  return e instanceof StorageIoError ? e : new StorageIoError(op, path, e);
}

/** Whether a queued append starts with an entry (else it holds hard state only, and never rolls a segment). */
function startsEntries(a: PendingAppend): boolean {
  return isEntryType(a.records[0]!.type);
}

/** Where record k of seg ends, hard-state records after it included (the next entry's offset, or the segment's end). */
function recordEnd(seg: Segment, k: number): number {
  return k + 1 < seg.offsets.length ? seg.offsets.at(k + 1)! : seg.bytes;
}

/** Records [k0, k1) of seg to read at once: at least one, at most up to kMax, within budget bytes. */
function chunkEnd(seg: Segment, k0: number, kMax: number, budget: number): number {
  const start = seg.offsets.at(k0)!;
  let k1 = k0 + 1;
  while (k1 < kMax && recordEnd(seg, k1) - start <= budget) k1++;
  return k1;
}

/**
 * Checks seg's records [k0, k1) in buf, which holds the file from offset `base` on (`len` bytes),
 * against what recovery validated: each record's length and index, and its checksum and type
 * when `checksums` (else only the length field). Throws changedAfterValidation at the first
 * record that differs.
 */
function checkRecords(seg: Segment, k0: number, k1: number, buf: Uint8Array, base: number, len: number, checksums: boolean): void {
  for (let k = k0; k < k1; k++) {
    const off = seg.offsets.at(k)! - base;
    const end = recordEnd(seg, k) - base;
    // A record ends where the next entry starts, or earlier when hard-state records follow it.
    const recEnd = checksums ? validRecordEnd(buf, off, len) : end - off >= RECORD_HEADER_BYTES ? off + RECORD_HEADER_BYTES + getU32(buf, off) : -1;
    const lengthOk = recEnd > off && recEnd <= end && isEntryType(buf[off + RECORD_HEADER_BYTES + 16]!);
    if (!lengthOk || peekIndex(buf, off) !== seg.firstIndex + k) {
      const kind = decodeAt(buf, off, len).kind;
      throw changedAfterValidation(seg, seg.firstIndex + k, base + off, kind === "ok" ? "wrong index or length" : kind);
    }
  }
}

function changedAfterValidation(seg: Segment, index: number, offset: number, what: string): CorruptLogError {
  return new CorruptLogError(
    `${WAL_DIR}/${seg.name}: record index ${index} at offset ${offset} no longer reads back intact (${what}); the file changed after it was validated. Restart kv to re-validate the log.`,
    seg.path,
    offset,
  );
}

/** scanSegmentWindowed over one segment file (undefined: not clean, read it whole). */
function scanWindowed(io: StorageIo, path: string, window: Uint8Array, name: string, first: number, prevTerm: number, structureOnly: boolean): WindowedScan | undefined {
  return withReadFd(io, path, (fd) => {
    const size = ioOrDataDirError(() => io.fileSize(fd), path);
    const read = (buf: Uint8Array, off: number, len: number, pos: number) => ioOrDataDirError(() => io.read(fd, buf, off, len, pos), path);
    return scanSegmentWindowed(read, size, window, name, first, prevTerm, structureOnly);
  });
}

/** The file's bytes, read into scratch.buf (grown when too small); valid until the next call. */
function readWhole(io: StorageIo, path: string, scratch: { buf: Uint8Array }): Uint8Array {
  return withReadFd(io, path, (fd) => {
    const size = ioOrDataDirError(() => io.fileSize(fd), path);
    if (scratch.buf.length < size) scratch.buf = new Uint8Array(size);
    const n = ioOrDataDirError(() => io.read(fd, scratch.buf, 0, size, 0), path);
    return scratch.buf.subarray(0, n);
  });
}

/** Opens path for reading, runs fn with the fd and closes it; a failed open is a DataDirError. */
function withReadFd<T>(io: StorageIo, path: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = io.openRead(path);
  } catch (e) {
    throw dataDirError(e, path, "open");
  }
  try {
    return fn(fd);
  } finally {
    io.close(fd);
  }
}

/** Runs one read of path; its failure becomes a DataDirError (a bug elsewhere stays what it is). */
function ioOrDataDirError<T>(op: () => T, path: string): T {
  try {
    return op();
  } catch (e) {
    throw dataDirError(e, path, "read");
  }
}

/**
 * Creates the dir, turning the usual failures into messages that say what to fix. A directory it
 * creates gets its entry in the parent fsynced (each level it made): else a power cut can take
 * the new dir, and the files fsynced into it since, away.
 */
export function openDataDir(io: StorageIo, dir: string): void {
  let first: string | undefined;
  try {
    first = io.mkdirp(dir);
  } catch (e) {
    throw dataDirError(e, dir, "create");
  }
  if (first === undefined) return;
  const top = resolve(first);
  for (let d = resolve(dir); d !== dirname(d); d = dirname(d)) {
    try {
      io.fsyncDir(dirname(d));
    } catch (e) {
      throw dataDirError(e, dirname(d), "fsync");
    }
    if (d === top) break;
  }
}

function probeWritable(io: StorageIo, dir: string): void {
  const probe = join(dir, ".write-probe");
  try {
    const fd = io.openAppend(probe);
    io.close(fd);
    io.unlink(probe);
  } catch (e) {
    throw dataDirError(e, dir, "create");
  }
}

export function dataDirError(e: unknown, path: string, op: string): Error {
  const code = (e as { code?: string })?.code;
  const hint: Record<string, string> = {
    EACCES: "permission denied: run kv as a user that can write there, or choose another --data-dir",
    EPERM: "operation not permitted: check the permissions and attributes of the data dir",
    EROFS: "the file system is read-only: remount it read-write or choose another --data-dir",
    ENOTDIR: "a path component is a file, not a directory: choose another --data-dir",
    EEXIST: "a file exists where a directory is needed: choose another --data-dir",
    ENOSPC: "the disk is full: free space or choose another --data-dir",
    EISDIR: "a directory is where a file should be: remove it or choose another --data-dir",
  };
  const why = (code && hint[code]) ?? (e as Error)?.message ?? String(e);
  return new DataDirError(`cannot ${op} ${path}: ${code ?? "error"}: ${why}`, path, e);
}
