// Snapshot files: streamed, checksummed, atomically renamed; load the newest valid one, else the previous.
//
// <dataDir>/snap/<last included index, 20 digits>.snap. Layout (little-endian):
//   header: magic "KVSNAP\0\0" | u32 version | u32 headerBytes | u64 lastIndex | u64 lastTerm
//           | u64 entries | u64 bodyBytes | u32 bodyCrc | u32 metaBytes
//           | (version 3:) u32 voterCount | u32 learnerCount | u64 id per voter, then per learner
//           | meta | u32 headerCrc32c
//   bodyCrc: versions 2 and 3 CRC-32 (IEEE, zlib's native one); version 1 CRC-32C (still read).
//   Version 3 (written now) adds the Raft membership as of lastIndex; versions 1 and 2 have none
//   (read as unknown).
//   body:   entries, each [u8 flags][u32 keyBytes][u32 valueBytes][u64 expireAtMs if flags&1]
//           [u64 rev if flags&2][key][value]
//   Version 4 (written now) adds rev, the key's revision (the log index of its last change);
//   older files have none (the state machine reads their keys as changed at the snapshot's index).
// Keys and values are byte strings (latin1: one char per byte).
import { basename, join } from "node:path";
import { CorruptLogError } from "../errors.ts";
import { logger } from "../log.ts";
import { crc32 as zlibCrc32 } from "node:zlib";
import { crc32c } from "./crc32c.ts";
import { StorageIoError } from "./errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { dataDirError, openDataDir } from "./wal.ts";

// Looked up per message: a consola child made by withTag keeps the level it was created with, so a
// module-level instance would ignore setLogLevel() called later.
const log = () => logger("storage");

export const SNAP_DIR = "snap";
export const SNAPSHOT_VERSION = 4;

/** Raft membership as of a snapshot's last index: voters and learners (disjoint, ids >= 1). */
export interface SnapshotMembership {
  readonly voters: readonly number[];
  readonly learners: readonly number[];
}
/** Members a header may list: far above any real cluster, low enough that a damaged count is caught. */
export const SNAPSHOT_MEMBERS_MAX = 4096;

/** A checksum over buf[start, end), continuing from crc (0 to begin). */
type BodyCrc = (buf: Uint8Array, start: number, end: number, crc: number) => number;
const bodyCrc32: BodyCrc = (buf, start, end, crc) => zlibCrc32(buf.subarray(start, end), crc);
/**
 * The body checksum of each format version. Version 2 uses CRC-32, which zlib computes natively
 * (about 10 ms for a 125 MB body here, against 75-180 ms for CRC-32C in JS); the rest of the
 * format is unchanged, so version 1 files (CRC-32C) are still read.
 */
function bodyCrcFor(version: number): BodyCrc {
  return version === 1 ? crc32c : bodyCrc32;
}
/** The body checksum a reader must find, and how to compute it. */
interface Expect {
  crc: number;
  fn: BodyCrc;
}
const MAGIC = [0x4b, 0x56, 0x53, 0x4e, 0x41, 0x50, 0, 0]; // "KVSNAP\0\0"
/** Bytes read first for a header; a longer one (up to SNAPSHOT_HEADER_BYTES_MAX) is then read whole. */
const HEADER_READ_BYTES = 64 * 1024;
/** Longest header read: its meta may hold the ACL users (src/node/snapshot-meta.ts, ACL_STATE_BYTES_MAX). */
export const SNAPSHOT_HEADER_BYTES_MAX = 16 * 1024 * 1024;
const HEADER_FIXED_BYTES = 60; // up to and including metaBytes, plus the trailing header CRC
const SNAP_RE = /^(\d{20})\.snap$/;
/** Appended to a snapshot found corrupt at startup: kept for inspection, no longer a snapshot. */
const CORRUPT_SUFFIX = ".corrupt";
/** Body write unit: small enough that CRC + write(2) of one chunk stay well under a millisecond. */
const CHUNK_BYTES = 256 * 1024;
const FLAG_EXPIRE = 1;
const FLAG_REV = 2;
const TWO_32 = 2 ** 32;

/**
 * An absolute expiry in unix ms, up to 2^63 - 1: a number while a safe integer, a bigint beyond
 * (kv's Db keeps them so; the file holds a u64 either way).
 */
export type ExpiryMs = number | bigint;

/**
 * [key, value, expireAtMs, rev]: key and value are byte strings (latin1), expiry absolute ms or
 * undefined, rev the key's revision (a safe integer; undefined in files before version 4).
 */
