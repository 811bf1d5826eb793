// Storage entry points: open a data dir (snapshot + WAL), and repair a damaged WAL.
import { CorruptLogError } from "../errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { type DataDirLock, lockDataDir } from "./lock.ts";
import { type LoadedSnapshot, SnapshotStore } from "./snapshot-store.ts";
import { type FsyncMode, Wal, type WalOptions } from "./wal.ts";

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
export { FSYNC_MODES, type FsyncMode, type RecoveryReport, SEGMENT_BYTES_MAX_DEFAULT, Wal, type WalOptions } from "./wal.ts";

export interface OpenStorageOptions {
  dataDir: string;
  fsync?: FsyncMode;
  segmentBytesMax?: number;
  io?: StorageIo;
  /** Other WAL options (preallocate, syncMethod, syncsInFlightMax, everysecIntervalMs). */
  wal?: Omit<WalOptions, "dataDir" | "fsync" | "segmentBytesMax" | "io">;
}

export interface OpenedStorage {
  wal: Wal;
  snapshots: SnapshotStore;
  /** Newest valid snapshot (already checksum-verified), if any. Restore it first. */
  snapshot: LoadedSnapshot | undefined;
  /** Replay wal.replay(replayFrom) after restoring the snapshot. */
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
  const snapshots = SnapshotStore.open(opts.dataDir, io);
  const lock = lockDataDir(opts.dataDir);
  let wal: Wal;
  let snapshot: LoadedSnapshot | undefined;
  try {
    // The snapshot first: the log it covers (checksum verified) then needs only a structural scan.
    snapshot = snapshots.loadNewest();
    wal = await Wal.open({ ...opts.wal, dataDir: opts.dataDir, fsync: opts.fsync, segmentBytesMax: opts.segmentBytesMax, io, trustThrough: snapshot?.lastIndex ?? 0 });
  } catch (e) {
    lock.release();
    throw e;
  }
  const snapIndex = snapshot?.lastIndex ?? 0;
  if (snapshot && wal.lastIndex() < snapIndex) {
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
