// Raft's vocabulary: log entries, the wire message union, persisted/volatile state and Ready.

/** A member's id: a positive integer. 0 means "none" (no vote, no known leader). */
export type NodeId = number;
export const NONE: NodeId = 0;

export type EntryType = "normal" | "conf-change";

/**
 * One log record. `data` is opaque to Raft (the KV layer stores RESP-encoded commands);
 * a `conf-change` entry's data is `encodeConfChange(...)`. A WAL record carries exactly these fields.
 */
export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must survive a crash, written (and fsynced) before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** Membership: voters count toward quorums; learners only receive the log. Disjoint sets. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMeta {
  /** Last log index the snapshot covers, and its term. */
  readonly index: number;
  readonly term: number;
  /** Membership as of `index`. */
  readonly confState: ConfState;
}

/** A state-machine image replacing the log prefix up to `meta.index`; `data` is opaque to Raft. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export type Role = "follower" | "pre-candidate" | "candidate" | "leader";

/** Volatile, informational: who leads and what this node is. Never persisted. */
export interface SoftState {
  readonly lead: NodeId;
  readonly role: Role;
}

/**
 * A linearizable read became safe: once the state machine has applied `index`,
 * the read identified by `requestCtx` may be served from local state.
 */
export interface ReadState {
  readonly index: number;
  readonly requestCtx: string;
}

export type ConfChangeType = "add-voter" | "add-learner" | "remove-node";

/**
 * A single-server membership change (one pending at a time; see docs/raft.md). `context` is opaque
 * to Raft and travels with the entry (the runtime puts a new member's addresses there, so every
 * member learns them through the log).
 */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
  readonly context?: Uint8Array;
}

/** Largest conf-change context: addresses, not data. */
export const CONF_CHANGE_CONTEXT_BYTES_MAX = 4096;

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term; for pre-vote and a granted pre-vote-resp, the term the candidate would use. */
  readonly term: number;
}

/** Leader -> follower: entries after (logIndex, logTerm), plus the leader's commit index. Empty = probe. */
export interface AppendMsg extends Envelope {
  readonly type: "append";
  readonly logIndex: number;
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

/**
 * Follower -> leader. Accepted: `index` is the last index now known to match.
 * Rejected: `index` echoes the rejected logIndex; (rejectHint, hintTerm) is the follower's guess of the
 * last index that could match: the largest index <= min(logIndex, lastIndex) whose term <= logTerm
 * (fast conflict backtracking: one round trip per term instead of per entry).
 */
export interface AppendRespMsg extends Envelope {
  readonly type: "append-resp";
  readonly index: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly hintTerm: number;
}

/** Candidate -> voter. `transfer` marks a campaign started by TimeoutNow: it may break a leader lease. */
export interface VoteMsg extends Envelope {
  readonly type: "vote" | "pre-vote";
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly transfer: boolean;
}

export interface VoteRespMsg extends Envelope {
  readonly type: "vote-resp" | "pre-vote-resp";
  readonly reject: boolean;
}

/**
 * Leader -> member. commit = min(leader commit, follower match): what the member may commit.
 * leaderCommit is the leader's own commit index, for bounded-staleness follower reads.
 * ctx != "" ties it to a ReadIndex round.
 */
export interface HeartbeatMsg extends Envelope {
  readonly type: "heartbeat";
  readonly commit: number;
  readonly leaderCommit: number;
  readonly ctx: string;
}

export interface HeartbeatRespMsg extends Envelope {
  readonly type: "heartbeat-resp";
  readonly ctx: string;
}

/** Leader -> follower whose next entries were compacted away. */
export interface SnapshotMsg extends Envelope {
  readonly type: "snapshot";
  readonly snapshot: Snapshot;
}

/** Leader -> transfer target: campaign now, skipping pre-vote. */
export interface TimeoutNowMsg extends Envelope {
  readonly type: "timeout-now";
}

export type Message =
  | AppendMsg
  | AppendRespMsg
  | VoteMsg
  | VoteRespMsg
  | HeartbeatMsg
  | HeartbeatRespMsg
  | SnapshotMsg
  | TimeoutNowMsg;

export type MessageType = Message["type"];

/**
 * Everything the runtime must do, in this order, before calling advance(ready):
 *   1. snapshot  -> install into storage and restore the state machine from it;
 *   2. entries   -> append to the log (truncating any stored suffix at entries[0].index);
 *      hardState -> persist; if mustSync, fsync 1+2 now;
 *   3. messages  -> only now send them (a vote or an append-ack promises durable state);
 *   4. committedEntries -> apply in order;
 *   5. readStates -> serve each read once applied >= its index.
 */
export interface Ready {
  /** Volatile: leader/role changed since the last Ready. Informational; never persisted. */
  readonly softState: SoftState | undefined;
  /** Persist together with `entries` (after `snapshot`) BEFORE sending `messages`. Undefined = unchanged. */
  readonly hardState: HardState | undefined;
  /**
   * Unstable entries: append to stable storage BEFORE sending `messages`. May rewrite a suffix:
   * drop every stored entry with index >= entries[0].index first.
   */
  readonly entries: readonly Entry[];
  /** Install FIRST (storage + state machine), before entries and before sending. Undefined = none. */
  readonly snapshot: Snapshot | undefined;
  /** Send only AFTER snapshot, entries and hardState are durable. Delivery may fail; Raft retries. */
  readonly messages: readonly Message[];
  /** Apply to the state machine in order, AFTER persisting this Ready (they may be in `entries`). */
  readonly committedEntries: readonly Entry[];
  /** Linearizable reads now safe: serve each only once the state machine has applied `index`. */
  readonly readStates: readonly ReadState[];
  /** True if term, vote or entries changed: fsync before sending. */
  readonly mustSync: boolean;
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

const CC_CODE: Record<ConfChangeType, number> = { "add-voter": 1, "add-learner": 2, "remove-node": 3 };

/** Conf-change entry payload: [kind u8][node u32 big-endian][context: the rest, possibly empty]. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const ctx = cc.context ?? EMPTY_CONTEXT;
  if (ctx.length > CONF_CHANGE_CONTEXT_BYTES_MAX) throw new RangeError(`conf change context of ${ctx.length} bytes (at most ${CONF_CHANGE_CONTEXT_BYTES_MAX})`);
  const out = new Uint8Array(5 + ctx.length);
  out[0] = CC_CODE[cc.type];
  new DataView(out.buffer).setUint32(1, cc.node, false);
  out.set(ctx, 5);
  return out;
}

const EMPTY_CONTEXT = new Uint8Array(0);

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < 5 || data.length > 5 + CONF_CHANGE_CONTEXT_BYTES_MAX) throw new Error(`conf change payload of ${data.length} bytes`);
  const node = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1, false);
  const type = CC_TYPES[data[0]!];
  if (type === undefined) throw new Error(`unknown conf change kind ${data[0]}`);
  return data.length === 5 ? { type, node } : { type, node, context: data.subarray(5) };
}

const CC_TYPES: Record<number, ConfChangeType | undefined> = { 1: "add-voter", 2: "add-learner", 3: "remove-node" };
