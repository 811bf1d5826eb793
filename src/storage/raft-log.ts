// Raft's durable state on the WAL: log entries, the hard state, and the snapshot metadata.
//
// - Entries are WAL records (index, term, type, payload): "normal" as Command (1) or, when empty,
//   NoOp (2); "conf-change" as Config (3).
// - The hard state (term, vote, commit) is a HardState record (4) appended after the entries of
//   the same Ready, in the same append: one write(2), one fdatasync. It takes no index. On open,
//   the newest one wins.
// - An operation that drops the bytes holding the newest hard-state record first puts the hard
//   state somewhere that survives it: a truncation of a conflicting suffix or a snapshot install
//   (both rare: a leader change with a divergent log, a follower far behind) save it in the side
//   file `hardstate` (temp file, fsync, rename, fsync dir); a compaction re-appends it to the log.
//   On open the newer of the two wins (hard states only move forward: term, then a vote within a
//   term, then commit).
// - Snapshot metadata (index, term, membership) is the header of the newest valid snapshot file
//   (format version 3); the state machine's image is the file's body, written by the runtime
//   before it calls compact() or persists a Ready carrying that snapshot.
import { assert } from "../errors.ts";
import { entryBytes, type RaftStorage } from "../raft/storage.ts";
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "../raft/types.ts";
import { decodeHardStatePayload, encodeHardStatePayload, type LogRecord, RecordType } from "./codec.ts";
import { CorruptLogError } from "./errors.ts";
import { HardStateStore } from "./hard-state.ts";
import { openStorage, type OpenedStorage, type OpenStorageOptions } from "./index.ts";
import type { Wal } from "./wal.ts";

export type RaftLogOptions = Omit<OpenStorageOptions, "beforeReset" | "checkSnapshotBodyWhileReading" | "skipSnapshots">;

const EMPTY_CONF: ConfState = { voters: [], learners: [] };

/**
 * Entries most recently appended are also kept in memory, up to this many payload bytes, so that
 * applying them (and sending them to followers) does not read them back from the WAL: a profile of
 * a busy one-member group spent 9 % of its time in those reads and their checksums.
 */
export const RECENT_ENTRIES_BYTES_MAX = 64 * 1024 * 1024;
const NO_DATA = new Uint8Array(0);

/**
 * True when `a` is older than `b` in one node's history: hard states only move forward (term;
 * within a term the vote is cast once and kept; commit never decreases).
 */
export function hardStateOlder(a: HardState, b: HardState): boolean {
  if (a.term !== b.term) return a.term < b.term;
  if ((a.vote !== 0) !== (b.vote !== 0)) return a.vote === 0;
  return a.commit < b.commit;
}

function newest(a: HardState, b: HardState): HardState {
  return hardStateOlder(a, b) ? b : a;
}

/** The hard state a HardState record holds; a payload of the wrong size is damage. */
function hardStateOf(rec: { payload: Uint8Array } | undefined, where: string): HardState | undefined {
  if (rec === undefined) return undefined;
  const hs = decodeHardStatePayload(rec.payload);
  if (hs === undefined) throw new CorruptLogError(`${where}: a hard-state record of ${rec.payload.length} bytes. Restore this node's data dir from a replica or backup.`, where, 0);
  return hs;
}

function toRecord(e: Entry): LogRecord {
  const type = e.type === "conf-change" ? RecordType.Config : e.data.length === 0 ? RecordType.NoOp : RecordType.Command;
  return { index: e.index, term: e.term, type, timestampMs: 0, payload: e.data };
}

function toEntry(r: LogRecord): Entry {
  return { index: r.index, term: r.term, type: r.type === RecordType.Config ? "conf-change" : "normal", data: r.payload };
}

export class RaftLog implements RaftStorage {
  /** The newest hard state appended (durable once its persist resolved). */
  private hs: HardState;
  /**
   * Index field of the newest hard-state record in the log that holds `hs`; undefined when `hs`
   * is held only by the side file (or is the empty one).
   */
  private hsIndex: number | undefined;
  private snap: SnapshotMeta;
  /** Persists and compactions issue their writes one after another (a truncation waits for the appends before it). */
  private chain: Promise<void> = Promise.resolve();
  /** Resolves when everything issued so far is durable. */
  private lastDurable: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private closed = false;
  /** The newest entries appended, contiguous (see RECENT_ENTRIES_BYTES_MAX), and their payload bytes. */
  private recent: Entry[] = [];
  private recentStart = 0;
  private recentBytes = 0;

