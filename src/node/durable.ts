// The single-node log runtime: write commands are appended to the WAL (group commit) and
// applied to the state machine, in log order, only once durable; recovery replays the newest
// snapshot plus the log; snapshots are written in the background and compact the log.
// A single node is a one-member log over the same WAL the Raft runtime will use.
import { assert, AssertionError, CorruptLogError } from "../errors.ts";
import { logger } from "../log.ts";
import { KvStateMachine } from "../kv/fsm.ts";
import { ReplyBuffer, type ReplyWriter } from "../resp/encode.ts";
import { decodeCommand, decodePlainSet, encodeCommand, encodedCommandBytes, plainSet } from "../resp/request-parser.ts";
import { MappedValues } from "./mapped-values.ts";
import { type Proposal, type RecoveryStats, type SnapshotStats, SYNCS_IN_FLIGHT, WriteRefusedError } from "./proposal.ts";
export { type Proposal, type RecoveryStats, type SnapshotStats, SYNCS_IN_FLIGHT, WriteRefusedError, slowDiskIoFromEnv } from "./proposal.ts";
import {
  openStorage,
  recordBytesFor,
  RECORD_PAYLOAD_BYTES_MAX,
  RecordType,
  type FsyncMode,
  type LogRecord,
  type OpenedStorage,
  type SnapshotWriteResult,
  type StorageIo,
  warnUnusableSnapshot,
  nodeIo,
} from "../storage/index.ts";

const log = logger("node");

/** Replies nobody will read (proposals without an owner to answer). */
const DISCARD = new ReplyBuffer(1024);

/** The term of every record a single node writes (a one-member group never changes leader). */
export const SINGLE_NODE_TERM = 1;

export interface DurableOptions {
  dataDir: string;
  fsync: FsyncMode;
  segmentBytesMax: number;
  /** Log bytes appended since the last snapshot that trigger a new one. */
  snapshotLogBytes: number;
  /** The file-system layer (tests pass a recording or fault-injecting one). */
  io?: StorageIo;
  /** Batches with an fsync running at once in "always" (default SYNCS_IN_FLIGHT). */
  syncsInFlightMax?: number;
}

export class DurableLog<T> {
  // SCAN cursors from before a restart must not match a new scan's cursor: start ids at random.
  readonly fsm = new KvStateMachine({ scanCursorBase: 1 + Math.floor(Math.random() * 2 ** 40) });
  private lastIndex = 0;
  private appliedIndex = 0;
  private batch: Proposal<T>[] = [];
  /** Batches handed to the WAL and not yet applied or failed, oldest first (see sweepExpired). */
  private readonly inFlight: Proposal<T>[][] = [];
  /**
   * The node's time never goes back: no command runs and no write is stamped earlier than this
   * (the latest time handed out, stamped or swept at; after a restart, the last applied write's).
   * So every write applied later runs at or after any time the sweep used.
   */
  private stampFloorMs = 0;
  /** Log bytes of the writes proposed and not yet applied or failed (see pendingBytes). */
  private pendingBytesValue = 0;
  private flushScheduled = false;
  private bytesSinceSnapshot = 0;
  private snapshotRunning: Promise<SnapshotStats> | null = null;
  /** The applied index the running snapshot covers (meaningful while snapshotRunning is set). */
  private snapshotRunningIndex = 0;
  /** Set by close(): no snapshot starts after it. */
  private closing = false;
  lastSnapshot: SnapshotStats | null = null;
  lastSnapshotAtMs = 0;
  /**
   * How the last snapshot attempt (SAVE, BGSAVE or a background one) ended, for INFO persistence
   * (Redis's rdb_last_bgsave_status): "ok" until one fails; the failure's reason is kept.
   */
  lastSnapshotStatus: "ok" | "err" = "ok";
  lastSnapshotError: string | null = null;
  /** Seconds the last snapshot attempt took (ok or not), -1 before the first (Redis's rdb_last_bgsave_time_sec). */
  lastSnapshotAttemptSec = -1;
  /** The index the last successful snapshot covers (the one recovery started from, until one is written). */
  private savedIndex = 0;
  recovery!: RecoveryStats;
  /** Set by the owner: where the reply of a proposal goes (called in log order, just before it is applied). */
  replyTo: (p: Proposal<T>) => ReplyWriter = () => {
    DISCARD.reset();
    return DISCARD;
  };
  /** Set by the owner: called after a proposal was applied and its reply written. */
  onApplied: (p: Proposal<T>) => void = () => {};
  /** Set by the owner: called after each batch of onApplied calls (flush replies here). */
  onBatchDone: () => void = () => {};
  /** Set by the owner: a batch that could not be made durable (outcome unknown or refused). */
  onFailed: (batch: Proposal<T>[], err: Error) => void = () => {};