export type SnapshotEntry = readonly [key: string, value: string, expireAtMs: ExpiryMs | undefined, rev?: number];

/**
 * A source read in chunks, like kv's copy-on-write `DbSnapshot`: next(n) gives up to n entries, or
 * null at the end. The writer pulls a chunk, encodes it, and yields to the event loop as needed.
 */
export interface SnapshotChunkSource {
  next(maxEntries: number): readonly SnapshotEntry[] | null;
}

export type SnapshotSource = Iterable<SnapshotEntry> | AsyncIterable<SnapshotEntry> | SnapshotChunkSource;

/** Entries pulled from a chunk source at a time. */
const SOURCE_CHUNK_ENTRIES = 256;

export interface SnapshotInfo {
  file: string;
  lastIndex: number;
  lastTerm: number;
  entryCount: number;
  bodyBytes: number;
  /** Opaque bytes stored with the snapshot (the state machine's own metadata). */
  meta: Uint8Array;
  /** Raft membership as of lastIndex (format version 3); undefined for older files: unknown. */
  membership: SnapshotMembership | undefined;
}

export interface LoadedSnapshot extends SnapshotInfo {
  /** Streams the entries (checking the body's checksum as it goes unless it was checked already). */
  entries(): Iterable<SnapshotEntry>;
  /** Same as entries() without a generator and a tuple per entry: the fast path for restore. */
  forEach(fn: (key: string, value: string, expireAtMs: ExpiryMs | undefined, rev: number | undefined) => void): void;
  /**
   * Restore without copying values: the file mapped into memory, each entry given as its key
   * and a ref to its value. Undefined when the file cannot be mapped (then use forEach).
   */
  mapped(): MappedSnapshot | undefined;
  /** True once the body's checksum is known good (always, unless loaded with checkBodyWhileReading). */
  readonly bodyVerified: boolean;
  /** Checks the body's checksum now if it was not yet; throws CorruptLogError when bad. */
  verifyBody(): void;
}

/** A snapshot file mapped into memory (LoadedSnapshot.mapped). */
export interface MappedSnapshot {
  /** The value a ref stands for; holding this object keeps the mapping alive. */
  readonly values: { value(ref: number): string };
  /**
   * Each entry in order as key, value ref, expiry; checks the body's checksum as forEach does
   * (a bad one throws CorruptLogError at the end, after every entry was passed on).
   */
  forEach(fn: (key: string, ref: number, expireAtMs: ExpiryMs | undefined, rev: number | undefined) => void): void;
}

export interface SnapshotWriteOptions {
  lastIndex: number;
  lastTerm: number;
  meta?: Uint8Array;
  /** Raft membership as of lastIndex (empty when not given). */
  membership?: SnapshotMembership;
  /** Yield to the event loop when this much time passed since the last yield. */
  yieldEveryMs?: number;
}

export interface SnapshotWriteResult extends SnapshotInfo {
  /** Longest run of body encoding without yielding to the event loop. */
  longestSliceMs: number;
  durationMs: number;
}

export function snapshotName(lastIndex: number): string {
  return `${String(lastIndex).padStart(20, "0")}.snap`;
}

/** A snapshot write was started while another one is running (Redis: "Background save already in progress"). */
export class SnapshotInProgressError extends Error {
  override name = "SnapshotInProgressError";
}

export class SnapshotStore {
  readonly dir: string;
  private writing = false;
  /** Snapshots found corrupt by this process (names): never listed, so never the fallback. */
  private readonly bad = new Set<string>();
  private constructor(
    dataDir: string,
    private readonly io: StorageIo,
  ) {
    this.dir = join(dataDir, SNAP_DIR);
  }

  /** Creates dataDir/snap if needed and removes temp files left by a crash during a write. */
  static open(dataDir: string, io: StorageIo = nodeIo): SnapshotStore {
    const s = new SnapshotStore(dataDir, io);
    openDataDir(io, s.dir);
    let removed = false;
    for (const name of io.readdir(s.dir)) {
      if (name.endsWith(".tmp")) {
        try {
          io.unlink(join(s.dir, name));
          removed = true;
        } catch (e) {
          throw dataDirError(e, join(s.dir, name), "delete");
        }
      }
    }
    if (removed) io.fsyncDir(s.dir);
    return s;
  }