  private constructor(
    private readonly st: OpenedStorage,
    private readonly side: HardStateStore,
    hs: HardState,
    hsIndex: number | undefined,
  ) {
    this.hs = hs;
    this.hsIndex = hsIndex;
    const s = st.snapshot;
    this.snap = s ? { index: s.lastIndex, term: s.lastTerm, confState: s.membership ?? EMPTY_CONF } : { index: 0, term: 0, confState: EMPTY_CONF };
  }

  /**
   * Opens (creating) the Raft storage in dataDir: the WAL's recovery (a torn tail is cut), the
   * newest valid snapshot's metadata, and the newest hard state (log or side file).
   */
  static async open(opts: RaftLogOptions): Promise<RaftLog> {
    const side = new HardStateStore(opts.dataDir, opts.io);
    const logHardState = (wal: Wal) => hardStateOf(wal.lastHardState(), wal.dir);
    const st = await openStorage({
      ...opts,
      fsync: opts.fsync ?? "always",
      // The log ends before the snapshot and is about to be deleted: keep its hard state.
      beforeReset: (wal) => {
        const inLog = logHardState(wal);
        if (inLog !== undefined && hardStateOlder(side.load(), inLog)) side.save(inLog);
      },
    });
    try {
      const inLog = logHardState(st.wal);
      const inSide = side.load();
      const hs = inLog === undefined ? inSide : newest(inLog, inSide);
      let hsIndex = inLog !== undefined && !hardStateOlder(inLog, inSide) ? st.wal.lastHardState()!.index : undefined;
      const snap = st.snapshot;
      if (snap !== undefined && st.wal.firstIndex() <= snap.lastIndex && st.wal.term(snap.lastIndex) !== snap.lastTerm) {
        // A snapshot from the leader became durable but the crash came before the log was reset:
        // the log past it is another history. Install it as persist would have.
        if (hardStateOlder(inSide, hs)) side.save(hs);
        await st.wal.reset(snap.lastIndex, snap.lastTerm);
        hsIndex = undefined;
      }
      return new RaftLog(st, side, hs, hsIndex);
    } catch (e) {
      await st.close();
      throw e;
    }
  }

  private get wal(): Wal {
    return this.st.wal;
  }

