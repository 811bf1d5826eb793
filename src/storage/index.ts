// Storage entry points: open a data dir (snapshot + WAL), and repair a damaged WAL.
import { CorruptLogError } from "../errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { type DataDirLock, lockDataDir } from "./lock.ts";
import { type LoadedSnapshot, SnapshotStore, warnUnusableSnapshot } from "./snapshot-store.ts";
import { type FsyncMode, openDataDir, Wal, type WalOptions } from "./wal.ts";

export * from "./codec.ts";
export { crc32c } from "./crc32c.ts";
export * from "./errors.ts";
export { nodeIo, type StorageIo } from "./io.ts";
export { type LogStore, MemoryLogStore } from "./log-store.ts";
export { decodeHardState, encodeHardState, type HardState, HardStateStore } from "./hard-state.ts";
export { type DataDirLock, lockDataDir } from "./lock.ts";
export { repairWal, type RepairReport } from "./repair.ts";
export { type IoEvent, RecordingIo } from "./testing.ts";
export * from "./snapshot-store.ts";
export { describeDropped, FSYNC_MODES, type FsyncMode, type RecoveryReport, SEGMENT_BYTES_MAX_DEFAULT, SEGMENT_BYTES_MIN, Wal, type WalOptions } from "./wal.ts";

export interface OpenStorageOptions {
  dataDir: string;
  fsync?: FsyncMode;
  segmentBytesMax?: number;
  io?: StorageIo;
  /** Other WAL options (preallocate, syncMethod, syncsInFlightMax, everysecIntervalMs). */
  wal?: Omit<WalOptions, "dataDir" | "fsync" | "segmentBytesMax" | "io">;
  /**
   * Do not read the newest snapshot's body just to check its checksum: the caller restores it
   * with forEach, which checks the checksum as it reads and throws CorruptLogError (with `file`
   * the snapshot's path) at the end when it is bad; the caller then discards what it loaded
   * and opens again with that path in skipSnapshots. openStorage still checks the body first
   * wherever the snapshot decides more than where replay starts (a log reset, a missing range).
   */
  checkSnapshotBodyWhileReading?: boolean;
  /** Snapshot paths to pass over (found corrupt by an earlier attempt). */
  skipSnapshots?: ReadonlySet<string>;
  /**
   * Called before a log that ends before the snapshot is reset (every segment deleted): Raft
   * storage saves the hard state those segments hold elsewhere first.
   */
  beforeReset?: (wal: Wal) => void;
}

export interface OpenedStorage {
  wal: Wal;
  snapshots: SnapshotStore;
  /** Newest valid snapshot, if any (checksum verified unless checkSnapshotBodyWhileReading). Restore it first. */
  snapshot: LoadedSnapshot | undefined;
  /** Replay the log from here (wal.replayEach or wal.replay) after restoring the snapshot. */
  replayFrom: number;
  /** The data dir's LOCK (one kv process per data dir). */
  lock: DataDirLock;
  /** Closes the WAL (final fsync) and releases the lock. */
  close(): Promise<void>;
}

/**
 * Startup: validates and opens the WAL (truncating a torn tail, throwing CorruptLogError on damage),
 * picks the newest valid snapshot, and checks the two fit together: the log must hold every record
 * after the snapshot. A log that ends before the snapshot (a crash right after a snapshot install)
 * is reset to start after it.
 */
export async function openStorage(opts: OpenStorageOptions): Promise<OpenedStorage> {
  const io = opts.io ?? nodeIo;
  // The lock before anything in the dir changes: a second process must not delete the running
  // node's snapshot temp file or set its snapshots aside.
  openDataDir(io, opts.dataDir);
  const lock = lockDataDir(opts.dataDir);
  let snapshots: SnapshotStore;
  let wal: Wal;
  let snapshot: LoadedSnapshot | undefined;
  try {
    snapshots = SnapshotStore.open(opts.dataDir, io);
    // The snapshot first: the log it covers then needs only a structural scan. (If its body
    // later turns out corrupt, the caller opens again without it and the log is checked fully.)
    snapshot = snapshots.loadNewest({ checkBodyWhileReading: opts.checkSnapshotBodyWhileReading, skip: opts.skipSnapshots });
    wal = await Wal.open({ ...opts.wal, dataDir: opts.dataDir, fsync: opts.fsync, segmentBytesMax: opts.segmentBytesMax, io, trustThrough: snapshot?.lastIndex ?? 0 });
  } catch (e) {
    lock.release();
    throw e;
  }
  const snapIndex = snapshot?.lastIndex ?? 0;
  if (snapshot && !snapshot.bodyVerified && (wal.lastIndex() < snapIndex || wal.firstIndex() > snapIndex + 1)) {
    // The snapshot is about to decide more than where replay starts: make sure it is good.
    try {
      snapshot.verifyBody();
    } catch (e) {
      await wal.close();
      lock.release();
      if (!(e instanceof CorruptLogError)) throw e;
      warnUnusableSnapshot(snapshot.file, e);
      return openStorage({ ...opts, skipSnapshots: new Set([...(opts.skipSnapshots ?? []), snapshot.file]) });
    }
  }
  if (snapshot && wal.lastIndex() < snapIndex) {
    try {
      opts.beforeReset?.(wal);
    } catch (e) {
      await wal.close();
      lock.release();
      throw e;
    }
    await wal.reset(snapIndex, snapshot.lastTerm);
  } else if (wal.firstIndex() > snapIndex + 1) {
    await wal.close();
    lock.release();
    throw new CorruptLogError(
      `the log starts at index ${wal.firstIndex()} but the newest usable snapshot ends at ${snapIndex}: records ${snapIndex + 1}..${wal.firstIndex() - 1} are missing` +
        (snapshots.list().length > (snapshot ? 1 : 0) ? " (a newer snapshot exists but is corrupt)" : "") +
        ". Restore this node's data dir from a replica or backup.",
      wal.dir,
      0,
    );
  }
  const close = async () => {
    try {
      await wal.close();
    } finally {
      lock.release();
    }
  };
  return { wal, snapshots, snapshot, replayFrom: Math.max(snapIndex + 1, wal.firstIndex()), lock, close };
}