  /** Snapshot files, newest first, by the index in their names (not validated; ones found corrupt left out). */
  list(): { name: string; lastIndex: number }[] {
    return this.io
      .readdir(this.dir)
      .map((name) => ({ name, m: SNAP_RE.exec(name) }))
      .filter((x) => x.m && !this.bad.has(x.name))
      .map((x) => ({ name: x.name, lastIndex: Number(x.m![1]) }))
      .sort((a, b) => b.lastIndex - a.lastIndex);
  }

  /**
   * The WAL may be deleted through this index and a corrupt newest snapshot still be survivable:
   * the previous snapshot's index (0 when there is only one, so the whole log is kept).
   */
  compactableThrough(): number {
    return this.list()[1]?.lastIndex ?? 0;
  }

  /**
   * Writes a snapshot from `entries` without holding the keyspace in one buffer: 256 KiB chunks,
   * yielding to the event loop every `yieldEveryMs`. The entries must be a consistent view as of
   * lastIndex (the caller's job). temp file -> fdatasync -> rename -> fsync dir; then older
   * snapshots except the previous one are deleted.
   */
  async write(opts: SnapshotWriteOptions, entries: SnapshotSource): Promise<SnapshotWriteResult> {
    if (this.writing) throw new SnapshotInProgressError("a snapshot is already being written");
    this.writing = true;
    try {
      return await this.writeOne(opts, entries);
    } finally {
      this.writing = false;
    }
  }

  /** True while write() runs. */
  get inProgress(): boolean {
    return this.writing;
  }

  private async writeOne(opts: SnapshotWriteOptions, entries: SnapshotSource): Promise<SnapshotWriteResult> {
    const t0 = performance.now();
    const io = this.io;
    const name = snapshotName(opts.lastIndex);
    const path = join(this.dir, name);
    const tmp = `${path}.tmp`;
    const meta = opts.meta ?? new Uint8Array(0);
    const yieldEveryMs = opts.yieldEveryMs ?? 2;
    let fd: number;
    try {
      fd = io.openWrite(tmp);
    } catch (e) {
      throw new StorageIoError("create", tmp, e);
    }
    let ok = false;
    let longestSliceMs = 0;
    try {
      const membership = opts.membership ?? { voters: [], learners: [] };
      const headerBytes = headerBytesFor(membership, meta);
      let pos = headerBytes;
      let crc = 0;
      let count = 0;
      let chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      let used = 0;
      const flush = () => {
        if (used === 0) return;
        crc = bodyCrc32(chunk, 0, used, crc);
        writeAt(io, fd, chunk.subarray(0, used), pos, tmp);
        pos += used;
        used = 0;
      };
      let sliceStart = performance.now();
      const maybeYield = async () => {
        const now = performance.now();
        if (now - sliceStart < yieldEveryMs) return;
        longestSliceMs = Math.max(longestSliceMs, now - sliceStart);
        await new Promise<void>((r) => setImmediate(r));
        sliceStart = performance.now();
      };
      const put = (key: string, value: string, expireAtMs: ExpiryMs | undefined, rev: number | undefined): void => {
        const need = 9 + (expireAtMs === undefined ? 0 : 8) + (rev === undefined ? 0 : 8) + key.length + value.length;
        if (used + need > chunk.length) {
          flush();
          if (need > chunk.length) chunk = Buffer.allocUnsafe(need);
        }
        let o = used;
        chunk[o] = (expireAtMs === undefined ? 0 : FLAG_EXPIRE) | (rev === undefined ? 0 : FLAG_REV);
        chunk.writeUInt32LE(key.length, o + 1);
        chunk.writeUInt32LE(value.length, o + 5);
        o += 9;
        if (typeof expireAtMs === "bigint") {
          chunk.writeBigUInt64LE(expireAtMs, o);
          o += 8;
        } else if (expireAtMs !== undefined) {
          chunk.writeUInt32LE(expireAtMs % TWO_32, o);
          chunk.writeUInt32LE(Math.floor(expireAtMs / TWO_32), o + 4);
          o += 8;
        }
        if (rev !== undefined) {
          chunk.writeUInt32LE(rev % TWO_32, o);
          chunk.writeUInt32LE(Math.floor(rev / TWO_32), o + 4);
          o += 8;
        }
        o += chunk.latin1Write(key, o, key.length);
        o += chunk.latin1Write(value, o, value.length);
        used = o;
        count++;
      };
      if (!(Symbol.iterator in entries) && !(Symbol.asyncIterator in entries)) {
        // Chunk source (kv's DbSnapshot): no generator, no promise per entry.
        const src = entries as SnapshotChunkSource;
        for (let chunk = src.next(SOURCE_CHUNK_ENTRIES); chunk !== null; chunk = src.next(SOURCE_CHUNK_ENTRIES)) {
          for (const e of chunk) put(e[0], e[1], e[2], e[3]);
          await maybeYield();
        }
      } else if (Symbol.iterator in entries) {
        // Sync iterator: a plain loop (no promise per entry), awaiting only to yield.
        for (const [key, value, expireAtMs, rev] of entries) {
          put(key, value, expireAtMs, rev);
          if ((count & 63) === 0) await maybeYield();
        }
      } else {
        for await (const [key, value, expireAtMs, rev] of entries) {
          put(key, value, expireAtMs, rev);
          if ((count & 63) === 0) await maybeYield();
        }
      }
      flush();
      longestSliceMs = Math.max(longestSliceMs, performance.now() - sliceStart);
      const bodyBytes = pos - headerBytes;
      const header = encodeHeader({ lastIndex: opts.lastIndex, lastTerm: opts.lastTerm, entryCount: count, bodyBytes, bodyCrc: crc, meta, membership });
      writeAt(io, fd, header, 0, tmp);
      try {
        await io.datasync(fd);
      } catch (e) {
        throw new StorageIoError("fsync", tmp, e);
      }
      io.close(fd);
      fd = -1;
      try {
        io.rename(tmp, path);
        await io.fsyncDirAsync(this.dir);
      } catch (e) {
        throw new StorageIoError("rename", path, e);
      }
      ok = true;
      await this.prune();
      const durationMs = performance.now() - t0;
      log().info(`snapshot ${SNAP_DIR}/${name}: ${count} keys, ${bodyBytes} bytes in ${durationMs.toFixed(0)} ms (longest slice ${longestSliceMs.toFixed(1)} ms)`);
      return { file: path, lastIndex: opts.lastIndex, lastTerm: opts.lastTerm, entryCount: count, bodyBytes, meta, membership, longestSliceMs, durationMs };
    } finally {
      if (fd >= 0) {
        try {
          io.close(fd);
        } catch {}
      }
      if (!ok) {
        try {
          io.unlink(tmp);
        } catch {}
      }
    }
  }

