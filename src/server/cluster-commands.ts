// ROLE, CLUSTER SLOTS|SHARDS|NODES|INFO|MYID|HELP, and the INFO replication
// and raft sections: what the Raft group looks like, told in Redis Cluster's and Redis
// replication's words. The leader is the master of all 16384 slots and every other member one of
// its replicas, so clients that route by slot (ioredis's Cluster, node-redis's cluster client)
// send everything to the leader, while plain clients and `redis-cli -c` (which only follows
// redirections, and kv sends none) may use any node: a follower forwards writes and serves reads
// after a ReadIndex round. Each reply is rendered by a function of a ClusterView and the time.
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import type { ClusterView, MemberAddress, MemberStatus } from "../node/cluster-view.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { ContainerSpec } from "./conn-commands.ts";
import { assert } from "../errors.ts";
import type { ServerConfig } from "../config.ts";

type NodeId = ClusterView["id"];

/** Redis Cluster's hash slots: one group serves them all. */
export const CLUSTER_SLOTS = 16384;

/**
 * On the leader, a member not heard from for longer than this (or twice the election timeout, if
 * longer: see memberDownAfterMs) is shown down: left out of ROLE, `INFO replication` and CLUSTER
 * SLOTS (as Redis leaves out disconnected or failed replicas), `fail?`/`disconnected` in CLUSTER
 * NODES, `failed` in CLUSTER SHARDS. 40 heartbeats at the default interval (50 ms). Only the
 * leader hears from every member, so on other nodes no member is ever shown down.
 */
export const MEMBER_DOWN_AFTER_MS = 2_000;

/** The down limit for a node's timing: MEMBER_DOWN_AFTER_MS, or twice its election timeout if longer. */
export function memberDownAfterMs(config: ServerConfig): number {
  return Math.max(MEMBER_DOWN_AFTER_MS, 2 * (config.cluster?.electionMs ?? 0));
}

const hex = (text: string) => new Bun.CryptoHasher("sha1").update(text).digest("hex");

/**
 * A member's Redis Cluster node name (40 hex digits): SHA-1 of `kv-node:<cluster id>:<node id>`.
 * The same on every node and across restarts, different in another cluster.
 */
export function clusterNodeName(clusterId: string, id: NodeId): string {
  return hex(`kv-node:${clusterId}:${id}`);
}

/**
 * `master_replid` in INFO replication: SHA-1 of `kv-replid:<cluster id>`. The log is one history
 * whatever the leader, so the id stays the same across failovers (Redis picks a new one).
 */
export function replicationId(clusterId: string): string {
  return hex(`kv-replid:${clusterId}`);
}

/**
 * Host and port of a "host:port" address (an IPv6 host may be bracketed); host "" and port 0 for
 * an address this node does not know (a member it has no address for is shown so, as Redis shows
 * a node with no address, and left out of CLUSTER SLOTS).
 */
export function splitAddr(addr: string): { host: string; port: number } {
  const colon = addr.lastIndexOf(":");
  const port = colon < 0 ? NaN : Number(addr.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) return { host: "", port: 0 };
  let host = addr.slice(0, colon);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host, port };
}

const hasAddr = (m: MemberAddress) => splitAddr(m.addr).port !== 0;

/** The leader's address as this node knows it, or null (none known, or its address unknown). */
function leaderOf(view: ClusterView): MemberAddress | null {
  const id = view.leaderId();
  if (id === 0) return null;
  const m = view.member(id);
  return m !== undefined && hasAddr(m) ? m : null;
}

/** Is a member up as far as this node knows? Only the leader has a member's last contact. */
function up(view: ClusterView, m: MemberStatus, downAfterMs: number): boolean {
  if (m.id === view.id || view.role() !== "leader") return true;
  return m.lastContactMs >= 0 && m.lastContactMs <= downAfterMs;
}

/** On the leader: the other members, up ones only (Redis's connected replicas). */
function liveReplicas(view: ClusterView, downAfterMs: number): MemberStatus[] {
  return view.role() === "leader" ? view.members().filter((m) => m.id !== view.id && up(view, m, downAfterMs)) : [];
}

// ---- ROLE --------------------------------------------------------------------------------

/**
 * ROLE. On the leader: `master`, the commit index as the replication offset, and per replica that
 * is up `[ip, port, match]` (all three bulk strings, as Redis). Elsewhere: `slave`, the leader's
 * ip and port, `connected` (a leader is known) or `connect` (none: ip "" and port 0), and the
 * applied index.
 */