  private constructor(
    private readonly storage: OpenedStorage,
    private readonly opts: DurableOptions,
  ) {}

  /** Opens the data dir and rebuilds the state: newest valid snapshot, then every record after it. */
  static async open<T>(opts: DurableOptions): Promise<DurableLog<T>> {
    const t0 = performance.now();
    // The snapshot's checksum is checked while it is restored (one read of the file, not two).
    // A bad one is only found at its end: then everything loaded is dropped and the node opens
    // again without that snapshot (the older one plus the log, as loadNewest would have chosen).
    const skipSnapshots = new Set<string>();
    let storage: OpenedStorage;
    let node: DurableLog<T>;
    let snapshotEntries = 0;
    let source!: MappedValues;
    for (let attempt = 0; ; attempt++) {
      assert(attempt < 100, "recovery kept finding corrupt snapshots");
      storage = await openStorage({
        dataDir: opts.dataDir,
        fsync: opts.fsync,
        segmentBytesMax: opts.segmentBytesMax,
        io: opts.io,
        wal: { syncsInFlightMax: opts.syncsInFlightMax ?? SYNCS_IN_FLIGHT },
        checkSnapshotBodyWhileReading: true,
        skipSnapshots,
      });
      node = new DurableLog<T>(storage, opts);
      snapshotEntries = 0;
      // Values stay in the files read (mapped into memory) until a read or the next snapshot
      // copies them (Db.loadLazy): a restart copies only the keys before serving.
      source = new MappedValues();
      node.fsm.db.loadLazy(source);
      const snap = storage.snapshot;
      if (snap === undefined) break;
      const db = node.fsm.db;
      try {
        const mapped = snap.mapped();
        if (mapped !== undefined) {
          const src = source;
          src.setSnapshot(mapped.values);
          mapped.forEach((k, offset, at) => {
            const ref = src.snapshotRef(offset);
            db.load(k, ref >= 0 ? ref : mapped.values.value(offset), at);
            snapshotEntries++;
          });
        } else {
          snap.forEach((k, v, at) => {
            db.load(k, v, at);
            snapshotEntries++;
          });
        }
      } catch (e) {
        if (!(e instanceof CorruptLogError) || e.file !== snap.file) throw e;
        await storage.close();
        warnUnusableSnapshot(snap.file, e);
        skipSnapshots.add(snap.file);
        continue;
      }
      node.fsm.appliedMs = Number(new TextDecoder().decode(snap.meta)) || 0;
      node.appliedIndex = node.lastIndex = snap.lastIndex;
      break;
    }
    const snap = storage.snapshot;
    const sink = new ReplyBuffer(1024);
    const names = new Map<number, string>();
    const fsm = node.fsm;
    const replayed = storage.wal.replayEach(
      storage.replayFrom,
      (index, _term, type, timestampMs, buf, start, end, mapped) => {
        if (index !== node.appliedIndex + 1) assert(false, `replay gap: expected ${node.appliedIndex + 1}, got ${index}`);
        if (type === RecordType.Command) {
          let ref = -1;
          if (mapped && decodePlainSet(buf, start, end)) ref = source.segmentRef(buf, plainSet.valueAt);
          if (ref >= 0) fsm.applyPlainSetRef(buf.latin1Slice(plainSet.keyStart, plainSet.keyEnd), ref, timestampMs);
          else {
            const argv = decodeCommand(buf, start, end, names);
            if (argv === null) {
              // Its checksum is good, so it was written this way: damage the checksum did not
              // catch, or a newer kv's record. Refuse to start, pointing at it, as for other damage.
              const at = storage.wal.locate(index);
              throw new CorruptLogError(
                `record ${index} has a good checksum but is not one RESP command`,
                at?.file ?? storage.wal.dir,
                at?.offset ?? 0,
                "kv repair cuts the log only at checksum damage, so it keeps this record; to drop it and every record after it, " +
                  "back up the data dir, truncate this file to the offset above (truncate -s OFFSET FILE) and delete the later segments of wal/",
              );
            }
            fsm.apply(argv, timestampMs, sink);
            sink.reset();
          }
        }
        node.appliedIndex = node.lastIndex = index;
        // Log written since the snapshot counts toward the next one across restarts too.
        node.bytesSinceSnapshot += recordBytesFor(end - start);
      },
      { map: true },
    );
    fsm.db.endLazyLoad();
    node.savedIndex = snap?.lastIndex ?? 0;
    node.recovery = {
      snapshotIndex: snap?.lastIndex ?? 0,
      snapshotEntries,
      replayedRecords: replayed,
      lastIndex: node.lastIndex,
      durationMs: Math.round(performance.now() - t0),
    };
    node.stampFloorMs = fsm.appliedMs; // a clock stepped back across a restart stamps no earlier
    return node;
  }

