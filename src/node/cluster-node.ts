// A kv member of a Raft group: the RaftNode runtime over the WAL (RaftLog), the TCP transport and
// the KV state machine, with what the server needs on top: proposals that answer their client in
// log order, linearizable read barriers (ReadIndex, asked of the leader by a follower), forwarding
// of writes to the leader, expirations decided by the leader, and snapshots.
import { readSnapshotFileMeta, restoreAcl, withAclSection } from "./snapshot-meta.ts";
import type { ChangeSink } from "./change-events.ts";
import { closeSync, fstatSync, openSync } from "node:fs";
import { join } from "node:path";
import { assert, AssertionError, ConfigError, CorruptLogError } from "../errors.ts";
import { logger } from "../log.ts";
import type { KvStateMachine } from "../kv/fsm.ts";
import type { DbSnapshot } from "../kv/db.ts";
import { Rand } from "../raft/rand.ts";
import type { RaftStorage } from "../raft/storage.ts";
import { entryBytes } from "../raft/storage.ts";
import { NONE, decodeConfChange, encodeConfChange, type ConfChange, type ConfState, type Entry, type HardState, type NodeId, type Snapshot, type SnapshotMeta } from "../raft/types.ts";
import { ReplyBuffer, type ReplyWriter } from "../resp/encode.ts";
import { encodedCommandBytes } from "../resp/request-parser.ts";
import { RaftLog } from "../storage/raft-log.ts";
import { snapshotName } from "../storage/snapshot-store.ts";
import { nodeIo, RECORD_PAYLOAD_BYTES_MAX, recordBytesFor, RecordType, type FsyncMode, type StorageIo } from "../storage/index.ts";
import { StorageIoError, WalFailedError } from "../storage/errors.ts";
import type { ClusterView, MemberAddress, MemberRole, MemberStatus } from "./cluster-view.ts";
import { type Proposal, type RecoveryStats, type SnapshotStats, SYNCS_IN_FLIGHT, WriteRefusedError } from "./proposal.ts";
import { COMMAND_ENTRY_OVERHEAD_BYTES, encodeCommandEntry, encodeExpireEntry, encodeSnapshotMeta, EXPIRE_BATCH_KEYS_MAX } from "./kv-payload.ts";
import { KvEntryError, KvRaftStateMachine } from "./kv-state-machine.ts";
import { KvImageError, KvPayloadError } from "./kv-payload.ts";
import { MappedRestore } from "./mapped-restore.ts";
import { LeaderLinks, LINK_REQUEST_TIMEOUT_MS, LinkLostError } from "./leader-link.ts";
import type { PeerTls } from "./peer-tls.ts";
import { DroppedError, NodeClosedError, NotLeaderError, RaftNode, UnknownOutcomeError } from "./raft-node.ts";
import type { StateMachine } from "./state-machine.ts";
import { convertSingleNodeDir } from "./single-node-format.ts";
import { storeFiles } from "./snapshot-transfer.ts";
import { TcpTransport } from "./tcp-transport.ts";
import { Ticker } from "./ticker.ts";
import { LeaderLease } from "./lease.ts";

const log = logger("raft");

const NO_IMAGE = new Uint8Array(0);

/** The head of a forwarded write's reply: the index it was applied at. */
const FORWARDED_HEAD = /^\*2\r\n:(\d+)\r\n/;

/** The membership file in a data dir: the cluster id and every member's addresses, written on first start. */
export const MEMBERS_FILE = "raft-members.json";
/**
 * Work per turn of the event loop, so that a burst never holds off the timers (heartbeats: a
 * follower that hears nothing for an election timeout deposes the leader) for long: at most this
 * many proposals, and this many bytes of committed entries applied per Ready (the loop yields in
 * between). Found by a 100k-write pipelined burst that cost the leader its leadership.
 */
export const PROPOSALS_PER_TURN_MAX = 4096;
export const APPLY_BYTES_PER_TURN_MAX = 1024 * 1024;

/** A learner within this many entries of the leader's commit index (and acknowledging its log) may be promoted. */
export const PROMOTE_LAG_ENTRIES_MAX = 1000;
/** A transfer of leadership that has not finished within this many election timeouts is reported failed. */
export const TRANSFER_WAIT_ELECTIONS = 4;
/** A member that has not heard from a leader for this many election timeouts asks the others whether it was removed. */
export const REMOVAL_PROBE_AFTER_ELECTIONS = 3;

/** A membership request that could not be carried out: `code` is the RESP error's first word. */
export class MembershipError extends Error {
  override name = "MembershipError";
  constructor(
    message: string,
    readonly code: "ERR" | "TRYAGAIN" | "UNCERTAIN" | "NOTREADY" = "ERR",
  ) {
    super(message);
  }
  get reply(): string {
    return `${this.code} ${this.message}`;
  }
}

/** A new member's addresses as a conf change's context: JSON {"addr","peer"}. */
export function memberContext(m: MemberAddress): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ addr: m.addr, peer: m.peer }));
}

/** The addresses in a conf change's context (a committed entry: damage here is a broken invariant). */
export function parseMemberContext(context: Uint8Array, id: NodeId): MemberAddress {
  const v = JSON.parse(new TextDecoder().decode(context)) as { addr?: unknown; peer?: unknown };
  assert(typeof v.addr === "string" && typeof v.peer === "string", `conf change context of node ${id} holds no addresses`);
  return { id, addr: v.addr, peer: v.peer };
}

/** How long a leader stopping on purpose waits for its leadership transfer before it stops anyway. */
export const TRANSFER_ON_CLOSE_MS = 1000;
/** Reads waiting for a barrier at once, past which new reads are refused with CLUSTERDOWN-style errors. */
export const READS_WAITING_MAX = 1_000_000;

/**
 * Contacts with the leader a follower keeps for bounded-staleness reads (see staleReadRefusal); past
 * it the oldest is dropped, which can only make a read be refused, never served staler.
 */
export const LEADER_CONTACTS_MAX = 1024;

/** A message from the leader, as a follower's bounded-staleness reads use it. */
interface LeaderContact {
  /** When this node stepped it (performance.now()). */
  at: number;
  /** The leader's commit index as of that message (the highest it reported in its term so far). */
  commit: number;
}

export interface ClusterNodeOptions {
  id: NodeId;
  dataDir: string;
  fsync: FsyncMode;
  segmentBytesMax: number;
  /** Log bytes applied since the last snapshot that trigger a new one. */
  snapshotLogBytes: number;
  /** Initial members (ignored when the data dir already holds a cluster). */
  members: readonly MemberAddress[];
  /**
   * Joining a running cluster (`kv serve --join`): a fresh data dir is not bootstrapped with
   * `members` as voters; the node waits, a member of nothing, until the leader adds it as a
   * learner and sends it the log (or a snapshot). `members` then only gives the others' addresses.
   */
  join?: boolean;
  clusterId: string;
  /** Address this node listens on for peers; absent: none (a one-member group nobody dials). */
  peerListen?: { host: string; port: number };
  heartbeatMs: number;
  electionMs: number;
  io?: StorageIo;
  /** Testing only: reads are served from local state without a barrier (not linearizable). */
  unsafeLocalReads?: boolean;
  /**
   * Lease-based reads on the leader (src/node/lease.ts): the lease lasts this many ms (the election
   * timeout less the clock-drift bound). Absent: every linearizable read takes a ReadIndex round.
   */
  leaseMs?: number;
  /** Hears every change applied from the start, the replay of the log at open included (change-events.ts). */
  changeSink?: ChangeSink;
  /** Peer mutual TLS for the Raft links and the links to the leader (src/node/peer-tls.ts). */
  peerTls?: PeerTls;
  /**
   * User and password this node's links to the leader's client port authenticate with (AUTH before
   * KV.PEER), when the cluster requires authentication (--masteruser/--masterauth, or --requirepass).
   */
  linkAuth?: readonly [user: string, password: string];
  /** ACL users from --requirepass/--aclfile (`user <name> <rules>` lines, passwords hashed): the state before any ACL entry. */
  aclUsers?: readonly string[];
}

/** The handshake of a link to the leader's client port: AUTH (when configured), then KV.PEER. */
function linkHello(clusterId: string, id: NodeId, auth: readonly [string, string] | undefined): string[][] {
  const peer = ["KV.PEER", clusterId, String(id)];
  return auth === undefined ? [peer] : [["AUTH", auth[0], auth[1]], peer];
}

/** Why a request failed, as the client sees it. */
export type ClusterFailure =
  | { readonly kind: "clusterdown"; readonly why: string }
  | { readonly kind: "tryagain"; readonly why: string }
  | { readonly kind: "uncertain"; readonly why: string };

/** A request the cluster could not carry out: the reply the client gets says which kind. */
export class ClusterError extends Error {
  override name = "ClusterError";
  constructor(readonly failure: ClusterFailure) {
    super(failure.why);
  }
  /** The RESP error text (without the leading "-"). */
  get reply(): string {
    const f = this.failure;
    switch (f.kind) {
      case "clusterdown":
        return `CLUSTERDOWN ${f.why}`;
      case "tryagain":
        return `TRYAGAIN ${f.why}`;
      case "uncertain":
        return `UNCERTAIN write outcome unknown: ${f.why}`;
    }
  }
}

