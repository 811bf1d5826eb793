// What the server and its commands (ROLE, CLUSTER *, INFO raft/replication) see of the Raft group
// this node belongs to. The cluster runtime implements it; tests use a fake with the same shape.
import type { NodeId } from "../raft/types.ts";

export type MemberRole = "leader" | "follower" | "candidate" | "pre-candidate";

/** One member of the group as configured (`--cluster`, or membership from the log). */
export interface MemberAddress {
  readonly id: NodeId;
  /** Client (RESP) address, "host:port". */
  readonly addr: string;
  /** Peer (Raft) address, "host:port". */
  readonly peer: string;
}

/** A member as this node sees it now. */
export interface MemberStatus extends MemberAddress {
  readonly voter: boolean;
  /** Leader only: index known to be replicated on that member (its own last index for itself); -1 elsewhere. */
  readonly match: number;
  /** Leader only: ms since that member last answered (0 for itself); -1 when unknown or not the leader. */
  readonly lastContactMs: number;
}

export interface ClusterView {
  /** This node's id. */
  readonly id: NodeId;
  /** Shared by every member; a peer with another is refused at the handshake. */
  readonly clusterId: string;
  role(): MemberRole;
  /** Current leader's id, 0 when none is known. */
  leaderId(): NodeId;
  term(): number;
  commitIndex(): number;
  /** Index the state machine reflects. */
  appliedIndex(): number;
  lastIndex(): number;
  /** Index of the newest snapshot (0: none). */
  snapshotIndex(): number;
  /** Every member (voters and learners), ordered by id. */
  members(): MemberStatus[];
  /** Address of member `id`, undefined if unknown. */
  member(id: NodeId): MemberAddress | undefined;
  /** Reads served under the leader's lease (`--lease-reads`); undefined when lease reads are off. */
  leaseReads?(): number | undefined;
}