  /** Keeps the newest two snapshots (the new one and the fallback); also after one received from a leader is in place. */
  async prune(): Promise<void> {
    const all = this.list();
    let deleted = false;
    for (const s of all.slice(2)) {
      try {
        await this.io.unlinkAsync(join(this.dir, s.name));
        deleted = true;
      } catch (e) {
        log().warn(`could not delete old snapshot ${s.name}: ${(e as Error).message}`);
      }
    }
    if (deleted) await this.io.fsyncDirAsync(this.dir);
  }

  /**
   * The newest snapshot whose header and body checksums are good. A corrupt newer one is skipped
   * with a warning (the caller then replays the log from the older one's index, which compaction
   * keeps: see compactableThrough). Undefined when there is no valid snapshot.
   */
  loadNewest(opts: { checkBodyWhileReading?: boolean; skip?: ReadonlySet<string> } = {}): LoadedSnapshot | undefined {
    for (const { name } of this.list()) {
      const path = join(this.dir, name);
      if (opts.skip?.has(path)) {
        this.setAside(name);
        continue;
      }
      try {
        return this.load(path, opts);
      } catch (e) {
        if (!(e instanceof CorruptLogError)) throw e;
        warnUnusableSnapshot(path, e);
        this.setAside(name);
      }
    }
    return undefined;
  }

  /**
   * Takes a snapshot found corrupt out of the set: renamed to NAME.corrupt (kept for inspection)
   * and, whether or not that works, left out of list(). Else it would count as one of the two
   * snapshots kept: the next snapshot would delete the good one it fell back to, and the log
   * would be compacted through the corrupt one's index, leaving no fallback.
   */
  private setAside(name: string): void {
    this.bad.add(name);
    const path = join(this.dir, name);
    try {
      this.io.rename(path, path + CORRUPT_SUFFIX);
      this.io.fsyncDir(this.dir);
      log().warn(`${SNAP_DIR}/${name} renamed to ${name}${CORRUPT_SUFFIX}; delete it once inspected`);
    } catch (e) {
      log().warn(`could not rename the unusable ${SNAP_DIR}/${name} (${(e as Error).message}); it is ignored`);
    }
  }