/** The client-facing meaning of a runtime error for a write. */
export function writeFailure(err: unknown): ClusterError {
  if (err instanceof ClusterError) return err;
  if (err instanceof NotLeaderError) {
    return new ClusterError(err.leader === NONE ? { kind: "clusterdown", why: "no leader elected: retry" } : { kind: "tryagain", why: "leadership moved before the write was logged: retry" });
  }
  if (err instanceof DroppedError) return new ClusterError({ kind: "tryagain", why: `the write was not logged (${err.reason}): retry` });
  if (err instanceof UnknownOutcomeError) return new ClusterError({ kind: "uncertain", why: "leadership was lost after the write was logged; it may or may not be applied" });
  if (err instanceof NodeClosedError) return new ClusterError({ kind: "uncertain", why: `the node stopped (${err.message}); the write may or may not be applied` });
  if (err instanceof LinkLostError) return new ClusterError({ kind: "uncertain", why: `${err.message}; the write may or may not be applied` });
  if (err instanceof Error && err.name === "LinkRefusedError") return new ClusterError({ kind: "tryagain", why: `${err.message}: retry` });
  throw err;
}

/**
 * The failed write behind a storage error (a full disk, a read-only file system, EIO), or
 * undefined when `err` is something else (a broken invariant).
 */
export function storageFailureOf(err: unknown): StorageIoError | undefined {
  if (err instanceof StorageIoError) return err;
  if (err instanceof WalFailedError) return err.first;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (err instanceof Error && typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) {
    return new StorageIoError("write", (err as { path?: string }).path ?? "the data dir", err);
  }
  return undefined;
}

export interface Members {
  clusterId: string;
  members: MemberAddress[];
  /** Members removed from the cluster, with the log index of their removal (ids are never reused). */
  removed?: { id: NodeId; index: number }[];
}

export function loadMembers(io: StorageIo, dataDir: string): Members | undefined {
  const path = join(dataDir, MEMBERS_FILE);
  if (!io.readdir(dataDir).includes(MEMBERS_FILE)) return undefined;
  const fd = io.openRead(path);
  let text: string;
  try {
    const b = new Uint8Array(io.fileSize(fd));
    io.read(fd, b, 0, b.length, 0);
    text = new TextDecoder().decode(b);
  } finally {
    io.close(fd);
  }
  const m = JSON.parse(text) as Members;
  if (typeof m.clusterId !== "string" || !Array.isArray(m.members) || m.members.length === 0) throw new Error(`${path}: not a membership file`);
  if (m.removed !== undefined && (!Array.isArray(m.removed) || !m.removed.every((r) => Number.isSafeInteger(r.id) && Number.isSafeInteger(r.index)))) throw new Error(`${path}: 'removed' is not a list of {id, index}`);
  return m;
}

/** The log holds exactly `entries` from index 1 (no snapshot, nothing else). */
function holdsExactly(log_: RaftLog, entries: readonly Entry[]): boolean {
  if (log_.snapshot().meta.index !== 0 || log_.lastIndex() !== entries.length) return false;
  const held = log_.entries(1, entries.length + 1, Number.MAX_SAFE_INTEGER);
  return held.length === entries.length && held.every((e, i) => e.term === entries[i]!.term && e.type === entries[i]!.type && Buffer.from(e.data).equals(entries[i]!.data));
}

/** Writes the membership file durably (temp file, fsync, rename, fsync of the dir) through the storage's file layer. */
export function saveMembers(io: StorageIo, dataDir: string, m: Members): void {
  const path = join(dataDir, MEMBERS_FILE);
  const tmp = `${path}.tmp`;
  const fd = io.openWrite(tmp);
  try {
    io.write(fd, new TextEncoder().encode(JSON.stringify(m, null, 2) + "\n"), 0);
    io.fsyncSync(fd);
  } finally {
    io.close(fd);
  }
  io.rename(tmp, path);
  io.fsyncDir(dataDir);
}

/**
 * RaftLog with the state machine's image in the snapshot files: a snapshot's data is empty (the
 * transport streams its file to a peer, and writes a received one as a file before Raft hears of
 * it), and the state machine is restored by reading the file.
 */
class KvRaftStorage implements RaftStorage {
  constructor(readonly log: RaftLog) {}

  /** Hears of a write to the log that failed, before the runtime does (see ClusterNode.storageFailed). */
  onWriteFailed: (err: unknown) => void = () => {};

  private watched(p: Promise<void>): Promise<void> {
    return p.catch((err: unknown) => {
      this.onWriteFailed(err);
      throw err;
    });
  }

  /**
   * The stored hard state, its term raised to the log's last term if it is below it: the hard
   * state written with those entries was lost and they were not (an append torn after its
   * entries, before its hard state record; with --fsync everysec or no, a segment whose unsynced
   * tail was lost while a later one's data survived). A node's term is never below a term in its
   * log (a sole voter would otherwise elect itself in an older term and append below it). No vote
   * anyone saw is forgotten: a vote is sent only once its hard state is durable.
   */
  initialState(): { hardState: HardState; confState: ConfState } {
    const st = this.log.initialState();
    const last = this.log.lastIndex();
    const lastTerm = last > 0 ? (this.log.term(last) ?? 0) : 0;
    if (lastTerm <= st.hardState.term) return st;
    return { hardState: { term: lastTerm, vote: NONE, commit: st.hardState.commit }, confState: st.confState };
  }
  firstIndex(): number {
    return this.log.firstIndex();
  }
  lastIndex(): number {
    return this.log.lastIndex();
  }
  term(i: number): number | undefined {
    return this.log.term(i);
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const st = this.startup;
    if (st !== undefined && st.active && lo <= st.through) {
      // Entries applied at start are views of their mapped segments (see MappedRestore); a batch
      // that goes past them is cut short there (a short batch is one cut for size: the rest follows).
      const got = this.log.log.mappedEntries(lo, Math.min(hi, st.through + 1), maxBytes);
      if (got !== undefined) {
        st.noteSegments(got.maps);
        const out: Entry[] = [];
        let bytes = 0;
        for (const r of got.records) {
          const e: Entry = { index: r.index, term: r.term, type: r.type === RecordType.Config ? "conf-change" : "normal", data: r.payload };
          bytes += entryBytes(e);
          if (out.length > 0 && bytes > maxBytes) break;
          out.push(e);
        }
        return out;
      }
    }
    return this.log.entries(lo, hi, maxBytes);
  }

  /** The restart's restore by reference (until it ends), and the keys the snapshot restored held. */
  startup: MappedRestore | undefined;
  restoredKeys = 0;

  /** The restart's restore by reference is over (see MappedRestore). */
  endStartup(): void {
    if (this.startup === undefined) return;
    this.startup.end();
    this.startup = undefined;
    this.log.log.endMapped();
  }

  snapshot(): Snapshot {
    return this.log.snapshot();
  }

  /** Restores `sm` from the snapshot file of `meta`, its entries streamed from the file (blocks while it reads it). */
  restoreInto(sm: KvRaftStateMachine, meta: SnapshotMeta): void {
    const store = this.log.snapshots;
    const found = store.list().find((s) => s.lastIndex === meta.index);
    assert(found !== undefined, `no snapshot file at index ${meta.index}`);
    // The body's checksum is checked as it is read (RaftLog.open checked it too, for the newest).
    const loaded = store.load(join(store.dir, found.name), { checkBodyWhileReading: true });
    assert(loaded.lastTerm === meta.term, `snapshot file at ${meta.index} is of term ${loaded.lastTerm}, Raft's of ${meta.term}`);
    const { acl, kv: m } = readSnapshotFileMeta(loaded.meta, found.name, join(store.dir, found.name));
    const { appliedMs, deleteFloor, tombstones } = m;
    restoreAcl(sm.kv, acl);
    const mapped = this.startup?.active ? loaded.mapped() : undefined;
    if (mapped !== undefined) {
      // The node's own snapshot at start: values stay in the mapped file.
      const n = this.startup!.restoreSnapshot(meta.index, appliedMs, mapped, deleteFloor, tombstones);
      if (n !== loaded.entryCount || sm.kv.db.dbsize() !== n) {
        throw new KvEntryError(meta.index, new KvImageError(`snapshot of ${loaded.entryCount} entries holds ${sm.kv.db.dbsize()} distinct keys`));
      }
    } else {
      this.endStartup();
      sm.restoreEntries(meta.index, appliedMs, loaded.entries(), loaded.entryCount, deleteFloor, tombstones);
    }
    this.restoredKeys = loaded.entryCount;
    if (this.startup !== undefined && this.startup.through <= meta.index) this.endStartup();
  }

  /**
   * Makes the copy-on-write view `view` of the keyspace (taken when the state machine was at
   * `meta.index`) durable as the snapshot file of `meta`, streamed in chunks: the event loop yields
   * every 2 ms and the node keeps applying meanwhile (the view does not change).
   */
  async saveView(meta: SnapshotMeta, view: { appliedMs: number; deleteFloor: number; tombstones: [string, number][]; snapshot: DbSnapshot; acl: string[] | null }): Promise<SnapshotStats> {
    const t0 = performance.now();
    try {
      const res = await this.log.snapshots.write(
        {
          lastIndex: meta.index,
          lastTerm: meta.term,
          meta: withAclSection(encodeSnapshotMeta(view.appliedMs, view.deleteFloor, view.tombstones), view.acl),
          membership: { voters: [...meta.confState.voters], learners: [...meta.confState.learners] },
          yieldEveryMs: 2,
        },
        view.snapshot,
      );
      return { lastIndex: meta.index, entries: res.entryCount, bytes: res.bodyBytes, durationMs: Math.round(performance.now() - t0), longestSliceMs: res.longestSliceMs };
    } finally {
      view.snapshot.close();
    }
  }

  async persist(p: { hardState: HardState | undefined; entries: readonly Entry[]; snapshot: Snapshot | undefined }): Promise<void> {
    // A snapshot from the leader arrives as a file made durable by the transport (RaftLog checks it is there).
    assert(p.snapshot === undefined || p.snapshot.data.length === 0, "a snapshot message carrying an image: the transport streams files");
    return this.watched(this.log.persist(p));
  }

