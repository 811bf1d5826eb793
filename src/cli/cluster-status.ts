// What `kv cluster status`, `up` and its live view show: each node's INFO raft (asked over RESP
// with the client library), the lag behind the leader, and the tables and JSON they print.
import { createClient } from "../client/index.ts";
import { cliTls } from "./cli-tls.ts";
import { cliAuth } from "./cli-auth.ts";

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
  /** The leader's view of each other member (`raft_peer_<id>` lines; a leader alone reports them). */
  peers: Map<number, { match: number | null; lastContactMs: number | null }>;
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
    peers: parsePeers(f),
  };
}

/** `raft_peer_<id>:addr=...,match=<n>,last_contact_ms=<ms>` (-1: never heard from: null). */
function parsePeers(f: Map<string, string>): Map<number, { match: number | null; lastContactMs: number | null }> {
  const out = new Map<number, { match: number | null; lastContactMs: number | null }>();
  for (const [k, v] of f) {
    const m = /^raft_peer_(\d+)$/.exec(k);
    if (m === null) continue;
    const kv = new Map(v.split(",").map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)] as const));
    out.set(Number(m[1]), { match: intOrNull(kv.get("match")), lastContactMs: intOrNull(kv.get("last_contact_ms")) });
  }
  return out;
}

/** A node's answer to INFO raft: its section (null when it has none), or why it did not answer. */
export type Answer = { info: RaftInfo | null } | { error: string };