export function renderRole(view: ClusterView, out: ReplyWriter, downAfterMs = MEMBER_DOWN_AFTER_MS): void {
  if (view.role() === "leader") {
    const replicas = liveReplicas(view, downAfterMs);
    out.array(3);
    out.bulk("master");
    out.int(view.commitIndex());
    out.array(replicas.length);
    for (const m of replicas) {
      const { host, port } = splitAddr(m.addr);
      out.array(3);
      out.bulk(host);
      out.bulk(String(port));
      out.bulk(String(m.match));
    }
    return;
  }
  const leader = leaderOf(view);
  const addr = leader === null ? { host: "", port: 0 } : splitAddr(leader.addr);
  out.array(5);
  out.bulk("slave");
  out.bulk(addr.host);
  out.int(addr.port);
  out.bulk(leader === null ? "connect" : "connected");
  out.int(view.appliedIndex());
}

// ---- CLUSTER SLOTS / SHARDS / NODES / INFO -------------------------------------------------

/** The leader first, then the other members by id: the order of every topology reply. */
function leaderFirst(view: ClusterView, leaderId: NodeId): MemberStatus[] {
  const all = view.members();
  const lead = all.filter((m) => m.id === leaderId);
  return [...lead, ...all.filter((m) => m.id !== leaderId)];
}

/** One node of CLUSTER SLOTS (Redis 7): ip, port, name, and an empty map of other endpoints. */
function slotsNode(view: ClusterView, m: MemberAddress, out: ReplyWriter): void {
  const { host, port } = splitAddr(m.addr);
  out.array(4);
  out.bulk(host);
  out.int(port);
  out.bulk(clusterNodeName(view.clusterId, m.id));
  out.map(0);
}

/**
 * CLUSTER SLOTS: one range, 0-16383, served by the leader and then its replicas that are up (and
 * whose address this node knows);
 * empty while no leader is known (clients retry). The leader is a member too (members() holds
 * it), so its entry is its own status.
 */
export function renderClusterSlots(view: ClusterView, out: ReplyWriter, downAfterMs = MEMBER_DOWN_AFTER_MS): void {
  const leader = leaderOf(view);
  if (leader === null) {
    out.array(0);
    return;
  }
  const replicas = view.members().filter((m) => m.id !== leader.id && up(view, m, downAfterMs) && hasAddr(m));
  out.array(1);
  out.array(3 + replicas.length);
  out.int(0);
  out.int(CLUSTER_SLOTS - 1);
  slotsNode(view, leader, out);
  for (const m of replicas) slotsNode(view, m, out);
}

/** A member's replication offset as this node knows it: commit (leader), match, applied (itself), else 0. */
function offsetOf(view: ClusterView, m: MemberStatus, leaderId: NodeId): number {
  if (m.id === leaderId) return view.commitIndex();
  if (view.role() === "leader") return Math.max(0, m.match);
  if (m.id === view.id) return view.appliedIndex();
  return 0;
}

/**
 * CLUSTER SHARDS (Redis 7): one shard, slots [0, 16383] and its nodes, the leader (`master`) first;
 * with no leader known, no slots and every node a `replica`. Each node: id, port, ip, endpoint,
 * replication-offset, role, health (`online`, or `failed` when the leader has not heard from it).
 */
export function renderClusterShards(view: ClusterView, out: ReplyWriter, downAfterMs = MEMBER_DOWN_AFTER_MS): void {
  const leader = leaderOf(view);
  const leaderId = leader?.id ?? 0;
  const nodes = leaderFirst(view, leaderId);
  out.array(1);
  out.map(2);
  out.bulk("slots");
  if (leader === null) out.array(0);
  else {
    out.array(2);
    out.int(0);
    out.int(CLUSTER_SLOTS - 1);
  }
  out.bulk("nodes");
  out.array(nodes.length);
  for (const m of nodes) {
    const { host, port } = splitAddr(m.addr);
    out.map(7);
    out.bulk("id");
    out.bulk(clusterNodeName(view.clusterId, m.id));
    out.bulk("port");
    out.int(port);
    out.bulk("ip");
    out.bulk(host);
    out.bulk("endpoint");
    out.bulk(host);
    out.bulk("replication-offset");
    out.int(offsetOf(view, m, leaderId));
    out.bulk("role");
    out.bulk(m.id === leaderId ? "master" : "replica");
    out.bulk("health");
    out.bulk(up(view, m, downAfterMs) ? "online" : "failed");
  }
}