  compact(meta: SnapshotMeta): Promise<void> {
    return this.watched(this.log.compact(meta));
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

/** Applies committed entries; the entries this node proposed answer their clients as they apply. */
class ServingStateMachine<T> implements StateMachine<void> {
  private readonly sink = new ReplyBuffer(1024);
  /** Payload bytes applied since the last snapshot (the trigger of the next one). */
  bytesSinceSnapshot = 0;
  /**
   * Writes applied (command and expiration entries; not the group's own no-op and membership
   * entries), counted from the snapshot restored at start: INFO's rdb_changes_since_last_save is
   * this less `savedChanges`, the count the last snapshot written or installed covers.
   */
  changes = 0;
  savedChanges = 0;
  /** `changes` when the open view was taken (see snapshot). */
  viewChanges = 0;

  constructor(
    readonly kv: KvRaftStateMachine,
    private readonly host: ClusterNode<T>,
    private readonly storage: KvRaftStorage,
  ) {}

  /** `ctx`: this node's proposal, when the entry is the one it proposed (RaftNode.proposeBatch). */
  apply(e: Entry, ctx?: unknown): void {
    this.bytesSinceSnapshot += recordBytesFor(e.data.length);
    if (e.type === "normal" && e.data.length > 0) this.changes++;
    if (e.type === "conf-change") this.host.membershipApplied(e.index, decodeConfChange(e.data));
    if (ctx !== undefined) {
      const p = ctx as Proposal<T>;
      const out = this.host.replyTo(p) as ReplyBuffer;
      this.host.pendingBytesValue -= p.bytes;
      // The entry at (index, term) is the one this node proposed (Log Matching): it runs from the
      // proposal's arguments, not decoded back from its payload.
      this.kv.applyCommand(e.index, p.argv, p.nowMs, p.proto ?? 2, out);
      this.host.onApplied(p);
      return;
    }
    if (e.index <= this.startThrough && e.data.length > 0 && e.type === "normal") this.startCommands++;
    const st = this.storage.startup;
    if (st !== undefined) {
      const done = st.applyMapped(e);
      if (e.index >= st.through) this.storage.endStartup();
      if (done) return;
    }
    this.sink.reset();
    this.kv.applyInto(e, this.sink);
  }

  /** The durable commit index at open, and the entries with a command (or expiration) applied up to it. */
  startThrough = 0;
  startCommands = 0;

  /** The copy-on-write view the last snapshot() took, for saveSnapshot to write (see ClusterNode). */
  view: { appliedMs: number; deleteFloor: number; tombstones: [string, number][]; snapshot: DbSnapshot; acl: string[] | null } | undefined;

  /**
   * Takes a copy-on-write view of the keyspace at the applied index (O(1)); the runtime's
   * saveSnapshot streams it to the snapshot file. The image returned is empty: nothing is built in memory.
   */
  snapshot(): Uint8Array {
    assert(this.view === undefined, "a snapshot view is already open");
    this.storage.endStartup(); // no refs are handed out once a snapshot may read them
    this.view = this.kv.kv.beginSnapshot();
    this.viewChanges = this.changes;
    return NO_IMAGE;
  }

  restore(s: Snapshot): void {
    if (this.started) this.storage.endStartup(); // the leader's snapshot: copied, as the keyspace is replaced
    if (s.data.length === 0 && s.meta.index > 0) this.storage.restoreInto(this.kv, s.meta);
    else this.kv.restore(s);
    this.bytesSinceSnapshot = 0;
    this.savedChanges = this.changes;
    if (this.started) log.info(`installed the leader's snapshot at index ${s.meta.index} (${this.kv.kv.db.dbsize()} keys)`);
    this.started = true;
  }

  /** The first restore is the node's own snapshot at start; later ones come from the leader. */
  private started = false;
}

/** Reads waiting for the state machine to reach an index. */
interface AppliedWaiter {
  index: number;
  resolve: () => void;
}

export class ClusterNode<T> {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly fsm: KvStateMachine;
  readonly raftSm: KvRaftStateMachine;
  readonly view: ClusterView;
  readonly node: RaftNode<void>;
  recovery: RecoveryStats;
  /** Bytes (as logged) of this node's proposals not yet applied or failed. */
  pendingBytesValue = 0;
  lastSnapshot: SnapshotStats | null = null;
  lastSnapshotAtMs = 0;
  lastSnapshotStatus: "ok" | "err" = "ok";
  lastSnapshotError: string | null = null;
  lastSnapshotAttemptSec = -1;
  private snapshotRunning: Promise<SnapshotStats> | null = null;
  private members: Map<NodeId, MemberAddress>;
  /** Members removed, by the log index of their removal (KV.PEER tells a removed node so). */
  private readonly removedAt = new Map<NodeId, number>();
  /** Set once this node applied (or was told of) its own removal: why it serves no more. */
  removedWhy: string | undefined;
  /** A removal probe is in flight; when the last one started (performance.now()); whom it asked last. */
  private probing = false;
  private lastProbeAt = 0;
  private probeTurn = 0;
  private readonly sm: ServingStateMachine<T>;
  private readonly storage: KvRaftStorage;
  private readonly transport: TcpTransport;
  private readonly ticker: Ticker;
  private readonly links: LeaderLinks;
  private readonly opts: ClusterNodeOptions;
  private batch: Proposal<T>[] = [];
  private flushScheduled = false;
  private stampFloorMs = 0;
  private expireInFlight = false;
  private appliedWaiters: AppliedWaiter[] = [];
  /** Reads that arrived this turn of the event loop: they share one read index (see askReadIndex). */
  private turnReads: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private turnReadsScheduled = false;
  private readsWaiting = 0;
  /** The leader's lease (lease-based reads), when on; reads it served. */
  private readonly lease: LeaderLease | undefined;
  leaseReads = 0;
  private closing = false;
  private readonly lastContact = new Map<NodeId, number>();
  /**
   * Messages from a leader while this node followed it, oldest first, with strictly increasing
   * commit indexes (a later contact reporting the same commit replaces the last one). Only those
   * sent once their leader had committed an entry of its own term count (see noteLeaderContact);
   * they stay valid across terms: each tells what some leader had committed when it sent it.
   */
  private contacts: LeaderContact[] = [];
  /** The term in which this node saw its leader's commit index reach an entry of the term. */
  private committedOwnTerm = 0;
  /** When the last tick ran (performance.now()), to report a stalled event loop. */
  private lastTickAt = performance.now();
  /** The role and leader last logged (a change is logged once). */
  private loggedRole = "";

  // Set by the owner (the server): where a proposal's reply goes (called just before it is
  // applied), after it was applied, after each batch of applies (flush replies), and a proposal
  // that failed (ClusterError: refused, or outcome unknown).
  replyTo: (p: Proposal<T>) => ReplyWriter = () => {
    throw new AssertionError("replyTo not set");
  };
  onApplied: (p: Proposal<T>) => void = () => {};
  onBatchDone: () => void = () => {};
  onFailed: (batch: Proposal<T>[], err: Error) => void = () => {};
  /**
   * Called when the node stops on a broken invariant, or on a storage failure while other voters
   * can carry on without it (the process should exit). The only voter of its group does not stop
   * on a storage failure: see storageFailed.
   */
  onFatal: (err: unknown) => void = (err) => {
    throw err;
  };
  /**
   * The failed write that stopped this node's log, once one did. A node that is the only voter of
   * its group then refuses writes (WalFailedError: MISCONF) and answers the writes in flight with an
   * unknown outcome, but keeps serving reads from what it applied: nothing can commit any more, so
   * that state stays the latest. A restart recovers every acknowledged write.
   */
  storageFailed: StorageIoError | undefined;
  /** When open() began (whenServing counts the recovery time from it). */
  private openedAt = performance.now();
  /** The state reflected every write acknowledged so far at least once (see readsLocal). */
  private servedLocally = false;
  /** Why the node stopped (what onFatal was given), once it has. */
  fatalError: unknown = undefined;

  /**
   * A committed entry whose payload is not one kv writes (its checksum was good: damage the
   * checksum did not catch, or a newer kv's entry) as a CorruptLogError naming its file and offset.
   * Every member holds the same bytes, so no member can apply past it.
   */
  private asDamage(err: unknown): unknown {
    if (!(err instanceof KvEntryError) || !(err.reason instanceof KvPayloadError)) return err;
    const at = this.storage.log.log.locate(err.index);
    return new CorruptLogError(
      `log entry ${err.index} has a good checksum but is not a kv entry (${err.reason.message})`,
      at?.file ?? this.storage.log.log.dir,
      at?.offset ?? 0,
      "kv repair cuts the log only at checksum damage, so it keeps this entry; to drop it and every entry after it, " +
        "back up the data dir, truncate this file to the offset above (truncate -s OFFSET FILE) and delete the later segments of wal/",
    );
  }

  private constructor(opts: ClusterNodeOptions, log_: RaftLog, members: Members, recovery: RecoveryStats) {
    this.opts = opts;
    this.id = opts.id;
    this.clusterId = members.clusterId;
    this.members = new Map(members.members.map((m) => [m.id, m]));
    for (const r of members.removed ?? []) this.removedAt.set(r.id, r.index);
    this.recovery = recovery;
    this.storage = new KvRaftStorage(log_);
    this.raftSm = new KvRaftStateMachine({ scanCursorBase: 1 + Math.floor(Math.random() * 2 ** 40) });
    if (opts.changeSink !== undefined) this.raftSm.setChangeSink(opts.changeSink);
    // The restart restores by reference what it applies before serving: the snapshot and the entries up to the durable commit.
    const through = Math.max(log_.initialState().hardState.commit, log_.snapshot().meta.index);
    this.storage.startup = new MappedRestore(this.raftSm, through);
    if (through === 0) this.storage.endStartup();
    this.fsm = this.raftSm.kv;
    // The users the node's flags give, before any snapshot or KV.ACL entry is applied over them.
    if (opts.aclUsers !== undefined) this.fsm.acl.configure(opts.aclUsers, null);
    this.sm = new ServingStateMachine(this.raftSm, this, this.storage);
    this.sm.startThrough = through;
    this.storage.onWriteFailed = (err) => {
      const cause = storageFailureOf(err);
      if (cause !== undefined && this.storageFailed === undefined) {
        this.storageFailed = cause;
        log.error(`the log write failed (${cause.message}): ${this.soleVoter() ? "writes are refused until the node restarts; reads are served from the state applied so far" : "this node stops"}`);
        // A failed compaction does not stop the runtime by itself; a member of a larger group must
        // not stay on as a leader that commits nothing: it stops now.
        if (!this.soleVoter()) this.fatal(err);
      }
    };
    const peers = new Map<NodeId, string>();
    for (const m of members.members) if (m.id !== opts.id) peers.set(m.id, m.peer);
    this.transport = new TcpTransport({
      id: opts.id,
      clusterId: members.clusterId,
      listen: opts.peerListen,
      peers,
      onUnreachable: (id) => this.node?.rawNode.reportUnreachable(id),
      log: logger("peer"),
      snapshots: storeFiles(log_.snapshots),
      onSnapshotStatus: (id, ok) => this.node?.reportSnapshot(id, ok),
      ...(opts.peerTls !== undefined ? { tls: opts.peerTls } : {}),
    });
    const tickMs = Math.max(1, Math.round(opts.heartbeatMs / 5));
    this.lease = opts.leaseMs !== undefined ? new LeaderLease(opts.leaseMs) : undefined;
    const lease = this.lease;
    this.node = new RaftNode<void>({
      id: opts.id,
      storage: this.storage,
      transport: {
        send: (ms) => this.transport.send(lease === undefined ? ms : lease.outgoing(ms, performance.now())),
        onMessage: (h) =>
          this.transport.onMessage((m) => {
            this.lastContact.set(m.from, Date.now());
            h(lease === undefined ? m : lease.incoming(m));
            if (m.type === "append" || m.type === "heartbeat") this.noteLeaderContact(m.from, m.term);
          }),
        close: () => this.transport.close(),
      },
      stateMachine: this.sm,
      rand: new Rand(Number(process.hrtime.bigint() % 2_147_483_647n) ^ (opts.id * 7919)),
      raft: {
        heartbeatTicks: Math.max(1, Math.round(opts.heartbeatMs / tickMs)),
        electionTicks: Math.max(2, Math.round(opts.electionMs / tickMs)),
        preVote: true,
        checkQuorum: true,
        // A lease relies on followers refusing other candidates for an election timeout, a restart included.
        refuseVotesAtStart: this.lease !== undefined,
        committedBytesPerReadyMax: APPLY_BYTES_PER_TURN_MAX,
      },
      yieldAfterApply: (next) => setImmediate(next),
      saveSnapshot: async (meta, data) => {
        assert(data.length === 0, "the state machine's snapshot is a copy-on-write view, not an image");
        const view = this.sm.view;
        assert(view !== undefined, "saveSnapshot without a view");
        this.sm.view = undefined;
        const changes = this.sm.viewChanges;
        this.lastSnapshot = await this.storage.saveView(meta, view);
        this.sm.savedChanges = changes;
      },
      readCtxPrefix: `${opts.id}.${process.pid}.${Date.now()}.`,
      onFatal: (err) => this.stopped(err),
      onApplied: () => this.afterApply(),
    });
    this.ticker = new Ticker(
      {
        tick: () => {
          const now = performance.now();
          const late = now - this.lastTickAt - tickMs;
          this.lastTickAt = now;
          // As etcd's "leader failed to send out heartbeat on time": a stalled event loop delays
          // heartbeats, and past an election timeout the followers elect another leader.
          if (late > opts.electionMs / 3) log.warn(`the event loop stalled ${Math.round(late)} ms (election timeout ${opts.electionMs} ms): ${this.isLeader() ? "heartbeats were late" : "this node's ticks were late"}`);
          this.node.tick();
          this.watchLeaseTransfer();
          this.watchRole();
          this.watchRemoval();
        },
      },
      tickMs,
      (err) => this.fatal(err),
    );
    this.links = new LeaderLinks(linkHello(members.clusterId, opts.id, opts.linkAuth), opts.peerTls);
    this.view = this.makeView();
    this.stampFloorMs = this.fsm.appliedMs;
  }

  /**
   * Opens the data dir: the membership file (written from opts on first start), the Raft log
   * (bootstrapped with the initial voters on first start, as every member does identically),
   * and the newest snapshot. Entries are applied up to the durable commit once the node runs.
   */
  static async open<T>(opts: ClusterNodeOptions): Promise<ClusterNode<T>> {
    const t0 = performance.now();
    const io = opts.io ?? nodeIo;
    if (loadMembers(io, opts.dataDir) === undefined) {
      // A data dir of kv from before the single node ran as a one-member group is converted once.
      const fresh: Members = { clusterId: opts.clusterId, members: [...opts.members].sort((a, b) => a.id - b.id) };
      await convertSingleNodeDir({
        id: opts.id,
        dataDir: opts.dataDir,
        fsync: opts.fsync,
        segmentBytesMax: opts.segmentBytesMax,
        io: opts.io,
        memberIds: fresh.members.map((m) => m.id),
        commit: () => saveMembers(io, opts.dataDir, fresh),
      });
    }
    const log_ = await RaftLog.open({ dataDir: opts.dataDir, fsync: opts.fsync, segmentBytesMax: opts.segmentBytesMax, io: opts.io, wal: { syncsInFlightMax: SYNCS_IN_FLIGHT } });
    try {
      let members = loadMembers(io, opts.dataDir);
      if (members === undefined) {
        const initial: Members = { clusterId: opts.clusterId, members: [...opts.members].sort((a, b) => a.id - b.id) };
        if (!initial.members.some((m) => m.id === opts.id)) throw new ConfigError(`--id ${opts.id} is not one of the members in --cluster`);
        // Every member bootstraps the same entries: one add-voter per member at term 1, committed.
        const entries: Entry[] = initial.members.map((m, i) => ({ index: i + 1, term: 1, type: "conf-change", data: encodeConfChange({ type: "add-voter", node: m.id }) }));
        const fresh = log_.lastIndex() === 0 && log_.snapshot().meta.index === 0;
        // The log is written first, then the membership file: a crash in between leaves exactly
        // these entries (or their append torn after them, before its hard state) and no file.
        // That start is finished here; any other log without the file is refused.
        const bootstrapOnly = !fresh && !opts.join && holdsExactly(log_, entries);
        if (!fresh && !bootstrapOnly) {
          throw new ConfigError(`${opts.dataDir} holds a Raft log but no ${MEMBERS_FILE}: the membership file is gone (restore it from a backup, or restore this node's data dir from a replica)`);
        }
        const hs = log_.initialState().hardState;
        if (!opts.join && hs.commit < entries.length) {
          await log_.persist({ hardState: { term: Math.max(1, hs.term), vote: hs.vote, commit: entries.length }, entries: fresh ? entries : [], snapshot: undefined });
        }
        members = initial;
        saveMembers(io, opts.dataDir, members);
      } else if (members.removed?.some((r) => r.id === opts.id)) {
        const at = members.removed.find((r) => r.id === opts.id)!.index;
        throw new ConfigError(`node ${opts.id} was removed from cluster ${members.clusterId} at log index ${at}: it cannot serve on ${opts.dataDir} again (to rejoin, start it with a new data dir and a new id, then add it)`);
      } else if (!members.members.some((m) => m.id === opts.id)) {
        throw new ConfigError(`${opts.dataDir} belongs to a cluster in which node ${opts.id} is not a member (members: ${members.members.map((m) => m.id).join(",")})`);
      }
      const snapIndex = log_.snapshot().meta.index;
      const recovery: RecoveryStats = {
        snapshotIndex: snapIndex,
        snapshotEntries: 0,
        replayedRecords: Math.max(0, log_.initialState().hardState.commit - snapIndex),
        lastIndex: log_.lastIndex(),
        durationMs: 0,
      };
      const node = new ClusterNode<T>(opts, log_, members, recovery);
      recovery.snapshotEntries = node.storage.restoredKeys;
      recovery.durationMs = Math.round(performance.now() - t0);
      node.openedAt = t0;
      return node;
    } catch (e) {
      await log_.close();
      throw e;
    }
  }

  /**
   * The runtime stopped (RaftNode's onFatal). A storage failure of the only voter leaves the node
   * serving reads with writes refused (see storageFailed); anything else, or a member of a larger
   * group (whose peers elect another leader and carry on once it is gone), is fatal.
   */
  private stopped(err: unknown): void {
    if (this.storageFailed !== undefined && storageFailureOf(err) !== undefined && this.soleVoter() && this.servedLocally) {
      // The transport is closed and nothing is stepped any more: this node stays the only voter
      // and the leader of its term, and its applied state is final until a restart.
      this.links.close();
      return;
    }
    this.fatal(err);
  }

  private fatalSent = false;

  /** onFatal, once. */
  private fatal(err: unknown): void {
    if (this.fatalSent) return;
    this.fatalSent = true;
    // A committed entry this node cannot read is reported as damage at its place in the log.
    const e = this.asDamage(err);
    this.fatalError = e;
    this.onFatal(e);
  }

  /** Logs a change of role or leader (checked every tick). */
  private watchRole(): void {
    const r = this.node.rawNode.raft;
    const now = `${r.role}/${r.lead}/${r.role === "leader" ? r.term : 0}`;
    if (now === this.loggedRole) return;
    this.loggedRole = now;
    // Requests waiting at a former leader are answered now (writes UNCERTAIN, reads CLUSTERDOWN: retry).
    if (r.lead !== NONE) this.links.leaderIs(r.lead === this.id ? undefined : this.leaderAddr());
    if (r.role === "leader") log.info(`leader of term ${r.term}`);
    else if (r.role === "follower" && r.lead !== NONE) log.info(`following node ${r.lead} (term ${r.term})`);
    else if (r.role === "follower") log.info(`no leader known (term ${r.term})`);
  }

  /**
   * Starts ticking (elections, heartbeats). The only voter of its group campaigns at once rather
   * than after an election timeout: nobody else can lead, so a single node serves as it starts.
   */
  start(): void {
    this.ticker.start();
    if (this.soleVoter() && !this.isLeader()) this.node.campaign();
  }

  /** This node is the group's only voter (a one-member group, or what remains of one). */
  soleVoter(): boolean {
    const voters = this.node.rawNode.raft.voters;
    return voters.size === 1 && voters.has(this.id);
  }

  /**
   * Reads may be served from this node's state with no read barrier: it is the only voter and
   * leads, and it has applied an entry of its own term, so everything committed before it became
   * leader is applied (a restart may hold committed entries its durable commit index did not yet
   * cover) and every write acknowledged since was applied before its reply. No other node can be
   * elected while it is the only voter, so its state cannot be stale.
   */
  readsLocal(): boolean {
    if (this.closing) return false;
    const r = this.node.rawNode.raft;
    if (r.role !== "leader" || !this.soleVoter()) return false;
    // After a storage failure nothing commits any more (see storageFailed): the state is the latest.
    if (this.storageFailed !== undefined) return this.servedLocally;
    if (r.term === this.localReadsTerm) return true;
    if (this.storage.log.term(this.applied) !== r.term) return false;
    this.localReadsTerm = r.term; // stays true while it leads this term (applied only moves on)
    this.servedLocally = true;
    return true;
  }

  /** The term in which readsLocal() last found an entry of the term applied. */
  private localReadsTerm = 0;

  /**
   * Resolves true once reads may be served locally (see readsLocal) for a sole voter, or at once
   * for a member of a larger group (which serves with a barrier, or forwards, from the start);
   * false once `stallMs` pass with the applied index not moving. Rejects with what stopped the
   * node if it stops meanwhile (a log entry it cannot apply: CorruptLogError).
   */
  async whenServing(stallMs: number): Promise<boolean> {
    let applied = this.applied;
    let since = performance.now();
    for (let i = 0; this.soleVoter() && !this.readsLocal(); i++) {
      assert(i < 100_000_000, "whenServing looped without bound");
      if (this.fatalError !== undefined) throw this.fatalError;
      if (this.storageFailed !== undefined) return false;
      if (this.applied !== applied) {
        applied = this.applied;
        since = performance.now();
      } else if (performance.now() - since >= stallMs) return false;
      await Bun.sleep(1);
    }
    // Recovery ends once the log is applied and reads are served (a sole voter; see serve).
    if (this.soleVoter()) {
      this.recovery.durationMs = Math.round(performance.now() - this.openedAt);
      this.recovery.replayedRecords = this.sm.startCommands; // as the single node counted: records holding a write
    }
    return true;
  }

  /**
   * The address clients reach this node at, as the server listens (with --port 0, the port the
   * system chose): ROLE and CLUSTER describe this node with it.
   */
  advertise(addr: string): void {
    const m = this.members.get(this.id);
    if (m !== undefined) this.members.set(this.id, { ...m, addr });
  }

  get peerPort(): number {
    return this.transport.port;
  }

  /** Peer mutual TLS is on: members' links must present a member's certificate. */
  get peerTlsOn(): boolean {
    return this.opts.peerTls !== undefined;
  }

  /** Peer TLS material was re-read: the peer listener takes it (TcpTransport.reloadTls). */
  reloadPeerTls(): void {
    this.transport.reloadTls();
  }

  // ---- membership: addresses through the log, changes asked by operators ----

  /**
   * A committed conf change is being applied (in log order, on every member, and again on replay
   * after a restart): the member map, the transport's peers and raft-members.json follow it. A new
   * member's addresses travel in the entry's context (see memberContext). Raft's own membership
   * changes when the entry's Ready is advanced, right after.
   */
  membershipApplied(index: number, cc: ConfChange): void {
    let changed = false;
    if (cc.type === "remove-node") {
      if (this.members.has(cc.node)) {
        this.members.delete(cc.node);
        changed = true;
      }
      if (!this.removedAt.has(cc.node)) {
        this.removedAt.set(cc.node, index);
        changed = true;
      }
      if (cc.node !== this.id) this.transport.removePeer(cc.node);
    } else if (cc.context !== undefined) {
      const a = parseMemberContext(cc.context, cc.node);
      const old = this.members.get(cc.node);
      if (old === undefined || old.addr !== a.addr || old.peer !== a.peer) {
        // This node's own client address is the one it listens on (advertise), not the one it was added with.
        this.members.set(cc.node, cc.node === this.id && old !== undefined ? { ...a, addr: old.addr } : a);
        if (cc.node !== this.id && old?.peer !== a.peer) this.transport.addPeer(cc.node, a.peer);
        changed = true;
      }
    }
    if (changed) this.saveMembersFile();
    if (cc.type === "remove-node" && cc.node === this.id) this.removed(index);
  }

  private saveMembersFile(): void {
    const removed = [...this.removedAt].map(([id, index]) => ({ id, index }));
    saveMembers(this.opts.io ?? nodeIo, this.opts.dataDir, { clusterId: this.clusterId, members: [...this.members.values()].sort((a, b) => a.id - b.id), ...(removed.length > 0 ? { removed } : {}) });
  }

  /** The log index at which member `id` was removed, if it was. */
  removedIndex(id: NodeId): number | undefined {
    return this.removedAt.get(id);
  }

  /**
   * This node is no longer a member: it says so once, answers every client with REMOVED (see the
   * server), and after an election timeout (its last messages, a leader's commit among them, go out
   * first) stops taking part: no ticks, no peers, its log closed. Its peers refuse its connections.
   */
  private removed(index: number): void {
    if (this.removedWhy !== undefined) return;
    this.removedWhy = `node ${this.id} was removed from cluster ${this.clusterId} at log index ${index}`;
    log.warn(`${this.removedWhy}: it serves no more (clients get REMOVED errors); stop it, its data dir can be deleted`);
    setTimeout(() => {
      if (this.closing) return;
      this.ticker.stop();
      this.links.close();
      void this.node.close().catch((err: unknown) => this.onFatal(err));
    }, this.opts.electionMs);
  }

  /**
   * A member cut off from the leader for a while asks another member whether it was removed (the
   * leader stops sending to a removed member, so it may never see the commit of its own removal):
   * a member that applied the removal refuses its KV.PEER with REMOVED and the log index.
   */
  private watchRemoval(): void {
    if (this.removedWhy !== undefined || this.closing || this.probing) return;
    const r = this.node.rawNode.raft;
    if (r.role === "leader" || (!r.voters.has(this.id) && !r.learners.has(this.id))) return;
    const tickMs = Math.max(1, Math.round(this.opts.heartbeatMs / 5));
    const now = performance.now();
    if (r.leaderContactElapsed * tickMs < REMOVAL_PROBE_AFTER_ELECTIONS * this.opts.electionMs || now - this.lastProbeAt < this.opts.electionMs) return;
    const others = [...this.members.values()].filter((m) => m.id !== this.id && m.addr !== "");
    if (others.length === 0) return;
    const m = others[this.probeTurn++ % others.length]!;
    this.probing = true;
    this.lastProbeAt = now;
    const link = new LeaderLinks(linkHello(this.clusterId, this.id, this.opts.linkAuth), this.opts.peerTls);
    link.request(m.addr, ["PING"]).then(
      () => undefined,
      (err: Error) => {
        const found = /REMOVED node \d+ was removed from cluster \S+ at log index (\d+)/.exec(err.message);
        if (found !== null && !this.closing) {
          log.warn(`node ${m.id} says this node was removed`);
          this.removedAt.set(this.id, Number(found[1]));
          this.members.delete(this.id);
          this.saveMembersFile();
          this.removed(Number(found[1]));
        }
      },
    ).finally(() => {
      link.close();
      this.probing = false;
    });
  }

  /** Refuses a membership request on a node that does not lead (the server forwards it). */
  private leaderOnly(): void {
    if (this.closing || this.removedWhy !== undefined) throw new MembershipError(this.removedWhy ?? "node shutting down");
    if (!this.isLeader()) throw new MembershipError("this node is not the leader");
  }

  /** Proposes `cc` and resolves once it is applied here (Raft refuses a second change while one is pending). */
  private async changeMembership(cc: ConfChange): Promise<number> {
    const before = this.node.status().lastIndex;
    try {
      await this.node.proposeMembershipChange(cc);
    } catch (err) {
      if (err instanceof DroppedError && err.reason === "pending-conf-change") throw new MembershipError("another membership change is in progress: retry once it is applied", "TRYAGAIN");
      if (err instanceof DroppedError && err.reason === "invalid-conf-change") throw new MembershipError(`the change (${cc.type} ${cc.node}) does not fit the current membership`);
      if (err instanceof NotLeaderError) throw new MembershipError("this node is no longer the leader: retry", "TRYAGAIN");
      throw new MembershipError(writeFailure(err).reply.replace(/^\S+ /, ""), writeFailure(err).failure.kind === "uncertain" ? "UNCERTAIN" : "TRYAGAIN");
    }
    return Math.max(before + 1, this.applied);
  }

  /** Adds node `id` as a learner with its client and peer addresses (they travel in the entry). Resolves with the log index it applied at. */
  async addLearner(id: NodeId, addr: string, peer: string): Promise<number> {
    this.leaderOnly();
    const r = this.node.rawNode.raft;
    if (this.removedAt.has(id)) throw new MembershipError(`node ${id} was removed at log index ${this.removedAt.get(id)}: ids are not reused, add it under a new id`);
    if (r.voters.has(id) || r.learners.has(id)) throw new MembershipError(`node ${id} is already a ${r.voters.has(id) ? "voter" : "learner"}`);
    for (const m of this.members.values()) {
      if (m.addr === addr || m.peer === peer) throw new MembershipError(`node ${m.id} already uses ${m.addr === addr ? `client address ${addr}` : `peer address ${peer}`}`);
    }
    return this.changeMembership({ type: "add-learner", node: id, context: memberContext({ id, addr, peer }) });
  }

  /**
   * How far learner `id` trails the leader: undefined when it has caught up (it acknowledged the
   * log and its match index is within PROMOTE_LAG_ENTRIES_MAX of the commit index), else why not.
   */
  learnerLag(id: NodeId): string | undefined {
    const r = this.node.rawNode.raft;
    const pr = r.prs.get(id);
    const commit = r.log.committed;
    if (pr === undefined) return `node ${id} is not a member`;
    const behind = Math.max(0, commit - pr.match);
    const seen = this.lastContact.get(id);
    const silentMs = seen === undefined ? -1 : Date.now() - seen;
    if (pr.match > 0 && (silentMs < 0 || silentMs > this.opts.electionMs)) return `node ${id} is ${behind} entries behind: its log matches up to index ${pr.match} of the leader's commit index ${commit}, but this node has not heard from it ${silentMs < 0 ? "at all" : `for ${silentMs} ms`} (is it running?)`;
    if (pr.state !== "replicate") return `node ${id} is ${behind} entries behind: its log matches up to index ${pr.match} of the leader's commit index ${commit}, and it is still ${pr.state === "snapshot" ? "receiving a snapshot" : "being probed (it has not acknowledged the leader's log)"}`;
    if (behind > PROMOTE_LAG_ENTRIES_MAX) return `node ${id} is ${behind} entries behind: its log matches up to index ${pr.match} of the leader's commit index ${commit} (promotion needs at most ${PROMOTE_LAG_ENTRIES_MAX})`;
    return undefined;
  }

  /** Makes learner `id` a voter; refused, saying how far behind, until it has caught up. */
  async promote(id: NodeId): Promise<number> {
    this.leaderOnly();
    const r = this.node.rawNode.raft;
    if (r.voters.has(id)) throw new MembershipError(`node ${id} is already a voter`);
    if (!r.learners.has(id)) throw new MembershipError(`node ${id} is not a learner of this cluster`);
    const lag = this.learnerLag(id);
    if (lag !== undefined) throw new MembershipError(`${lag}; retry once it has caught up`, "NOTREADY");
    return this.changeMembership({ type: "add-voter", node: id });
  }

  /** Removes member `id` (a voter or a learner). A leader removing itself steps down once the change commits. */
  async remove(id: NodeId): Promise<number> {
    this.leaderOnly();
    const r = this.node.rawNode.raft;
    if (!r.voters.has(id) && !r.learners.has(id)) throw new MembershipError(`node ${id} is not a member of this cluster`);
    if (r.voters.has(id) && r.voters.size === 1) throw new MembershipError(`node ${id} is the only voter: a cluster cannot remove its last voter`);
    return this.changeMembership({ type: "remove-node", node: id });
  }

  /**
   * Hands leadership to voter `to` and resolves once this node sees `to` lead (catching it up
   * first if needed); rejects if it did not happen within TRANSFER_WAIT_ELECTIONS election timeouts.
   */
  async transfer(to: NodeId): Promise<void> {
    this.leaderOnly();
    if (to === this.id) return;
    const r = this.node.rawNode.raft;
    if (!r.voters.has(to)) throw new MembershipError(r.learners.has(to) ? `node ${to} is a learner: promote it first` : `node ${to} is not a member of this cluster`);
    const res = this.node.transferLeadership(to);
    if (res === "not-leader") throw new MembershipError("this node is no longer the leader: retry", "TRYAGAIN");
    if (res !== "ok") throw new MembershipError(`cannot transfer leadership to node ${to}: ${res}`);
    if (!(await this.waitLeader(to, TRANSFER_WAIT_ELECTIONS * this.opts.electionMs))) {
      throw new MembershipError(`node ${to} did not take over within ${TRANSFER_WAIT_ELECTIONS * this.opts.electionMs} ms (is it up and caught up?)`, "TRYAGAIN");
    }
  }

  /** Resolves true once this node knows `id` as the leader; false after `timeoutMs`. */
  async waitLeader(id: NodeId, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (let i = 0; performance.now() < deadline && !this.closing; i++) {
      assert(i < 10_000_000, "waitLeader looped without bound");
      const r = this.node.rawNode.raft;
      if (r.lead === id && (id === this.id) === (r.role === "leader")) return true;
      await Bun.sleep(5);
    }
    return false;
  }

  /** Sends a membership request to the leader (any node accepts them) and resolves with its reply bytes. */
  async forwardAdmin(argv: readonly string[]): Promise<Buffer> {
    const addr = this.leaderAddr();
    if (addr === undefined) throw new ClusterError({ kind: "clusterdown", why: "no leader elected: retry" });
    try {
      return await this.links.request(addr, argv);
    } catch (err) {
      throw writeFailure(err);
    }
  }

  // ---- what the server asks ----

  get pendingBytes(): number {
    return this.pendingBytesValue;
  }

  get applied(): number {
    return this.node.appliedIndex;
  }

  get walStats() {
    return this.storage.log.log.stats;
  }

  /** Writes applied since the last snapshot (Redis's rdb_changes_since_last_save; see ServingStateMachine.changes). */
  get changesSinceSnapshot(): number {
    return this.sm.changes - this.sm.savedChanges;
  }

  get snapshotInProgress(): boolean {
    return this.snapshotRunning !== null;
  }

  isLeader(): boolean {
    return this.node.rawNode.raft.role === "leader";
  }

  /** The leader's client address, or undefined when no leader is known (or it has no address). */
  leaderAddr(): string | undefined {
    const lead = this.node.rawNode.raft.lead;
    if (lead === NONE) return undefined;
    return this.members.get(lead)?.addr;
  }

  /**
   * The time commands run at, from the wall clock: never earlier than a time already used or
   * applied, so a clock stepped back neither brings an expired key back for reads nor stamps a
   * write before one already logged.
   */
  now(wallMs: number): number {
    let t = wallMs;
    if (this.fsm.appliedMs > t) t = this.fsm.appliedMs;
    if (this.stampFloorMs > t) t = this.stampFloorMs;
    this.stampFloorMs = t;
    return t;
  }

  /**
   * Queues a write (leader only; the server forwards otherwise). It joins the entries proposed at
   * the end of this turn of the event loop: one Ready, one append, one fdatasync for all.
   */
  propose(argv: string[], nowMs: number, owner: T, proto: 2 | 3 = 2, forwarded = false): Proposal<T> {
    const commandBytes = encodedCommandBytes(argv);
    const payloadBytes = commandBytes + COMMAND_ENTRY_OVERHEAD_BYTES;
    if (payloadBytes > RECORD_PAYLOAD_BYTES_MAX) {
      throw new WriteRefusedError(
        `write not accepted: the command is ${payloadBytes} bytes as a log entry, past the log's record limit of ${RECORD_PAYLOAD_BYTES_MAX} bytes (${RECORD_PAYLOAD_BYTES_MAX / 1048576} MiB) for one write`,
      );
    }
    const t = this.now(nowMs);
    const payload = encodeCommandEntry(argv, t, proto, commandBytes);
    const p: Proposal<T> = { index: 0, argv, nowMs: t, proto, owner, payload, bytes: recordBytesFor(payload.length), forwarded };
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
    let batch = this.batch;
    if (batch.length === 0) return;
    if (this.storageFailed !== undefined) {
      // The log takes nothing more: refused (MISCONF), certainly not logged.
      this.batch = [];
      for (const p of batch) this.fail(p, undefined, false);
      return;
    }
    if (batch.length > PROPOSALS_PER_TURN_MAX) {
      // A burst (deep pipelines from many clients) is proposed over several turns, so heartbeats,
      // elections and replies run in between.
      this.batch = batch.slice(PROPOSALS_PER_TURN_MAX);
      batch = batch.slice(0, PROPOSALS_PER_TURN_MAX);
      this.flushScheduled = true;
      setImmediate(this.flushTask);
    } else this.batch = [];
    const datas: Uint8Array[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) datas[i] = batch[i]!.payload;
    // Each proposal rides with its entry: the state machine answers it when the entry applies as
    // proposed; otherwise the runtime reports it failed (onProposalFailed).
    const results = this.node.proposeBatch(datas, batch, this.onProposalFailed);
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      if ("error" in r) this.fail(batch[i]!, r.error, false);
      else batch[i]!.index = r.index;
    }
  }

  /** The runtime gave up on the entry this node proposed at `index` (not applied as proposed, or unknown). */
  private readonly onProposalFailed = (_index: number, err: Error, p: Proposal<T>): void => {
    this.fail(p, err, true);
  };

  /** `appended`: the write reached the runtime's log (in memory at least), so its outcome may be unknown. */
  private fail(p: Proposal<T>, err: unknown, appended: boolean): void {
    this.pendingBytesValue -= p.bytes;
    const failed = this.storageFailed;
    if (failed === undefined) this.onFailed([p], writeFailure(err));
    else if (!appended) this.onFailed([p], new WalFailedError(failed));
    else this.onFailed([p], new ClusterError({ kind: "uncertain", why: `the log write failed (${failed.message}); it may or may not be applied after a restart` }));
  }

  /** After a Ready applied entries: answer the server, wake reads, maybe snapshot. */
  private afterApply(): void {
    this.onBatchDone();
    // No other member will ask for the applied entries: their copies in memory go.
    const raft = this.node?.rawNode.raft; // unset while the constructor applies the committed log
    if (raft !== undefined && raft.voters.size + raft.learners.size === 1) this.storage.log.forgetRecentThrough(this.applied);
    if (this.appliedWaiters.length > 0) {
      const applied = this.applied;
      const still: AppliedWaiter[] = [];
      for (const w of this.appliedWaiters) {
        if (w.index <= applied) w.resolve();
        else still.push(w);
      }
      this.appliedWaiters = still;
    }
    this.maybeSnapshot();
  }

  /**
   * A snapshot once the entries applied since the last one pass --snapshot-log-bytes, checked after
   * each apply and when a snapshot ends (the log may have passed it again meanwhile). `> 0`: with
   * --snapshot-log-bytes 0 a snapshot follows each batch of writes, not each snapshot.
   */
  private maybeSnapshot(): void {
    const bytes = this.sm.bytesSinceSnapshot;
    if (bytes > 0 && bytes >= this.opts.snapshotLogBytes && this.snapshotRunning === null && !this.closing) {
      void this.snapshot().catch(() => {}); // logged and shown in INFO persistence by snapshot()
    }
  }

  /** Resolves true once the state machine has applied `index`; false if `timeoutMs` passes first. */
  waitApplied(index: number, timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (this.applied >= index) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const w: AppliedWaiter = {
        index,
        resolve: () => {
          if (timer !== undefined) clearTimeout(timer);
          resolve(true);
        },
      };
      this.appliedWaiters.push(w);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          const i = this.appliedWaiters.indexOf(w);
          if (i >= 0) this.appliedWaiters.splice(i, 1);
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  /**
   * A linearizable read point: resolves once this node's state reflects every write acknowledged
   * before the call (ReadIndex on the leader; on a follower, the leader's read index, then waits to
   * apply it). Rejects with ClusterError (clusterdown: no leader or leadership lost; retry).
   */
  readBarrier(): Promise<void> {
    if (this.opts.unsafeLocalReads) return Promise.resolve();
    const leased = this.leaseReadIndex();
    if (leased !== undefined) {
      this.leaseReads++;
      if (this.applied >= leased) return Promise.resolve();
      return this.waitApplied(leased, LINK_REQUEST_TIMEOUT_MS).then((ok) => {
        if (!ok) throw new ClusterError({ kind: "clusterdown", why: `this node did not apply its commit index ${leased} within ${LINK_REQUEST_TIMEOUT_MS} ms: retry` });
      });
    }
    if (this.closing) return Promise.reject(new ClusterError({ kind: "clusterdown", why: "node shutting down" }));
    if (this.readsWaiting >= READS_WAITING_MAX) return Promise.reject(new ClusterError({ kind: "tryagain", why: `${READS_WAITING_MAX} reads already wait: retry` }));
    this.readsWaiting++;
    const done = () => {
      this.readsWaiting--;
    };
    // Every read of this turn of the event loop shares one read index (one round on the leader).
    const p = new Promise<void>((resolve, reject) => {
      this.turnReads.push({ resolve, reject });
      if (!this.turnReadsScheduled) {
        this.turnReadsScheduled = true;
        setImmediate(() => this.askReadIndex());
      }
    });
    return p.finally(done);
  }

  /** A leader in a transfer of leadership holds no lease for the rest of its term (the target campaigns at once). */
  private watchLeaseTransfer(): void {
    const r = this.node.rawNode.raft;
    if (this.lease !== undefined && r.role === "leader" && r.leadTransferee !== NONE) this.lease.revoke(r.term);
  }

  /**
   * Lease-based reads: on a leader that holds its lease and has committed an entry of its term, the
   * read index is its commit index, with no round (src/node/lease.ts). Undefined: no lease, take the
   * ReadIndex path.
   */
  private leaseReadIndex(): number | undefined {
    if (this.lease === undefined || this.closing || this.storageFailed !== undefined) return undefined;
    const r = this.node.rawNode.raft;
    if (r.role !== "leader") return undefined;
    this.watchLeaseTransfer();
    const commit = r.log.committed;
    if (r.log.term(commit) !== r.term) return undefined;
    return this.lease.holds(r.term, this.id, r.confState().voters, performance.now()) ? commit : undefined;
  }

  /** One read index for every read that arrived this turn: a local round on the leader, one request to it elsewhere. */
  private askReadIndex(): void {
    this.turnReadsScheduled = false;
    const waiters = this.turnReads;
    this.turnReads = [];
    if (waiters.length === 0) return;
    if (this.storageFailed !== undefined && this.readsLocal()) {
      // Nothing commits any more: the applied state is the latest.
      for (const w of waiters) w.resolve();
      return;
    }
    const fail = (e: ClusterError) => {
      for (const w of waiters) w.reject(e);
    };
    if (this.isLeader()) {
      // Became the leader meanwhile: one local round for all.
      this.node.readIndex().then(
        () => waiters.forEach((w) => w.resolve()),
        (err: unknown) => fail(this.readFailure(err)),
      );
      return;
    }
    const addr = this.leaderAddr();
    if (addr === undefined) {
      fail(new ClusterError({ kind: "clusterdown", why: "no leader elected: retry" }));
      return;
    }
    this.links.request(addr, ["KV.READINDEX"]).then(
      (reply) => {
        const text = reply.toString("latin1");
        if (text[0] !== ":") {
          fail(new ClusterError({ kind: "clusterdown", why: `the leader could not confirm a read (${text.slice(1).trim()}): retry` }));
          return;
        }
        const index = Number(text.slice(1).trim());
        void this.waitApplied(index, LINK_REQUEST_TIMEOUT_MS).then((ok) => {
          if (ok) waiters.forEach((w) => w.resolve());
          else fail(new ClusterError({ kind: "clusterdown", why: `this node did not catch up with the leader's index ${index} within ${LINK_REQUEST_TIMEOUT_MS} ms: retry` }));
        });
      },
      (err: Error) => fail(new ClusterError({ kind: "clusterdown", why: `${err.message}: retry` })),
    );
  }

  /**
   * An append or heartbeat was just stepped. If it came from this follower's leader of the current
   * term, and that leader has committed an entry of its term (this node's commit index, which the
   * leader only ever moves to a committed index, holds an entry of the term: so the leader's commit
   * index covers every write any earlier leader acknowledged), remember when it arrived and the
   * leader's commit index it reported (Raft keeps the highest of the term: heartbeats carry the
   * leader's own commit index, appends their commit field, which is the leader's commit index).
   */
  private noteLeaderContact(from: NodeId, term: number): void {
    const r = this.node.rawNode.raft;
    if (r.role !== "follower" || r.lead !== from || r.term !== term) return;
    if (this.committedOwnTerm !== r.term) {
      if (r.log.term(r.log.committed) !== r.term) return;
      this.committedOwnTerm = r.term; // stays so for the term: the commit index only moves on
    }
    const at = performance.now();
    const commit = r.leaderCommit;
    const last = this.contacts[this.contacts.length - 1];
    if (last !== undefined && last.commit >= commit) {
      // The same commit index heard again (a lower one is older news: a later leader's commit index
      // covers every earlier leader's once it committed an entry of its term).
      if (last.commit === commit) last.at = at;
      return;
    }
    // Contacts older than the newest one already applied can never be the one a read is judged by.
    const applied = this.applied;
    let drop = 0;
    while (drop + 1 < this.contacts.length && this.contacts[drop + 1]!.commit <= applied) drop++;
    if (drop > 0) this.contacts.splice(0, drop);
    if (this.contacts.length >= LEADER_CONTACTS_MAX) this.contacts.shift();
    this.contacts.push({ at, commit });
  }

  /**
   * Null when this node may answer a read from its own state with staleness at most `maxMs`:
   * within the last `maxMs` ms it received, while following, a message from its leader (sent once
   * that leader had committed an entry of its term) whose reported commit index this node has
   * applied. The state then reflects every write that leader had committed when it sent that
   * message. Otherwise the reason, as a `STALE ...` error reply. Asked on a node that does not
   * lead (the leader's reads stay linearizable); it may have lost its leader since (a candidate
   * still serves within the bound).
   */
  staleReadRefusal(maxMs: number): string | null {
    if (this.closing) return "STALE this node is shutting down";
    const now = performance.now();
    const applied = this.applied;
    const cs = this.contacts;
    let i = cs.length - 1;
    while (i >= 0 && cs[i]!.commit > applied) i--;
    if (i > 0) cs.splice(0, i); // older contacts can no longer be the newest one applied
    const served = i >= 0 ? cs[0]! : undefined;
    if (served !== undefined && now - served.at <= maxMs) return null;
    const newest = cs[cs.length - 1];
    if (newest === undefined) return `STALE not heard from a leader that has committed an entry of its term (max staleness ${maxMs} ms)`;
    const heardMs = now - newest.at;
    if (newest === served || heardMs > maxMs) return `STALE last heard from the leader ${Math.ceil(heardMs)} ms ago (max staleness ${maxMs} ms)`;
    return `STALE applied index ${applied} is behind the leader's commit index ${newest.commit} reported ${Math.round(heardMs)} ms ago (max staleness ${maxMs} ms)`;
  }

  private readFailure(err: unknown): ClusterError {
    if (err instanceof ClusterError) return err;
    if (err instanceof NotLeaderError) return new ClusterError({ kind: "clusterdown", why: "leadership changed during the read: retry" });
    if (err instanceof DroppedError) return new ClusterError({ kind: "tryagain", why: `read not confirmed (${err.reason}): retry` });
    if (err instanceof NodeClosedError) return new ClusterError({ kind: "clusterdown", why: "node shutting down" });
    throw err;
  }

  /**
   * Sends a write to the leader and resolves with its reply bytes (in `proto`) and the log index the
   * leader applied it at (0 for a reply that is not an applied write: an error). Rejects with
   * ClusterError: clusterdown/tryagain when it was not sent, uncertain when the link was lost
   * after it was.
   */
  async forward(argv: readonly string[], proto: 2 | 3): Promise<{ bytes: Buffer; index: number }> {
    const addr = this.leaderAddr();
    if (addr === undefined) throw new ClusterError({ kind: "clusterdown", why: "no leader elected: retry" });
    let reply: Buffer;
    try {
      reply = await this.links.request(addr, ["KV.FWD", String(proto), ...argv]);
    } catch (err) {
      throw writeFailure(err);
    }
    // An applied write comes back as `*2 :<index> <reply>`; anything else (an error) as itself.
    const m = FORWARDED_HEAD.exec(reply.subarray(0, 32).toString("latin1"));
    if (m === null) return { bytes: reply, index: 0 };
    const index = Number(m[1]);
    // Answered only once applied here too: what the client sends next reads its own write on this
    // node. A node that cannot catch up in time (cut off from the leader just after) answers that
    // the outcome is unknown: its client's next reads here could not be promised to see the write.
    if (!(await this.waitApplied(index, LINK_REQUEST_TIMEOUT_MS))) {
      throw new ClusterError({ kind: "uncertain", why: `the leader applied it at index ${index}, but this node did not catch up within ${LINK_REQUEST_TIMEOUT_MS} ms` });
    }
    return { bytes: reply.subarray(m[0].length), index };
  }

  /**
   * The leader proposes the deletion of keys it sees expired (one entry of up to maxKeys keys at a
   * time); every member deletes them when it applies. Followers do nothing: their reads hide
   * expired keys already. Returns the keys proposed.
   */
  sweepExpired(nowMs: number, maxKeys: number): number {
    if (!this.isLeader() || this.expireInFlight || this.closing || this.storageFailed !== undefined) return 0;
    const t = this.now(nowMs);
    const keys = this.raftSm.findExpired(t, Math.min(maxKeys, EXPIRE_BATCH_KEYS_MAX));
    if (keys.length === 0) return 0;
    const [r] = this.node.proposeMany([encodeExpireEntry(keys, t)]);
    if (r === undefined || "error" in r) return 0;
    this.expireInFlight = true;
    r.result.then(
      () => (this.expireInFlight = false),
      () => (this.expireInFlight = false),
    );
    return keys.length;
  }

  /**
   * For a backup (KV.BACKUP): after a read barrier (every write acknowledged before the call is
   * applied here), a snapshot at the applied index (or the newest one, when it already covers every
   * applied entry), its file opened for reading. The descriptor stays valid if the file is pruned
   * meanwhile; the caller closes it.
   */
  async openBackup(): Promise<{ fd: number; bytes: number; index: number; term: number; clusterId: string; members: MemberAddress[] }> {
    await this.readBarrier();
    const atLeast = this.applied;
    await this.snapshot();
    const meta = this.storage.log.snapshot().meta;
    assert(meta.index >= atLeast, `the snapshot for a backup is at ${meta.index}, before the read index ${atLeast}`);
    const fd = openSync(join(this.storage.log.snapshots.dir, snapshotName(meta.index)), "r");
    return { fd, bytes: fstatSync(fd).size, index: meta.index, term: meta.term, clusterId: this.clusterId, members: [...this.members.values()].sort((a, b) => a.id - b.id) };
  }

  /** Snapshots the state machine at the applied index and compacts the log behind it. */
  async snapshot(): Promise<SnapshotStats> {
    while (this.snapshotRunning !== null) await this.snapshotRunning.catch(() => {});
    if (this.closing) throw new Error("the node is shutting down");
    if (this.storageFailed !== undefined) throw new Error(`the log cannot be written since an earlier failure (${this.storageFailed.message}); restart the node`);
    const t0 = performance.now();
    const index = this.applied;
    const run = (async () => {
      this.sm.bytesSinceSnapshot = 0;
      const before = this.lastSnapshot;
      await this.node.snapshot();
      const stats = this.lastSnapshot ?? before;
      if (stats === null || stats === before) {
        // Nothing new to cover: the last snapshot already holds every applied entry.
        return before ?? { lastIndex: this.storage.log.snapshot().meta.index, entries: 0, bytes: 0, durationMs: 0, longestSliceMs: 0 };
      }
      this.lastSnapshotAtMs = Date.now();
      log.info(`snapshot at index ${stats.lastIndex}: ${stats.entries} keys, ${stats.bytes} bytes in ${stats.durationMs} ms`);
      return stats;
    })();
    this.snapshotRunning = run;
    try {
      const s = await run;
      this.lastSnapshotStatus = "ok";
      this.lastSnapshotError = null;
      this.lastSnapshotAttemptSec = Math.round((performance.now() - t0) / 1000);
      this.snapshotRunning = null;
      // The log may have passed the threshold again while this one was written.
      this.maybeSnapshot();
      return s;
    } catch (e) {
      this.lastSnapshotStatus = "err";
      this.lastSnapshotError = (e as Error).message;
      log.error(`snapshot at index ${index} failed: ${(e as Error).message}`);
      this.lastSnapshotAttemptSec = Math.round((performance.now() - t0) / 1000);
      this.snapshotRunning = null;
      throw e;
    }
  }

  /**
   * A leader that stops on purpose hands leadership to its most caught-up voter first (as etcd on a
   * graceful stop), so writes pause for a transfer (a round trip or two) rather than an election
   * timeout. Bounded by TRANSFER_ON_CLOSE_MS.
   */
  private async handOverLeadership(): Promise<void> {
    if (!this.isLeader()) return;
    const st = this.node.status();
    const prs = this.node.rawNode.raft.prs;
    let best = NONE;
    let bestMatch = -1;
    for (const id of st.confState.voters) {
      if (id === this.id) continue;
      const match = prs.get(id)?.match ?? 0;
      const seen = this.lastContact.get(id);
      if (seen === undefined || Date.now() - seen > this.opts.electionMs) continue; // not answering
      if (match > bestMatch) {
        best = id;
        bestMatch = match;
      }
    }
    if (best === NONE || this.node.transferLeadership(best) !== "ok") return;
    const deadline = Date.now() + TRANSFER_ON_CLOSE_MS;
    while (this.isLeader() && Date.now() < deadline) await Bun.sleep(5);
    log.info(this.isLeader() ? `leadership transfer to node ${best} did not finish in ${TRANSFER_ON_CLOSE_MS} ms` : `handed leadership to node ${best}`);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.flush();
    await this.handOverLeadership().catch(() => {});
    this.closing = true;
    this.flush();
    this.ticker.stop();
    this.links.close();
    while (this.snapshotRunning !== null) await this.snapshotRunning.catch(() => {});
    await this.node.close();
    // A node stopped by a storage failure left its files open (nothing more is written to them).
    if (this.storageFailed !== undefined) await this.storage.close().catch(() => {});
  }

  // ---- the view for ROLE, CLUSTER *, INFO raft ----

  private makeView(): ClusterView {
    const self = this;
    return {
      id: this.id,
      clusterId: this.clusterId,
      role(): MemberRole {
        const r = self.node.rawNode.raft.role;
        return r === "pre-candidate" ? "pre-candidate" : r;
      },
      leaderId: () => this.node.rawNode.raft.lead,
      term: () => this.node.rawNode.raft.term,
      commitIndex: () => this.node.status().commit,
      appliedIndex: () => this.applied,
      leaseReads: () => (this.lease === undefined ? undefined : this.leaseReads),
      lastIndex: () => this.node.status().lastIndex,
      snapshotIndex: () => this.storage.log.snapshot().meta.index,
      members: (): MemberStatus[] => {
        const st = this.node.status();
        const leader = st.role === "leader";
        const prs = leader ? this.node.rawNode.raft.prs : undefined;
        const ids = new Set([...st.confState.voters, ...st.confState.learners]);
        const now = Date.now();
        return [...ids]
          .sort((a, b) => a - b)
          .map((id) => {
            const m = this.members.get(id) ?? { id, addr: "", peer: "" };
            const match = !leader ? -1 : id === this.id ? st.lastIndex : (prs?.get(id)?.match ?? 0);
            const seen = this.lastContact.get(id);
            const lastContactMs = !leader ? -1 : id === this.id ? 0 : seen === undefined ? -1 : now - seen;
            return { ...m, voter: st.confState.voters.includes(id), match, lastContactMs };
          });
      },
      member: (id) => this.members.get(id),
    };
  }
}