  // ---------------------------------------------------------------- LogStorage

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hs, confState: this.snap.confState };
  }

  firstIndex(): number {
    return this.snap.index + 1;
  }

  lastIndex(): number {
    return this.wal.lastIndex();
  }

  term(i: number): number | undefined {
    if (i === this.snap.index) return this.snap.term;
    if (i <= this.snap.index || i > this.wal.lastIndex()) return undefined;
    return this.wal.term(i);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.firstIndex(), `entries(${lo}) below first index ${this.firstIndex()}`);
    assert(hi <= this.lastIndex() + 1, `entries(..${hi}) past last index ${this.lastIndex()}`);
    const r = this.recent;
    if (r.length > 0 && lo >= r[this.recentStart]!.index && hi - 1 <= r[r.length - 1]!.index) {
      const base = r[this.recentStart]!.index - this.recentStart;
      const out: Entry[] = [];
      let bytes = 0;
      for (let i = lo; i < hi; i++) {
        const e = r[i - base]!;
        bytes += entryBytes(e);
        if (out.length > 0 && bytes > maxBytes) break;
        out.push(e);
      }
      return out;
    }
    // The WAL counts payload bytes only, so it returns at least what fits by entryBytes.
    const out: Entry[] = [];
    let bytes = 0;
    for (const r of this.wal.entries(lo, hi, maxBytes)) {
      const e = toEntry(r);
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** The metadata of the newest snapshot; its image is the snapshot file's body (`data` is empty). */
  snapshot(): Snapshot {
    return { meta: this.snap, data: NO_DATA };
  }

  // ---------------------------------------------------------------- RaftStorage

  persist(p: { hardState: HardState | undefined; entries: readonly Entry[]; snapshot: Snapshot | undefined }): Promise<void> {
    return this.serialized(() => this.issuePersist(p));
  }

  compact(meta: SnapshotMeta): Promise<void> {
    return this.serialized(async () => {
      await this.issueCompact(meta);
      return { durable: this.lastDurable };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    await this.lastDurable.catch(() => {});
    await this.st.close();
  }

  /** Runs `issue` after the issues before it; resolves with what the returned promise resolves to. */
  private serialized(issue: () => Promise<{ durable: Promise<void> }>): Promise<void> {
    if (this.closed) return Promise.reject(new Error("Raft storage is closed"));
    const issued = this.chain.then(() => {
      if (this.failure) throw this.failure;
      return issue();
    });
    this.chain = issued.then(
      () => undefined,
      (e) => {
        this.failure ??= e as Error;
      },
    );
    return issued.then((r) => r.durable);
  }

  /** Issues the writes of one Ready; returns the promise of their durability (not awaited here, so Readies pipeline). */
  private async issuePersist(p: { hardState: HardState | undefined; entries: readonly Entry[]; snapshot: Snapshot | undefined }): Promise<{ durable: Promise<void> }> {
    const wal = this.wal;
    if (p.snapshot !== undefined && p.snapshot.meta.index > this.snap.index) {
      const meta = p.snapshot.meta;
      assert(
        this.st.snapshots.list().some((s) => s.lastIndex === meta.index),
        `installing snapshot ${meta.index}: its file must be durable in the snapshot store first`,
      );
      // Every segment goes: the hard state they hold must survive elsewhere first (once durable
      // in the log: the side file never holds a commit newer than the entries on disk).
      await this.lastDurable;
      this.saveSide();
      await wal.reset(meta.index, meta.term);
      this.forget();
      this.hsIndex = undefined;
      this.snap = meta;
    }
    let entries = p.entries;
    if (entries.length > 0 && entries[0]!.index <= this.snap.index) entries = entries.slice(this.snap.index + 1 - entries[0]!.index); // compacted already
    if (entries.length > 0) {
      const first = entries[0]!.index;
      assert(first <= wal.lastIndex() + 1, `append at ${first} leaves a gap after ${wal.lastIndex()}`);
      if (first <= wal.lastIndex()) {
        // A conflicting suffix goes. Never a committed entry: it may be applied, and the values of
        // applied records may be mapped from the segment (src/node/mapped-values.ts).
        assert(first - 1 >= this.hs.commit, `truncating the log after ${first - 1}, below the durable commit ${this.hs.commit}`);
        // Appends still being written (a leader's pipeline, before it stepped down) finish first:
        // the log is cut only with no write of it in flight.
        await this.lastDurable;
        if (this.hsIndex === undefined || this.hsIndex > first - 1) this.saveSide();
        await wal.truncateAfter(first - 1);
        if (this.hsIndex !== undefined && this.hsIndex > first - 1) this.hsIndex = undefined;
      }
    }
    const records = entries.map(toRecord);
    const hs = p.hardState;
    if (hs !== undefined && !(hs.term === this.hs.term && hs.vote === this.hs.vote && hs.commit === this.hs.commit)) {
      assert(!hardStateOlder(hs, this.hs), `hard state ${JSON.stringify(hs)} is older than ${JSON.stringify(this.hs)}`);
      const last = entries.length > 0 ? entries[entries.length - 1]! : undefined;
      const lastIndex = wal.lastIndex();
      const index = (last?.index ?? lastIndex) + 1;
      // With no entry after the snapshot, the log's last term is the snapshot's (a WAL reopened with
      // only hard-state records after its base knows no term for it).
      const term = last?.term ?? (lastIndex <= this.snap.index ? this.snap.term : (wal.term(lastIndex) ?? this.snap.term));
      records.push({ index, term, type: RecordType.HardState, timestampMs: 0, payload: encodeHardStatePayload(hs) });
      this.hs = hs;
      this.hsIndex = index;
    }
    if (entries.length > 0) this.remember(entries);
    if (records.length > 0) {
      // Entries and hard state in one append: one write(2), one fdatasync.
      const durable = wal.append(records);
      this.lastDurable = durable;
      durable.catch((e) => {
        this.failure ??= e as Error;
      });
    }
    return { durable: this.lastDurable };
  }

  private async issueCompact(meta: SnapshotMeta): Promise<void> {
    if (meta.index <= this.snap.index) return;
    assert(meta.index <= this.hs.commit, `compacting through ${meta.index}, past the durable commit ${this.hs.commit} (and so past what was applied)`);
    assert(meta.index <= this.wal.lastIndex(), `compacting through ${meta.index}, past the last index ${this.wal.lastIndex()}`);
    assert(this.wal.term(meta.index) === meta.term, `compacting through ${meta.index} of term ${meta.term}, the log has term ${this.wal.term(meta.index)}`);
    assert(
      this.st.snapshots.list().some((s) => s.lastIndex === meta.index),
      `compacting through ${meta.index}: its snapshot file must be durable in the snapshot store first`,
    );
    // The previous snapshot stays usable as a fallback: the log keeps what it needs.
    const through = Math.min(meta.index, this.st.snapshots.compactableThrough());
    if (this.hsIndex !== undefined && this.hsIndex <= through + 1) {
      // Its segment may go: re-append the hard state at the end of the log (never deleted).
      const index = this.wal.lastIndex() + 1;
      const durable = this.wal.append([{ index, term: this.wal.term(index - 1) ?? this.snap.term, type: RecordType.HardState, timestampMs: 0, payload: encodeHardStatePayload(this.hs) }]);
      this.hsIndex = index;
      this.lastDurable = durable;
      await durable;
    }
    this.snap = meta;
    await this.wal.deleteThrough(through);
  }

  /** Keeps `entries` (just appended after everything kept, or replacing a suffix of it) in memory. */
  private remember(entries: readonly Entry[]): void {
    const first = entries[0]!.index;
    const r = this.recent;
    const kept = r.length - this.recentStart;
    const keptFirst = kept > 0 ? r[this.recentStart]!.index : 0;
    if (kept === 0 || first < keptFirst || first > r[r.length - 1]!.index + 1) {
      this.forget();
    } else {
      // Drop a replaced suffix.
      const cut = first - (keptFirst - this.recentStart);
      for (let i = cut; i < r.length; i++) this.recentBytes -= r[i]!.data.length;
      r.length = cut;
    }
    for (const e of entries) {
      this.recent.push(e);
      this.recentBytes += e.data.length;
    }
    while (this.recentBytes > RECENT_ENTRIES_BYTES_MAX && this.recent.length - this.recentStart > 1) {
      this.recentBytes -= this.recent[this.recentStart]!.data.length;
      this.recent[this.recentStart++] = undefined as unknown as Entry;
    }
    if (this.recentStart > 4096 && this.recentStart * 2 > this.recent.length) {
      this.recent = this.recent.slice(this.recentStart);
      this.recentStart = 0;
    }
  }

  /**
   * Drops the copies in memory of the entries up to `index` (read from the WAL if ever needed
   * again). A group of one reads an entry once, to apply it: kept after that, the last 64 MiB of
   * writes stayed in the heap (a FLUSHALL freed none of it).
   */
  forgetRecentThrough(index: number): void {
    const r = this.recent;
    if (r.length - this.recentStart === 0 || r[this.recentStart]!.index > index) return;
    if (r[r.length - 1]!.index <= index) {
      this.forget();
      return;
    }
    while (r[this.recentStart]!.index <= index) {
      this.recentBytes -= r[this.recentStart]!.data.length;
      r[this.recentStart++] = undefined as unknown as Entry;
    }
    if (this.recentStart > 4096 && this.recentStart * 2 > r.length) {
      this.recent = r.slice(this.recentStart);
      this.recentStart = 0;
    }
  }

  private forget(): void {
    this.recent = [];
    this.recentStart = 0;
    this.recentBytes = 0;
  }

  /** Saves the current hard state in the side file (blocking: temp file, fsync, rename, fsync dir). */
  private saveSide(): void {
    if (this.hs.term === 0 && this.hs.vote === 0 && this.hs.commit === 0) return;
    if (!hardStateOlder(this.side.load(), this.hs)) return;
    this.side.save(this.hs);
  }

  /** Where the runtime writes snapshot files (before compact(), or before persisting a received one). */
  get snapshots(): OpenedStorage["snapshots"] {
    return this.st.snapshots;
  }

  /** For tests and INFO: the WAL under this storage. */
  get log(): Wal {
    return this.wal;
  }
}