/**
 * CLUSTER NODES: one line per member, `<name> <ip>:<port>@<peer port> <flags> <master name or ->
 * <ping-sent> <pong-recv> <config-epoch = term> <link-state> [0-16383]`. The leader is `master`
 * with every slot; the others are `slave` of it, or of `-` while no leader is known. On the
 * leader, pong-recv is when each member last answered (ms since the epoch) and a member not heard
 * from within downAfterMs is `fail?` and `disconnected`; elsewhere pong-recv is 0.
 */
export function clusterNodesText(view: ClusterView, nowMs: number, downAfterMs = MEMBER_DOWN_AFTER_MS): string {
  const leader = leaderOf(view);
  const leaderId = leader?.id ?? 0;
  const leaderName = leader === null ? "-" : clusterNodeName(view.clusterId, leaderId);
  const isLeader = view.role() === "leader";
  let text = "";
  for (const m of leaderFirst(view, leaderId)) {
    const { host, port } = splitAddr(m.addr);
    const peerPort = splitAddr(m.peer).port;
    const self = m.id === view.id;
    const alive = up(view, m, downAfterMs);
    const flags = (self ? "myself," : "") + (m.id === leaderId ? "master" : "slave") + (alive ? "" : ",fail?") + (hasAddr(m) ? "" : ",noaddr");
    const pongRecv = !self && isLeader && m.lastContactMs >= 0 ? Math.max(0, Math.floor(nowMs - m.lastContactMs)) : 0;
    text +=
      `${clusterNodeName(view.clusterId, m.id)} ${host}:${port}@${peerPort} ${flags} ` +
      `${m.id === leaderId ? "-" : leaderName} 0 ${pongRecv} ${view.term()} ${alive ? "connected" : "disconnected"}` +
      `${m.id === leaderId ? ` 0-${CLUSTER_SLOTS - 1}` : ""}\n`;
  }
  return text;
}

/**
 * CLUSTER INFO: `cluster_state:ok` while a leader is known, else `fail` (the slots stay assigned
 * to the group, none is served: Redis's picture of a master down with no replica promoted).
 * cluster_size is 1 (one group), the epochs are the term.
 */
export function clusterInfoText(view: ClusterView): string {
  const ok = leaderOf(view) !== null;
  const lines = [
    `cluster_state:${ok ? "ok" : "fail"}`,
    `cluster_slots_assigned:${CLUSTER_SLOTS}`,
    `cluster_slots_ok:${ok ? CLUSTER_SLOTS : 0}`,
    "cluster_slots_pfail:0",
    `cluster_slots_fail:${ok ? 0 : CLUSTER_SLOTS}`,
    `cluster_known_nodes:${view.members().length}`,
    "cluster_size:1",
    `cluster_current_epoch:${view.term()}`,
    `cluster_my_epoch:${view.term()}`,
  ];
  return lines.map((l) => l + "\r\n").join("");
}

// ---- INFO sections -----------------------------------------------------------------------

/** The `INFO raft` section's lines (fields fixed by the cluster's interface: docs/protocol.md). */
export function infoRaftLines(view: ClusterView): string[] {
  const members = view.members();
  const leader = leaderOf(view);
  const lines = [
    `raft_node_id:${view.id}`,
    `raft_cluster_id:${view.clusterId}`,
    `raft_role:${view.role()}`,
    `raft_leader_id:${view.leaderId()}`,
    `raft_leader_addr:${leader?.addr ?? ""}`,
    `raft_term:${view.term()}`,
    `raft_commit_index:${view.commitIndex()}`,
    `raft_applied_index:${view.appliedIndex()}`,
    `raft_last_index:${view.lastIndex()}`,
    `raft_snapshot_index:${view.snapshotIndex()}`,
    `raft_voters:${members.filter((m) => m.voter).map((m) => m.id).join(",")}`,
    `raft_learners:${members.filter((m) => !m.voter).map((m) => m.id).join(",")}`,
    `raft_members:${members.map((m) => `${m.id}=${m.addr}@${m.peer}`).join(",")}`,
  ];
  const leaseReads = view.leaseReads?.();
  if (leaseReads !== undefined) lines.push(`raft_lease_reads:${leaseReads}`);
  if (view.role() === "leader") {
    for (const m of members) {
      if (m.id !== view.id) lines.push(`raft_peer_${m.id}:addr=${m.addr},match=${m.match},last_contact_ms=${m.lastContactMs}`);
    }
  }
  return lines;
}