  /**
   * Validates one snapshot file (header, size, body checksum); throws CorruptLogError if bad.
   * With `checkBodyWhileReading` the body's checksum is not read up front: entries()/forEach
   * check it as they stream the body and throw CorruptLogError at its end when it is bad (so the
   * caller must be able to discard what it loaded), and verifyBody() checks it on demand.
   */
  load(path: string, opts: { checkBodyWhileReading?: boolean } = {}): LoadedSnapshot {
    const io = this.io;
    let fd: number;
    try {
      fd = io.openRead(path);
    } catch (e) {
      throw dataDirError(e, path, "open");
    }
    let info: SnapshotInfo & { headerBytes: number; bodyCrc: number; version: number };
    try {
      const size = io.fileSize(fd);
      let head = new Uint8Array(Math.min(size, HEADER_READ_BYTES));
      io.read(fd, head, 0, head.length, 0);
      // A longer header (a meta with many ACL users) is read whole; decodeHeader checks the rest.
      const declared = head.length >= 16 ? new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(12, true) : 0;
      if (declared > head.length && declared <= Math.min(size, SNAPSHOT_HEADER_BYTES_MAX)) {
        head = new Uint8Array(declared);
        io.read(fd, head, 0, head.length, 0);
      }
      info = { file: path, ...decodeHeader(head, path) };
      if (size !== info.headerBytes + info.bodyBytes) {
        throw new CorruptLogError(`${path}: file is ${size} bytes, header says ${info.headerBytes + info.bodyBytes}`, path, size);
      }
      if (!opts.checkBodyWhileReading) checkBody(io, fd, path, info.headerBytes, size, { crc: info.bodyCrc, fn: bodyCrcFor(info.version) });
    } finally {
      io.close(fd);
    }
    const { headerBytes, bodyCrc, version, ...pub } = info;
    const count = info.entryCount;
    let verified = !opts.checkBodyWhileReading;
    const want: Expect = { crc: bodyCrc, fn: bodyCrcFor(version) };
    const expect = () => (verified ? undefined : want);
    return {
      ...pub,
      get bodyVerified() {
        return verified;
      },
      verifyBody: () => {
        if (verified) return;
        const vfd = io.openRead(path);
        try {
          checkBody(io, vfd, path, headerBytes, headerBytes + info.bodyBytes, want);
        } finally {
          io.close(vfd);
        }
        verified = true;
      },
      entries: () => readEntries(io, path, headerBytes, info.bodyBytes, count, expect()),
      forEach: (fn) => {
        for (const batch of readBatches(io, path, headerBytes, info.bodyBytes, count, fn, expect())) void batch;
        verified = true;
      },
      mapped: () => {
        let m: Uint8Array;
        try {
          m = io.map(path);
        } catch (e) {
          log().debug(`${path}: not mapped (${(e as Error).message}); reading it instead`);
          return undefined;
        }
        if (m.length !== headerBytes + info.bodyBytes) return undefined; // changed since load(): forEach reports it
        const buf = Buffer.from(m.buffer, m.byteOffset, m.length);
        return {
          values: { value: (ref) => entryValue(buf, ref) }, // ref: the entry's offset
          forEach: (fn) => {
            forEachMapped(buf, path, headerBytes, info.bodyBytes, count, fn, expect());
            verified = true;
          },
        };
      },
    };
  }
}

/** The warning for a snapshot passed over (its damage is in the error's message). */
export function warnUnusableSnapshot(path: string, e: Error): void {
  log().warn(`${SNAP_DIR}/${basename(path)} is unusable (${e.message}); falling back to an older snapshot`);
}

/** Reads the body [from, to) of an open snapshot and throws CorruptLogError unless its checksum is as expected. */
function checkBody(io: StorageIo, fd: number, path: string, from: number, to: number, want: Expect): void {
  let crc = 0;
  const buf = new Uint8Array(16 * CHUNK_BYTES);
  for (let pos = from; pos < to; ) {
    const n = io.read(fd, buf, 0, Math.min(buf.length, to - pos), pos);
    if (n === 0) throw new CorruptLogError(`${path}: short read at ${pos}`, path, pos);
    crc = want.fn(buf, 0, n, crc);
    pos += n;
  }
  if (crc !== want.crc) throw bodyChecksumError(path, want.crc, crc, from);
}

function bodyChecksumError(path: string, stored: number, computed: number, offset: number): CorruptLogError {
  return new CorruptLogError(`${path}: body checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`, path, offset);
}

function writeAt(io: StorageIo, fd: number, buf: Uint8Array, pos: number, path: string): void {
  try {
    io.write(fd, buf, pos);
  } catch (e) {
    throw new StorageIoError("write", path, e);
  }
}