  get walStats() {
    return this.storage.wal.stats;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  /** Log records applied since the index the last successful snapshot covers (Redis's rdb_changes_since_last_save). */
  get changesSinceSnapshot(): number {
    return this.appliedIndex - this.savedIndex;
  }

  /**
   * Bytes (as logged) of the writes accepted and not yet durable: proposed, and not yet applied
   * or failed. The server's --pending-writes-limit bounds it.
   */
  get pendingBytes(): number {
    return this.pendingBytesValue;
  }

  /**
   * The time commands run at, from the wall clock: never earlier than a time already used, so a
   * clock stepped back neither brings an expired key back for reads nor stamps a write before
   * one already logged.
   */
  now(wallMs: number): number {
    if (wallMs > this.stampFloorMs) this.stampFloorMs = wallMs;
    return this.stampFloorMs;
  }

  /**
   * Queues a write. It joins the batch appended once this turn of the event loop has handled
   * every ready socket (setImmediate, as Redis's beforeSleep), so one record batch, one write(2)
   * and one promise serve all the clients of a turn; the WAL joins batches that arrive during an
   * fsync into the next one (group commit).
   */
  propose(argv: string[], nowMs: number, owner: T): Proposal<T> {
    // Everything that can make one client's record unloggable is checked here, before it is
    // numbered or queued: the batch append (flush) then has nothing left to refuse.
    const payloadBytes = encodedCommandBytes(argv);
    if (payloadBytes > RECORD_PAYLOAD_BYTES_MAX) {
      throw new WriteRefusedError(
        `write not accepted: the command is ${payloadBytes} bytes RESP-encoded, past the log's record limit of ${RECORD_PAYLOAD_BYTES_MAX} bytes (${RECORD_PAYLOAD_BYTES_MAX / 1048576} MiB) for one write`,
      );
    }
    let payload: Buffer;
    try {
      payload = encodeCommand(argv);
    } catch (e) {
      if (e instanceof AssertionError) throw e;
      throw new WriteRefusedError(`write not accepted: its ${payloadBytes}-byte log record could not be encoded (${(e as Error).message})`);
    }
    if (nowMs < this.stampFloorMs) nowMs = this.stampFloorMs;
    else this.stampFloorMs = nowMs;
    const p: Proposal<T> = { index: ++this.lastIndex, argv, nowMs, owner, payload, bytes: recordBytesFor(payloadBytes) };
    this.pendingBytesValue += p.bytes;
    this.batch.push(p);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushTask);
    }
    return p;
  }

  private readonly flushTask = (): void => this.flush();

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    const records: LogRecord[] = new Array(batch.length);
    let bytes = 0;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      records[i] = { index: p.index, term: SINGLE_NODE_TERM, type: RecordType.Command, timestampMs: p.nowMs, payload: p.payload };
      bytes += p.bytes;
    }
    this.bytesSinceSnapshot += bytes;
    this.inFlight.push(batch);
    // Already at the end of the turn: write now rather than one more turn later. Every record
    // was checked and encoded in propose, so nothing here depends on one client's input; the
    // batch is encoded into one buffer, bounded by the server's --pending-writes-limit plus one write.
    this.storage.wal.append(records, true).then(
      () => this.applyBatch(batch),
      (err: Error) => {
        const i = this.inFlight.indexOf(batch);
        if (i >= 0) this.inFlight.splice(i, 1);
        this.pendingBytesValue -= bytes;
        this.onFailed(batch, err);
      },
    );
  }

  /**
   * Reclaims up to maxKeys keys expired at nowMs, outside the log. Safe only because no write
   * still to be applied can run at an earlier time: the sweep time is capped at the oldest
   * pending write's stamp, and later stamps are raised to it. Otherwise a key could vanish under
   * a write stamped before its expiry (say SET NX), which the replay would then apply to the
   * key still present: a different outcome after a restart.
   */
  sweepExpired(nowMs: number, maxKeys: number): number {
    const oldest = this.inFlight.length > 0 ? this.inFlight[0]! : this.batch;
    const at = oldest.length > 0 ? Math.min(nowMs, oldest[0]!.nowMs) : nowMs;
    if (at > this.stampFloorMs) this.stampFloorMs = at;
    return this.fsm.db.sweepExpired(at, maxKeys);
  }

  private applyBatch(batch: Proposal<T>[]): void {
    assert(this.inFlight[0] === batch, "a batch applied out of order");
    this.inFlight.shift();
    for (const p of batch) this.pendingBytesValue -= p.bytes;
    assert(this.pendingBytesValue >= 0, "pending write bytes below zero");
    for (const p of batch) {
      assert(p.index === this.appliedIndex + 1, `apply out of order: ${p.index} after ${this.appliedIndex}`);
      this.appliedIndex = p.index;
      this.fsm.apply(p.argv, p.nowMs, this.replyTo(p));
      this.onApplied(p);
    }
    this.onBatchDone();
    this.maybeSnapshotInBackground();
  }

  /** True while a snapshot is being written. */
  get snapshotInProgress(): boolean {
    return this.snapshotRunning !== null;
  }

  /**
   * Writes a snapshot that covers every entry applied so far, without stopping the server: a
   * copy-on-write view of the keyspace is streamed out in chunks, then the log it covers is
   * deleted. A call while a snapshot is running shares it when it already covers everything
   * applied; otherwise (SAVE during a background snapshot that began earlier) the call waits
   * for it and then writes a new one, so SAVE's "OK" always means "everything before it is in
   * a snapshot".
   */
  async snapshot(): Promise<SnapshotStats> {
    const want = this.appliedIndex;
    // Each pass waits for one running snapshot to end; a new one starts only when none runs.
    while (this.snapshotRunning !== null) {
      if (this.snapshotRunningIndex >= want) return this.snapshotRunning;
      await this.snapshotRunning.catch(() => {});
    }
    if (this.closing) throw new Error("the node is shutting down");
    const index = (this.snapshotRunningIndex = this.appliedIndex);
    const t0 = performance.now();
    const run = this.writeSnapshot().then(
      (stats) => {
        this.snapshotRunning = null;
        this.lastSnapshotStatus = "ok";
        this.lastSnapshotError = null;
        this.lastSnapshotAttemptSec = Math.round((performance.now() - t0) / 1000);
        this.savedIndex = stats.lastIndex;
        // The log may have passed the threshold again while this one was written.
        this.maybeSnapshotInBackground();
        return stats;
      },
      (e: Error) => {
        this.snapshotRunning = null;
        // Every failed snapshot is logged here once, whoever asked for it (BGSAVE has no one to reply to).
        this.lastSnapshotStatus = "err";
        this.lastSnapshotError = e.message;
        this.lastSnapshotAttemptSec = Math.round((performance.now() - t0) / 1000);
        log.error(`snapshot at index ${index} failed: ${e.message}`);
        throw e;
      },
    );
    this.snapshotRunning = run;
    return run;
  }

  private maybeSnapshotInBackground(): void {
    // `> 0`: with --snapshot-log-bytes 0 a snapshot follows each batch of writes, not each snapshot.
    if (this.bytesSinceSnapshot > 0 && this.bytesSinceSnapshot >= this.opts.snapshotLogBytes && this.snapshotRunning === null && !this.closing) {
      void this.snapshot().catch(() => {}); // logged and counted by snapshot()
    }
  }

  private async writeSnapshot(): Promise<SnapshotStats> {
    const lastIndex = this.appliedIndex;
    const { appliedMs, snapshot } = this.fsm.beginSnapshot();
    this.bytesSinceSnapshot = 0;
    const t0 = performance.now();
    let res: SnapshotWriteResult;
    try {
      res = await this.storage.snapshots.write(
        { lastIndex, lastTerm: lastIndex === 0 ? 0 : SINGLE_NODE_TERM, meta: new TextEncoder().encode(String(appliedMs)), yieldEveryMs: 2 },
        // The copy-on-write view is read in chunks; the writer yields to the event loop every 2 ms.
        snapshot,
      );
    } finally {
      snapshot.close();
    }
    // Keep the log back to the previous snapshot, so a corrupt newest one can fall back.
    await this.storage.wal.deleteThrough(this.storage.snapshots.compactableThrough());
    const stats: SnapshotStats = {
      lastIndex,
      entries: res.entryCount,
      bytes: res.bodyBytes,
      durationMs: Math.round(performance.now() - t0),
      longestSliceMs: res.longestSliceMs,
    };
    this.lastSnapshot = stats;
    this.lastSnapshotAtMs = Date.now();
    log.info(`snapshot at index ${lastIndex}: ${stats.entries} keys, ${stats.bytes} bytes in ${stats.durationMs} ms (longest slice ${stats.longestSliceMs.toFixed(1)} ms)`);
    return stats;
  }

  /**
   * Stops accepting work, waits for what was appended and for snapshots being written (no new
   * one starts: a SAVE still waiting gets an error), and closes the WAL.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.flush();
    for (let i = 0; this.snapshotRunning !== null; i++) {
      assert(i < 100, "close: snapshots kept starting after closing was set");
      await this.snapshotRunning.catch(() => {});
    }
    await this.storage.close();
  }
}
