// What `kv cluster status`, `up` and its live view show: each node's INFO raft (asked over RESP
// with the client library), the lag behind the leader, and the tables and JSON they print.
import { createClient } from "../client/index.ts";

export interface Member {
  id: number;
  /** Client address, host:port. */
  addr: string;
  /** Peer address, host:port. */
  peer: string;
}

/** A node's INFO raft section; a number the node did not report (or reported malformed) is null. */
export interface RaftInfo {
  nodeId: number | null;
  clusterId: string;
  role: string;
  leaderId: number | null;
  leaderAddr: string;
  term: number | null;
  commit: number | null;
  applied: number | null;
  lastIndex: number | null;
  snapshotIndex: number | null;
  voters: number[];
  learners: number[];
  members: Member[];
}

/** `field:value` lines of an INFO reply (section headers and blank lines skipped). */
export function parseInfoFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon > 0) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

function intOrNull(s: string | undefined): number | null {
  if (s === undefined || !/^\d+$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

function idList(s: string | undefined): number[] {
  if (s === undefined || s === "") return [];
  return s.split(",").flatMap((t) => {
    const n = intOrNull(t.trim());
    return n === null ? [] : [n];
  });
}

/** `raft_members`: `id=clienthost:port@peerhost:peerport`, comma-separated. Entries that do not parse are skipped. */
export function parseMembers(s: string): Member[] {
  const out: Member[] = [];
  for (const part of s.split(",")) {
    const m = /^\s*(\d+)=([^@\s]+)@(\S+?)\s*$/.exec(part);
    if (m === null) continue;
    out.push({ id: Number(m[1]), addr: m[2]!, peer: m[3]! });
  }
  return out;
}

/** The raft section of an INFO reply, or null when it has none (not a cluster node). */
export function parseRaftInfo(text: string): RaftInfo | null {
  const f = parseInfoFields(text);
  const role = f.get("raft_role");
  if (role === undefined) return null;
  return {
    nodeId: intOrNull(f.get("raft_node_id")),
    clusterId: f.get("raft_cluster_id") ?? "",
    role,
    leaderId: intOrNull(f.get("raft_leader_id")),
    leaderAddr: f.get("raft_leader_addr") ?? "",
    term: intOrNull(f.get("raft_term")),
    commit: intOrNull(f.get("raft_commit_index")),
    applied: intOrNull(f.get("raft_applied_index")),
    lastIndex: intOrNull(f.get("raft_last_index")),
    snapshotIndex: intOrNull(f.get("raft_snapshot_index")),
    voters: idList(f.get("raft_voters")),
    learners: idList(f.get("raft_learners")),
    members: parseMembers(f.get("raft_members") ?? ""),
  };
}

/** A node's answer to INFO raft: its section (null when it has none), or why it did not answer. */
export type Answer = { info: RaftInfo | null } | { error: string };

/** Asks `addr` for INFO raft, within `timeoutMs`. */
export async function askNode(addr: string, timeoutMs: number): Promise<Answer> {
  let client;
  try {
    client = createClient({ addrs: addr, timeoutMs, connectTimeoutMs: timeoutMs, failFast: true, readRetriesMax: 0 });
  } catch (e) {
    return { error: (e as Error).message };
  }
  try {
    const reply = await client.command(["INFO", "raft"]);
    if (typeof reply !== "string") return { error: `INFO raft answered ${JSON.stringify(reply)}` };
    return { info: parseRaftInfo(reply) };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    client.destroy();
  }
}

/** One node as it was asked: where, and what is known of its process (null: not known, as with --addr). */
export interface Target {
  id: number;
  name: string | null;
  addr: string;
  dataDir: string | null;
  /** A live kv process on its data dir, when looked for. */
  pid: number | null;
  running: boolean | null;
}

export interface NodeStatus extends Target {
  /** It answered INFO raft. */
  up: boolean;
  role: string | null;
  term: number | null;
  leaderId: number | null;
  commit: number | null;
  applied: number | null;
  lastIndex: number | null;
  /** The leader's commit index minus this node's applied index (null: no leader, or not answering). */
  lag: number | null;
  /** Why it did not answer. */
  error: string | null;
}

export interface ClusterStatus {
  /** The answering node that says it leads (the highest term if several do), or null. */
  leader: number | null;
  term: number | null;
  nodes: NodeStatus[];
}

/** Puts the answers together (pure: the live view, status and tests share it). */
export function summarize(targets: readonly Target[], answers: readonly Answer[]): ClusterStatus {
  let leader: { id: number; term: number; commit: number | null } | null = null;
  targets.forEach((t, i) => {
    const a = answers[i]!;
    if (!("info" in a) || a.info === null || a.info.role !== "leader") return;
    const term = a.info.term ?? -1;
    if (leader === null || term > leader.term) leader = { id: t.id, term, commit: a.info.commit };
  });
  const lead = leader as { id: number; term: number; commit: number | null } | null;
  const nodes = targets.map((t, i): NodeStatus => {
    const a = answers[i]!;
    if (!("info" in a)) {
      return { ...t, up: false, role: null, term: null, leaderId: null, commit: null, applied: null, lastIndex: null, lag: null, error: a.error };
    }
    const r = a.info;
    const applied = r?.applied ?? null;
    const lag = lead === null || lead.commit === null || applied === null ? null : Math.max(0, lead.commit - applied);
    return {
      ...t,
      up: true,
      role: r?.role ?? null,
      term: r?.term ?? null,
      leaderId: r?.leaderId ?? null,
      commit: r?.commit ?? null,
      applied,
      lastIndex: r?.lastIndex ?? null,
      lag,
      error: r === null ? "no INFO raft section (not a cluster node)" : null,
    };
  });
  return { leader: lead?.id ?? null, term: lead === null || lead.term < 0 ? null : lead.term, nodes };
}

/** Asks every target at once. */
export async function gather(targets: readonly Target[], timeoutMs: number): Promise<ClusterStatus> {
  const answers = await Promise.all(targets.map((t) => askNode(t.addr, timeoutMs)));
  return summarize(targets, answers);
}

/** up / down / "no answer" (its process is there but it does not answer: paused, busy, starting). */
export function stateOf(n: NodeStatus): string {
  if (n.up) return "up";
  return n.running === true ? "no answer" : "down";
}

/** Columns padded to their widest cell, two spaces apart. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

function cell(v: number | string | null): string {
  return v === null ? "-" : String(v);
}

/** The status table: one row per node. */
export function formatStatus(s: ClusterStatus): string {
  const withPid = s.nodes.some((n) => n.running !== null);
  const header = ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "STATE", ...(withPid ? ["PID"] : [])];
  const rows = s.nodes.map((n) => [
    String(n.id),
    n.addr,
    cell(n.role),
    cell(n.term),
    cell(n.commit),
    cell(n.applied),
    cell(n.lag),
    stateOf(n),
    ...(withPid ? [cell(n.pid)] : []),
  ]);
  const head = s.leader === null ? "no leader" : `leader: node ${s.leader} (term ${cell(s.term)})`;
  return `${head}\n${formatTable(header, rows)}`;
}

/** status --json: the same facts, for scripts. */
export function statusJson(s: ClusterStatus): string {
  return (
    JSON.stringify({
      leader: s.leader,
      term: s.term,
      nodes: s.nodes.map((n) => ({
        id: n.id,
        name: n.name,
        addr: n.addr,
        up: n.up,
        state: stateOf(n),
        role: n.role,
        term: n.term,
        leaderId: n.leaderId,
        commit: n.commit,
        applied: n.applied,
        lastIndex: n.lastIndex,
        lag: n.lag,
        pid: n.pid,
        dataDir: n.dataDir,
        error: n.error,
      })),
    }) + "\n"
  );
}

/** The table `up` prints once the cluster is ready: id, address, role, pid, data dir. */
export function formatUpTable(s: ClusterStatus, notes: ReadonlyMap<number, string>): string {
  const rows = s.nodes.map((n) => [String(n.id), n.addr, cell(n.role), cell(n.pid), n.dataDir ?? "-", notes.get(n.id) ?? ""]);
  return formatTable(["ID", "ADDRESS", "ROLE", "PID", "DATA DIR", ""], rows);
}