interface HeaderFields {
  lastIndex: number;
  lastTerm: number;
  entryCount: number;
  bodyBytes: number;
  bodyCrc: number;
  meta: Uint8Array;
  /** Written in version 3; undefined when decoding an older file. */
  membership: SnapshotMembership | undefined;
}
interface DecodedHeader extends HeaderFields {
  headerBytes: number;
  version: number;
}

/** Version 3's header size: the fixed fields, the two member counts and ids, the meta. */
function headerBytesFor(m: SnapshotMembership, meta: Uint8Array): number {
  return HEADER_FIXED_BYTES + 8 + 8 * (m.voters.length + m.learners.length) + meta.length;
}

/** Throws RangeError for a membership that cannot be written (the caller's bug, not damage). */
function checkMembership(m: SnapshotMembership): void {
  if (m.voters.length + m.learners.length > SNAPSHOT_MEMBERS_MAX) throw new RangeError(`a snapshot header lists at most ${SNAPSHOT_MEMBERS_MAX} members`);
  const seen = new Set<number>();
  for (const id of [...m.voters, ...m.learners]) {
    if (!Number.isSafeInteger(id) || id < 1) throw new RangeError(`member id ${id} is not a positive integer`);
    if (seen.has(id)) throw new RangeError(`member ${id} is listed twice`);
    seen.add(id);
  }
}

function setU64(dv: DataView, off: number, n: number): void {
  dv.setUint32(off, n % TWO_32, true);
  dv.setUint32(off + 4, Math.floor(n / TWO_32), true);
}
function getU64(dv: DataView, off: number): number {
  return dv.getUint32(off + 4, true) * TWO_32 + dv.getUint32(off, true);
}

export function encodeHeader(h: Omit<HeaderFields, "membership"> & { membership?: SnapshotMembership }): Uint8Array {
  const membership = h.membership ?? { voters: [], learners: [] };
  checkMembership(membership);
  const headerBytes = headerBytesFor(membership, h.meta);
  const out = new Uint8Array(headerBytes);
  const dv = new DataView(out.buffer);
  out.set(MAGIC, 0);
  dv.setUint32(8, SNAPSHOT_VERSION, true);
  dv.setUint32(12, headerBytes, true);
  setU64(dv, 16, h.lastIndex);
  setU64(dv, 24, h.lastTerm);
  setU64(dv, 32, h.entryCount);
  setU64(dv, 40, h.bodyBytes);
  dv.setUint32(48, h.bodyCrc, true);
  dv.setUint32(52, h.meta.length, true);
  dv.setUint32(56, membership.voters.length, true);
  dv.setUint32(60, membership.learners.length, true);
  let o = 64;
  for (const id of [...membership.voters, ...membership.learners]) {
    setU64(dv, o, id);
    o += 8;
  }
  out.set(h.meta, o);
  dv.setUint32(headerBytes - 4, crc32c(out, 0, headerBytes - 4), true);
  return out;
}

function decodeHeader(b: Uint8Array, path: string): DecodedHeader {
  const bad = (why: string, off: number) => new CorruptLogError(`${path}: ${why}`, path, off);
  if (b.length < HEADER_FIXED_BYTES) throw bad(`too short for a snapshot header (${b.length} bytes)`, 0);
  for (let i = 0; i < MAGIC.length; i++) if (b[i] !== MAGIC[i]) throw bad("not a kv snapshot (bad magic)", 0);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version = dv.getUint32(8, true);
  if (version < 1 || version > SNAPSHOT_VERSION) throw bad(`snapshot format version ${version}, this kv reads 1 to ${SNAPSHOT_VERSION}`, 8);
  const headerBytes = dv.getUint32(12, true);
  const metaBytes = dv.getUint32(52, true);
  // Version 3 lists the members between metaBytes and meta; their count is checked before the
  // header checksum is, so a damaged count is refused without reading past the header.
  let metaAt = 56;
  let counts: [number, number] = [0, 0];
  if (version >= 3) {
    if (b.length < HEADER_FIXED_BYTES + 8) throw bad(`too short for a version 3 snapshot header (${b.length} bytes)`, 0);
    counts = [dv.getUint32(56, true), dv.getUint32(60, true)];
    if (counts[0] + counts[1] > SNAPSHOT_MEMBERS_MAX) throw bad(`member counts ${counts[0]} + ${counts[1]} exceed ${SNAPSHOT_MEMBERS_MAX}`, 56);
    metaAt = 64 + 8 * (counts[0] + counts[1]);
  }
  if (headerBytes !== metaAt + metaBytes + 4 || headerBytes > b.length) throw bad(`bad header length ${headerBytes}`, 12);
  const stored = dv.getUint32(headerBytes - 4, true);
  const computed = crc32c(b, 0, headerBytes - 4);
  if (stored !== computed) throw bad(`header checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`, headerBytes - 4);
  let membership: SnapshotMembership | undefined;
  if (version >= 3) {
    const ids: number[] = [];
    for (let o = 64; o < metaAt; o += 8) {
      // A good checksum over a bad id is a writer's bug or a forged file: refused, never read as 0.
      const hi = dv.getUint32(o + 4, true);
      const id = hi * TWO_32 + dv.getUint32(o, true);
      if (hi >= 2 ** 21 || id < 1) throw bad(`member id at offset ${o} is not a positive integer`, o);
      if (ids.includes(id)) throw bad(`member ${id} is listed twice`, o);
      ids.push(id);
    }
    membership = { voters: ids.slice(0, counts[0]), learners: ids.slice(counts[0]) };
  }
  return {
    membership,
    headerBytes,
    version,
    lastIndex: getU64(dv, 16),
    lastTerm: getU64(dv, 24),
    entryCount: getU64(dv, 32),
    bodyBytes: getU64(dv, 40),
    bodyCrc: dv.getUint32(48, true),
    meta: b.slice(metaAt, metaAt + metaBytes),
  };
}