/** Asks `addr` for INFO raft, within `timeoutMs`. */
export async function askNode(addr: string, timeoutMs: number): Promise<Answer> {
  let client;
  try {
    client = createClient({ ...cliTls(), addrs: addr, timeoutMs, connectTimeoutMs: timeoutMs, failFast: true, readRetriesMax: 0, ...cliAuth() });
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
  /** A voter (true) or a learner (false) in the configuration of the leader (or, without one, of the most advanced node); null: not a member of it. */
  voter: boolean | null;
  term: number | null;
  leaderId: number | null;
  commit: number | null;
  applied: number | null;
  lastIndex: number | null;
  snapshotIndex: number | null;
  /** The leader's commit index minus this node's applied index (null: no leader, or not answering). */
  lag: number | null;
  /**
   * Lag in time: how many ms after it was asked this node had applied the leader's commit index
   * of that moment (0: it already had; null: not measured, or not within the bound, see lagMsOver).
   */
  lagMs: number | null;
  /** The bound (ms) when the node had not caught up within it. */
  lagMsOver: number | null;
  /** Ms since the leader last heard from it (the leader's own view; 0 for the leader; null: unknown). */
  lastContactMs: number | null;
  /** Why it did not answer. */
  error: string | null;
}

export type Health = "healthy" | "degraded" | "down";

export interface ClusterStatus {
  /** The answering node that says it leads (the highest term if several do), or null. */
  leader: number | null;
  term: number | null;
  nodes: NodeStatus[];
  health: Health;
  /** One line: the health and why, e.g. `healthy: 3/3 voters up, leader 2, max lag 0 entries (0 ms)`. */
  verdict: string;
}

type Lead = { id: number; term: number; commit: number | null; info: RaftInfo };

/**
 * Puts the answers together (pure: the live view, status and tests share it). `lagMs`: the
 * measured time lags (see measureLagMs); without an entry a caught-up node has 0, a lagging one null.
 */
export function summarize(targets: readonly Target[], answers: readonly Answer[], lagMs: ReadonlyMap<number, { ms: number | null; over: number | null }> = new Map()): ClusterStatus {
  let lead: Lead | null = null;
  let best: RaftInfo | null = null;
  targets.forEach((t, i) => {
    const a = answers[i]!;
    if (!("info" in a) || a.info === null) return;
    const r = a.info;
    if (best === null || (r.term ?? -1) > (best.term ?? -1) || ((r.term ?? -1) === (best.term ?? -1) && (r.applied ?? -1) > (best.applied ?? -1))) best = r;
    if (r.role !== "leader") return;
    const term = r.term ?? -1;
    if (lead === null || term > lead.term) lead = { id: t.id, term, commit: r.commit, info: r };
  });
  const l = lead as Lead | null;
  // The configuration: the leader's, else the most advanced answering node's.
  const conf = l?.info ?? (best as RaftInfo | null);
  const nodes = targets.map((t, i): NodeStatus => {
    const a = answers[i]!;
    const voter = conf === null ? null : conf.voters.includes(t.id) ? true : conf.learners.includes(t.id) ? false : null;
    const peer = l === null ? undefined : l.info.peers.get(t.id);
    const lastContactMs = l !== null && t.id === l.id ? 0 : (peer?.lastContactMs ?? null);
    if (!("info" in a)) {
      return { ...t, up: false, role: null, voter, term: null, leaderId: null, commit: null, applied: null, lastIndex: null, snapshotIndex: null, lag: null, lagMs: null, lagMsOver: null, lastContactMs, error: a.error };
    }
    const r = a.info;
    const applied = r?.applied ?? null;
    const lag = l === null || l.commit === null || applied === null ? null : Math.max(0, l.commit - applied);
    const measured = lagMs.get(t.id);
    return {
      ...t,
      up: true,
      role: r?.role ?? null,
      voter,
      term: r?.term ?? null,
      leaderId: r?.leaderId ?? null,
      commit: r?.commit ?? null,
      applied,
      lastIndex: r?.lastIndex ?? null,
      snapshotIndex: r?.snapshotIndex ?? null,
      lag,
      lagMs: lag === 0 ? 0 : (measured?.ms ?? null),
      lagMsOver: lag === 0 ? null : (measured?.over ?? null),
      lastContactMs,
      error: r === null ? "no INFO raft section (not a cluster node)" : null,
    };
  });
  const leader = l?.id ?? null;
  const term = l === null || l.term < 0 ? null : l.term;
  return { leader, term, nodes, ...healthOf(leader, conf, nodes) };
}

/**
 * The one-line verdict. down: no leader, or fewer than a majority of the voters answer (no
 * quorum); degraded: a leader and a quorum, but a member does not answer or has not applied the
 * leader's commit index within the lag bound; healthy: every member answers and keeps up.
 */
export function healthOf(leader: number | null, conf: RaftInfo | null, nodes: readonly NodeStatus[]): { health: Health; verdict: string } {
  const voters = conf !== null && conf.voters.length > 0 ? conf.voters : nodes.map((n) => n.id);
  const learners = conf?.learners ?? [];
  const upIds = new Set(nodes.filter((n) => n.up && n.error === null).map((n) => n.id));
  const votersUp = voters.filter((id) => upIds.has(id));
  const need = Math.floor(voters.length / 2) + 1;
  const downIds = [...voters, ...learners].filter((id) => !upIds.has(id)).sort((a, b) => a - b);
  const down = downIds.length > 0 ? ` (down: ${downIds.join(", ")})` : "";
  const count = `${votersUp.length}/${voters.length} voters up`;
  const learnersUp = learners.length > 0 ? `, ${learners.filter((id) => upIds.has(id)).length}/${learners.length} learners up` : "";
  if (votersUp.length < need) return { health: "down", verdict: `down: no quorum: ${count}, ${need} needed${down}` };
  if (leader === null) return { health: "down", verdict: `down: no leader: ${count}${learnersUp}${down} (an election is under way, or the voters cannot reach each other)` };
  const lagging = nodes.filter((n) => n.up && n.lag !== null);
  const maxLag = Math.max(0, ...lagging.map((n) => n.lag!));
  const behind = nodes.filter((n) => n.up && n.lagMsOver !== null);
  const maxMs = behind.length > 0 ? `> ${Math.max(...behind.map((n) => n.lagMsOver!))} ms` : `${Math.max(0, ...lagging.map((n) => n.lagMs ?? 0))} ms`;
  const lagText = `max lag ${maxLag} entries (${maxMs})`;
  if (downIds.length > 0 || behind.length > 0) {
    const slow = behind.length > 0 ? `; behind: ${behind.map((n) => n.id).join(", ")}` : "";
    return { health: "degraded", verdict: `degraded: ${count}${learnersUp}${down}, leader ${leader}, ${lagText}${slow}` };
  }
  return { health: "healthy", verdict: `healthy: ${count}${learnersUp}, leader ${leader}, ${lagText}` };
}

/** Poll interval while the time lag is measured (its resolution). */
const LAG_POLL_MS = 20;

/**
 * Measures each lagging node's time lag: from `t0` (just before the first round of asks) until
 * it answers with an applied index at or past the leader's commit index of that round, polled
 * every LAG_POLL_MS, bounded by `boundMs`.
 */
async function measureLagMs(first: ClusterStatus, t0: number, timeoutMs: number, boundMs: number): Promise<Map<number, { ms: number | null; over: number | null }>> {
  const out = new Map<number, { ms: number | null; over: number | null }>();
  const leader = first.nodes.find((n) => n.id === first.leader);
  const target = leader?.commit ?? null;
  if (target === null) return out;
  await Promise.all(
    first.nodes
      .filter((n) => n.up && n.lag !== null && n.lag > 0)
      .map(async (n) => {
        for (;;) {
          const a = await askNode(n.addr, timeoutMs);
          const now = performance.now();
          if ("info" in a && a.info !== null && a.info.applied !== null && a.info.applied >= target) {
            out.set(n.id, { ms: Math.round(now - t0), over: null });
            return;
          }
          if (now - t0 >= boundMs || "error" in a) {
            out.set(n.id, { ms: null, over: boundMs });
            return;
          }
          await Bun.sleep(LAG_POLL_MS);
        }
      }),
  );
  return out;
}

/** Asks every target at once; then measures the lagging nodes' time lag (bounded by `lagBoundMs`, default `timeoutMs`). */
export async function gather(targets: readonly Target[], timeoutMs: number, lagBoundMs = timeoutMs): Promise<ClusterStatus> {
  const t0 = performance.now();
  const answers = await Promise.all(targets.map((t) => askNode(t.addr, timeoutMs)));
  const first = summarize(targets, answers);
  if (!first.nodes.some((n) => n.lag !== null && n.lag > 0)) return first;
  return summarize(targets, answers, await measureLagMs(first, t0, timeoutMs, lagBoundMs));
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

function lagMsCell(n: NodeStatus): string {
  if (n.lagMsOver !== null) return `>${n.lagMsOver}`;
  return cell(n.lagMs);
}

function memberCell(v: boolean | null): string {
  return v === null ? "-" : v ? "voter" : "learner";
}

/** The status: the verdict, then one row per node. */
export function formatStatus(s: ClusterStatus): string {
  const withPid = s.nodes.some((n) => n.running !== null);
  const header = ["ID", "ADDRESS", "ROLE", "MEMBER", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "LAG", "LAG MS", "CONTACT MS", "STATE", ...(withPid ? ["PID"] : [])];
  const rows = s.nodes.map((n) => [
    String(n.id),
    n.addr,
    cell(n.role),
    memberCell(n.voter),
    cell(n.term),
    cell(n.commit),
    cell(n.applied),
    cell(n.snapshotIndex),
    cell(n.lag),
    lagMsCell(n),
    cell(n.lastContactMs),
    stateOf(n),
    ...(withPid ? [cell(n.pid)] : []),
  ]);
  const head = s.leader === null ? "no leader" : `leader: node ${s.leader} (term ${cell(s.term)})`;
  return `${s.verdict}\n${head}\n${formatTable(header, rows)}`;
}

/** status --json: the same facts, for scripts. */
export function statusJson(s: ClusterStatus): string {
  return (
    JSON.stringify({
      health: s.health,
      verdict: s.verdict,
      leader: s.leader,
      term: s.term,
      nodes: s.nodes.map((n) => ({
        id: n.id,
        name: n.name,
        addr: n.addr,
        up: n.up,
        state: stateOf(n),
        role: n.role,
        voter: n.voter,
        term: n.term,
        leaderId: n.leaderId,
        commit: n.commit,
        applied: n.applied,
        lastIndex: n.lastIndex,
        snapshotIndex: n.snapshotIndex,
        lag: n.lag,
        lagMs: n.lagMs,
        lagMsOver: n.lagMsOver,
        lastContactMs: n.lastContactMs,
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