/**
 * The `INFO replication` section in Redis's fields. The leader is `role:master` with a `slaveN`
 * line per replica that is up (offset: its match index; lag: seconds since it last answered);
 * other nodes are `role:slave` of the leader (`master_link_status:up`), or of nobody
 * (`master_host:` empty, `master_port:0`, `down`). Offsets are log indexes. Followers take writes
 * (forwarded to the leader), so `slave_read_only:0`; a learner can never become leader, so its
 * `slave_priority` is 0 (Redis: never promoted), a voter's 100.
 */
export function infoReplicationLines(view: ClusterView, downAfterMs = MEMBER_DOWN_AFTER_MS): string[] {
  const lines: string[] = [];
  const replid = replicationId(view.clusterId);
  if (view.role() === "leader") {
    const replicas = liveReplicas(view, downAfterMs);
    lines.push("role:master", `connected_slaves:${replicas.length}`);
    replicas.forEach((m, i) => {
      const { host, port } = splitAddr(m.addr);
      lines.push(`slave${i}:ip=${host},port=${port},state=online,offset=${m.match},lag=${Math.floor(m.lastContactMs / 1000)}`);
    });
    lines.push(
      "master_failover_state:no-failover",
      `master_replid:${replid}`,
      "master_replid2:0000000000000000000000000000000000000000",
      `master_repl_offset:${view.commitIndex()}`,
      "second_repl_offset:-1",
    );
    return lines;
  }
  const leader = leaderOf(view);
  const addr = leader === null ? { host: "", port: 0 } : splitAddr(leader.addr);
  const voter = view.members().find((m) => m.id === view.id)?.voter ?? true;
  lines.push(
    "role:slave",
    `master_host:${addr.host}`,
    `master_port:${addr.port}`,
    `master_link_status:${leader === null ? "down" : "up"}`,
    "master_sync_in_progress:0",
    `slave_read_repl_offset:${view.lastIndex()}`,
    `slave_repl_offset:${view.appliedIndex()}`,
    `slave_priority:${voter ? 100 : 0}`,
    "slave_read_only:0",
    "replica_announced:1",
    "connected_slaves:0",
    "master_failover_state:no-failover",
    `master_replid:${replid}`,
    "master_replid2:0000000000000000000000000000000000000000",
    `master_repl_offset:${view.appliedIndex()}`,
    "second_repl_offset:-1",
  );
  return lines;
}

/** HELLO's `role` field: `master` on the leader, `replica` elsewhere (as a Redis replica says). */
export function helloRole(view: ClusterView): string {
  return view.role() === "leader" ? "master" : "replica";
}

// ---- the commands ------------------------------------------------------------------------

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

/** Answered by every node from its own view, even with no leader and while loading. */
function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

const CLUSTER_HELP = [
  "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "INFO", "    Return information about the cluster.",
  "MYID", "    Return the node id.",
  "NODES", "    Return cluster configuration seen by node. Output format:",
  "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
  "SHARDS", "    Return information about slot range mappings and the nodes of each shard.",
  "SLOTS", "    Return information about slots range mappings. Each range is made of:",
  "    start, end, master and replicas IP addresses, ports and ids",
  "HELP", "    Print this help.",
];

const CLUSTER_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("slots", 2, [], (ctx, _argv, out) => renderClusterSlots(ctx.server.cluster, out, memberDownAfterMs(ctx.server.config))),
  spec("shards", 2, [], (ctx, _argv, out) => renderClusterShards(ctx.server.cluster, out, memberDownAfterMs(ctx.server.config))),
  spec("nodes", 2, [], (ctx, _argv, out) => out.bulk(clusterNodesText(ctx.server.cluster, ctx.nowMs, memberDownAfterMs(ctx.server.config)))),
  spec("info", 2, [], (ctx, _argv, out) => out.bulk(clusterInfoText(ctx.server.cluster))),
  spec("myid", 2, [], (ctx, _argv, out) => out.bulk(clusterNodeName(ctx.server.cluster.clusterId, ctx.server.cluster.id))),
  spec("help", 2, [], (_ctx, _argv, out) => {
    out.array(CLUSTER_HELP.length);
    for (const l of CLUSTER_HELP) out.simple(l);
  }),
];

export const CLUSTER_COMMANDS: readonly ContainerSpec[] = [
  spec("role", 1, ["fast"], (ctx, _argv, out) => renderRole(ctx.server.cluster, out, memberDownAfterMs(ctx.server.config))),
  {
    ...spec("cluster", -2, [], () => assert(false, "CLUSTER ran without its subcommand")),
    subcommands: CLUSTER_SUBCOMMANDS,
  },
];