function* readEntries(io: StorageIo, path: string, start: number, bodyBytes: number, count: number, expectCrc?: Expect): Generator<SnapshotEntry> {
  let pending: SnapshotEntry[] = [];
  for (const _ of readBatches(io, path, start, bodyBytes, count, (k, v, e, r) => pending.push([k, v, e, r]), expectCrc)) {
    const out = pending;
    pending = [];
    yield* out;
  }
}

/** Checksummed at a time while a mapped body is parsed (so the bytes are still in cache). */
const MAPPED_CRC_STEP = 1024 * 1024;

// An entry at p: [u8 flags][u32 keyBytes][u32 valueBytes][u64 expireAtMs if flags & 1][u64 rev if flags & 2][key][value].
// entryBytes needs only the first ENTRY_HEAD_BYTES; the others need the whole entry in buf.
const ENTRY_HEAD_BYTES = 9;
/** The whole entry's size. */
function entryBytes(buf: Buffer, p: number): number {
  return ENTRY_HEAD_BYTES + (buf[p]! & FLAG_EXPIRE ? 8 : 0) + (buf[p]! & FLAG_REV ? 8 : 0) + buf.readUInt32LE(p + 1) + buf.readUInt32LE(p + 5);
}
/** Where the entry's key starts (its value follows it). */
function entryKeyAt(buf: Buffer, p: number): number {
  return p + ENTRY_HEAD_BYTES + (buf[p]! & FLAG_EXPIRE ? 8 : 0) + (buf[p]! & FLAG_REV ? 8 : 0);
}
/** The entry's revision; undefined when it has none (files before version 4). */
function entryRev(buf: Buffer, p: number): number | undefined {
  if (!(buf[p]! & FLAG_REV)) return undefined;
  const at = p + ENTRY_HEAD_BYTES + (buf[p]! & FLAG_EXPIRE ? 8 : 0);
  const hi = buf.readUInt32LE(at + 4);
  if (hi >= EXPIRY_HI_SAFE) throw new CorruptLogError(`snapshot entry revision past 2^53`, "", at);
  return hi * TWO_32 + buf.readUInt32LE(at);
}
/** Past this high word the u64 is above 2^53: read as a bigint to stay exact. */
const EXPIRY_HI_SAFE = 2 ** 21;
function entryExpiry(buf: Buffer, p: number): ExpiryMs | undefined {
  if (!(buf[p]! & FLAG_EXPIRE)) return undefined;
  const hi = buf.readUInt32LE(p + ENTRY_HEAD_BYTES + 4);
  if (hi >= EXPIRY_HI_SAFE) return buf.readBigUInt64LE(p + ENTRY_HEAD_BYTES);
  return hi * TWO_32 + buf.readUInt32LE(p + ENTRY_HEAD_BYTES);
}
function entryKey(buf: Buffer, p: number): string {
  const k = entryKeyAt(buf, p);
  return buf.latin1Slice(k, k + buf.readUInt32LE(p + 1));
}
function entryValue(buf: Buffer, p: number): string {
  const v = entryKeyAt(buf, p) + buf.readUInt32LE(p + 1);
  return buf.latin1Slice(v, v + buf.readUInt32LE(p + 5));
}


