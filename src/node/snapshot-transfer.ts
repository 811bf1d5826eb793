// InstallSnapshot over the peer transport: the leader streams a snapshot file in chunks read from
// disk (never the whole image in memory), the follower writes them to a temp file in its snapshot
// dir and, once the whole file is there and verified, makes it durable under its real name before
// Raft hears of it. The transport (tcp-transport.ts) carries the frames and the flow control; this
// module holds the two ends' state and file work.
import { closeSync, fdatasync, fsyncSync, openSync, read, renameSync, unlinkSync, writeSync, existsSync, close, fstatSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { assert } from "../errors.ts";
import { snapshotChunkDataAt, type SnapshotChunk } from "../raft/codec.ts";
import type { NodeId, SnapshotMeta } from "../raft/types.ts";
import { snapshotName, type SnapshotStore } from "../storage/snapshot-store.ts";

/** Bytes of the snapshot file per chunk frame: small enough to interleave with heartbeats, large enough that the frame overhead is nothing. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Chunk bytes read ahead and queued for one peer at most (the read of the next chunk waits below this). */
export const SNAPSHOT_QUEUE_BYTES_MAX = 4 * SNAPSHOT_CHUNK_BYTES;
/** After its last chunk was written, how long the leader waits for the follower's ack before giving up. */
export const SNAPSHOT_ACK_TIMEOUT_MS = 60_000;

/** CRC-32 of a chunk's data (zlib's native one). */
export const chunkChecksum = (data: Uint8Array): number => crc32(data);

/** Where a node's snapshot files are, for sending and receiving them. */
export interface SnapshotFiles {
  /** The directory received files are written in (temp files, then the real name). */
  readonly dir: string;
  /** The file holding the snapshot `meta` now (leader), or undefined when there is none. */
  pathOf(meta: SnapshotMeta): string | undefined;
  /** Throws unless the complete file at `path` is the snapshot `meta` (header, checksums, index, term, membership). */
  verify(path: string, meta: SnapshotMeta): void;
  /** The name a verified file of `meta` is renamed to. */
  nameOf(meta: SnapshotMeta): string;
  /** Called once a received file is durable under its name (the store drops snapshots older than the newest two). */
  installed?(meta: SnapshotMeta): Promise<void>;
}

/** SnapshotFiles over a data dir's snapshot store (src/storage/snapshot-store.ts). */
export function storeFiles(store: SnapshotStore): SnapshotFiles {
  return {
    dir: store.dir,
    pathOf(meta) {
      const found = store.list().find((s) => s.lastIndex === meta.index);
      return found === undefined ? undefined : join(store.dir, found.name);
    },
    verify(path, meta) {
      const info = store.load(path); // header and body checksums, size
      const m = info.membership;
      const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
      if (info.lastIndex !== meta.index || info.lastTerm !== meta.term) {
        throw new Error(`the file holds the snapshot at ${info.lastIndex} (term ${info.lastTerm}), the transfer announced ${meta.index} (term ${meta.term})`);
      }
      if (m === undefined || !same(m.voters, meta.confState.voters) || !same(m.learners, meta.confState.learners)) {
        throw new Error(`the file's membership differs from the transfer's`);
      }
    },
    nameOf: (meta) => snapshotName(meta.index),
    installed: () => store.prune(),
  };
}

export type TransferState = "opening" | "sending" | "awaiting-ack" | "done";

/**
 * The leader's side of one transfer to one peer: reads the file in order, chunk by chunk, as the
 * transport asks (it asks only while less than SNAPSHOT_QUEUE_BYTES_MAX of chunks are queued).
 * The file stays open for the whole transfer, so a newer snapshot pruning it does not cut it.
 */
export class OutboundTransfer {
  state: TransferState = "opening";
  /** Bytes read from the file (and queued or written) so far. */
  offset = 0;
  totalBytes = 0;
  reading = false;
  ackTimer: ReturnType<typeof setTimeout> | undefined;
  readonly startedAt = performance.now();
  private fd = -1;
  /** Where a chunk's data starts in its frame, and the frame buffers written already, for reuse. */
  readonly dataAt: number;
  private readonly free: ArrayBuffer[] = [];

  constructor(
    readonly id: number,
    readonly to: NodeId,
    readonly term: number,
    readonly meta: SnapshotMeta,
    readonly chunkBytes: number,
    /** Frame buffers kept for reuse at most (the read-ahead's chunks, plus the one being written). */
    private readonly poolMax: number,
  ) {
    assert(chunkBytes >= 1, "chunk size");
    this.dataAt = snapshotChunkDataAt(meta);
  }

  /** A frame buffer whose write finished: the next chunk is read into it (no garbage per chunk). */
  release(frame: Uint8Array): void {
    const b = frame.buffer as ArrayBuffer;
    if (b.byteLength === this.dataAt + this.chunkBytes && this.free.length < this.poolMax && this.state !== "done") this.free.push(b);
  }

  /** Opens the file (throws when it cannot: the transfer fails before it starts). */
  open(path: string): void {
    this.fd = openSync(path, "r");
    this.totalBytes = fstatSync(this.fd).size;
    if (this.totalBytes === 0) throw new Error(`${path} is empty`);
    this.state = "sending";
  }

  get allRead(): boolean {
    return this.offset >= this.totalBytes;
  }

  /**
   * Reads the next chunk into a frame buffer, at `dataAt`: its offset, the buffer and the data (a
   * view of it); undefined when the transfer ended meanwhile.
   */
  readNext(): Promise<{ offset: number; frame: Uint8Array; data: Uint8Array } | undefined> {
    assert(this.state === "sending" && !this.reading && !this.allRead, "readNext out of turn");
    this.reading = true;
    const offset = this.offset;
    const n = Math.min(this.chunkBytes, this.totalBytes - offset);
    const frame = new Uint8Array(this.free.pop() ?? new ArrayBuffer(this.dataAt + this.chunkBytes));
    const buf = frame.subarray(this.dataAt, this.dataAt + n);
    const fd = this.fd;
    return new Promise((resolve, reject) => {
      const step = (got: number) => {
        if (this.state === "done") {
          this.reading = false;
          resolve(undefined);
          return;
        }
        if (got >= n) {
          this.reading = false;
          this.offset = offset + n;
          resolve({ offset, frame, data: buf });
          return;
        }
        read(fd, buf, got, n - got, offset + got, (err, k) => {
          if (err) {
            this.reading = false;
            reject(err);
          } else if (k === 0 && this.state !== "done") {
            this.reading = false;
            reject(new Error(`snapshot file ended at ${offset + got} of ${this.totalBytes} bytes`));
          } else step(got + k);
        });
      };
      step(0);
    });
  }

  /** Ends the transfer (idempotent); the file is closed once no read is in flight. */
  end(): void {
    this.state = "done";
    this.free.length = 0;
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const fd = this.fd;
    this.fd = -1;
    if (fd >= 0) close(fd, () => {}); // a read in flight on it fails, and its result is ignored
  }
}

/**
 * The follower's side of one transfer: chunks in order into `<snapshot name>.<transfer>.tmp` in
 * the snapshot dir (SnapshotStore.open deletes *.tmp at start, so a transfer cut by a crash leaves
 * nothing a recovery could load). Writes are synchronous: one chunk (1 MiB) into the page cache at
 * a time; the fdatasync at the end is not.
 */
export class InboundTransfer {
  received = 0;
  private fd: number;
  readonly tmp: string;
  private ended = false;

  /** The first chunk's fields (its data left out: it is a view into the connection's buffer). */
  readonly first: SnapshotChunk;

  constructor(
    readonly files: SnapshotFiles,
    first: SnapshotChunk,
  ) {
    assert(first.offset === 0, "a transfer starts at offset 0");
    this.first = { ...first, data: new Uint8Array(0) };
    this.tmp = join(files.dir, `${files.nameOf(first.meta)}.${first.transfer}.tmp`);
    this.fd = openSync(this.tmp, "w");
  }

  get id(): number {
    return this.first.transfer;
  }

  get complete(): boolean {
    return this.received === this.first.totalBytes;
  }

  /** Whether `c` continues this transfer exactly where it is (same transfer, snapshot, size; next offset). */
  continues(c: SnapshotChunk): string | undefined {
    const f = this.first;
    if (c.transfer !== f.transfer) return `chunk of transfer ${c.transfer} in the middle of transfer ${f.transfer}`;
    if (c.meta.index !== f.meta.index || c.meta.term !== f.meta.term || c.totalBytes !== f.totalBytes) return `chunk of transfer ${c.transfer} changed its snapshot`;
    if (c.offset !== this.received) return `chunk at ${c.offset}, expected ${this.received}`;
    return undefined;
  }

  /** Writes a chunk (the caller checked `continues`). Throws on an I/O error. */
  write(c: SnapshotChunk): void {
    assert(!this.ended && c.offset === this.received, "chunk out of order");
    let done = 0;
    while (done < c.data.length) {
      const n = writeSync(this.fd, c.data, done, c.data.length - done, c.offset + done);
      assert(n > 0, "write(2) wrote nothing");
      done += n;
    }
    this.received += c.data.length;
  }

  /**
   * The whole file arrived: fdatasync, verify, rename to its real name, fsync the dir. Resolves
   * once the snapshot is durable under its name; rejects (and deletes the temp file) otherwise.
   */
  async install(): Promise<void> {
    await this.place();
    // Pruning older files is housekeeping: the snapshot is in place whatever it does (it logs its own failures).
    await this.files.installed?.(this.first.meta).catch(() => {});
  }

  private async place(): Promise<void> {
    assert(this.complete && !this.ended, "install of an incomplete transfer");
    const fd = this.fd;
    this.fd = -1;
    this.ended = true;
    let open = true;
    try {
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
      open = false;
      closeSync(fd);
      this.files.verify(this.tmp, this.first.meta);
      const path = join(this.files.dir, this.files.nameOf(this.first.meta));
      if (existsSync(path)) {
        // This node holds that snapshot already (the same index is the same committed state).
        unlinkSync(this.tmp);
        return;
      }
      renameSync(this.tmp, path);
      const dfd = openSync(this.files.dir, "r");
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch (err) {
      if (open) {
        try {
          closeSync(fd);
        } catch {}
      }
      try {
        unlinkSync(this.tmp);
      } catch {}
      throw err;
    }
  }

  /** Gives up: the temp file goes. */
  abort(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      closeSync(this.fd);
    } catch {}
    try {
      unlinkSync(this.tmp);
    } catch {}
  }
}