/** readBatches over a mapped file: fn gets each entry's offset in the file as its value ref. */
function forEachMapped(
  buf: Buffer,
  path: string,
  start: number,
  bodyBytes: number,
  count: number,
  fn: (key: string, ref: number, expireAtMs: ExpiryMs | undefined, rev: number | undefined) => void,
  expectCrc: Expect | undefined,
): void {
  const end = start + bodyBytes;
  let crc = 0;
  let crcPos = start; // body bytes before this are in crc
  let p = start;
  for (let i = 0; i < count; i++) {
    if (end - p < ENTRY_HEAD_BYTES) throw new CorruptLogError(`${path}: body ends inside an entry`, path, p);
    const need = entryBytes(buf, p);
    // Lengths come from bytes not yet checked (expectCrc): never read past the body.
    if (need > end - p) throw new CorruptLogError(`${path}: an entry runs past the end of the body`, path, p);
    if (expectCrc !== undefined && p + need > crcPos) {
      const to = Math.min(end, Math.max(p + need, crcPos + MAPPED_CRC_STEP));
      crc = expectCrc.fn(buf, crcPos, to, crc);
      crcPos = to;
    }
    fn(entryKey(buf, p), p, entryExpiry(buf, p), entryRev(buf, p));
    p += need;
  }
  if (expectCrc !== undefined) {
    if (crcPos < end) crc = expectCrc.fn(buf, crcPos, end, crc);
    if (crc !== expectCrc.crc) throw bodyChecksumError(path, expectCrc.crc, crc, start);
  }
  if (p !== end) throw new CorruptLogError(`${path}: ${end - p} bytes after the last entry`, path, p);
}

/** Parses the body chunk by chunk, calling fn per entry and yielding after each chunk. */
function* readBatches(
  io: StorageIo,
  path: string,
  start: number,
  bodyBytes: number,
  count: number,
  fn: (key: string, value: string, expireAtMs: ExpiryMs | undefined, rev: number | undefined) => void,
  expectCrc?: Expect,
): Generator<void> {
  const fd = io.openRead(path);
  try {
    const end = start + bodyBytes;
    let crc = 0; // over every body byte read, when expectCrc is given
    let buf = Buffer.allocUnsafe(16 * CHUNK_BYTES);
    let have = 0; // valid bytes in buf
    let p = 0; // parse position in buf
    let filePos = start;
    const fill = (need: number): void => {
      const rest = have - p;
      // Lengths come from bytes not yet checked (expectCrc): never allocate past the body.
      if (need > rest + (end - filePos)) throw new CorruptLogError(`${path}: an entry runs past the end of the body`, path, filePos);
      if (need > buf.length) {
        const bigger = Buffer.allocUnsafe(need);
        buf.copy(bigger, 0, p, have);
        buf = bigger;
      } else buf.copy(buf, 0, p, have);
      have = rest;
      p = 0;
      while (have < need && filePos < end) {
        const n = io.read(fd, buf, have, Math.min(buf.length - have, end - filePos), filePos);
        if (n === 0) break;
        if (expectCrc !== undefined) crc = expectCrc.fn(buf, have, have + n, crc);
        have += n;
        filePos += n;
      }
      if (have < need) throw new CorruptLogError(`${path}: body ends inside an entry`, path, filePos);
    };
    for (let i = 0; i < count; i++) {
      if (have - p < ENTRY_HEAD_BYTES) {
        yield;
        fill(ENTRY_HEAD_BYTES);
      }
      const need = entryBytes(buf, p);
      if (have - p < need) {
        yield;
        fill(need);
      }
      fn(entryKey(buf, p), entryValue(buf, p), entryExpiry(buf, p), entryRev(buf, p));
      p += need;
    }
    yield;
    const leftover = end - filePos + have - p; // body bytes after the last entry (must be none)
    if (expectCrc !== undefined) {
      // Finish the checksum over anything left unread, so a bad body is reported as a bad checksum.
      const rest = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(1, end - filePos)));
      while (filePos < end) {
        const n = io.read(fd, rest, 0, Math.min(rest.length, end - filePos), filePos);
        if (n === 0) break;
        crc = expectCrc.fn(rest, 0, n, crc);
        filePos += n;
      }
      if (crc !== expectCrc.crc) throw bodyChecksumError(path, expectCrc.crc, crc, start);
    }
    if (leftover !== 0) throw new CorruptLogError(`${path}: ${leftover} bytes after the last entry`, path, end - leftover);
  } finally {
    io.close(fd);
  }
}
