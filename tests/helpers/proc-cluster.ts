// A cluster of real `kv serve` processes on 127.0.0.1 for fault tests, with fault proxies on every
// directed link between two nodes: node i reaches node j's peer port (Raft messages) through one proxy
// and node j's client port (the link a follower forwards writes and read-index requests on) through
// another, so a partition cuts both. Each node gets its own --cluster string (its view of the others'
// addresses are its proxies; its own entry is real), one shared --cluster-id, and --peer-port for the
// real peer port it listens on. The test's clients dial the real client ports.
// Nodes can be killed (SIGKILL) and restarted with the same argv on the same data dir, or paused
// (SIGSTOP) and resumed. Every process and proxy is stopped by stop().
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { FaultProxy, type ProxyMode } from "./fault-proxy.ts";
import { RawResp } from "./resp-raw.ts";

/** The compiled binary (`bun run build`). Not imported from server.ts, whose afterAll needs the test runner. */
export const KV_BIN = join(import.meta.dir, "..", "..", "kv");

export type NodeState = "up" | "down" | "paused";

export interface ProcNode {
  readonly id: number;
  /** Client port. */
  readonly port: number;
  /** The real peer port this node listens on (behind the proxies). */
  readonly peerPort: number;
  readonly dataDir: string;
  /** The log file (stdout and stderr of every incarnation, appended). */
  readonly logFile: string;
  /** The exact argv that starts (and restarts) this node. */
  readonly argv: readonly string[];
  proc: Subprocess | null;
  state: NodeState;
  /** Starts of this node (1 after the first start). */
  starts: number;
  /** Where in the log file the current incarnation's output begins. */
  logOffset: number;
}

export interface ClusterOptions {
  /** Members (default 3). */
  readonly nodes?: number;
  /** A directory for data dirs and logs (the caller removes it). */
  readonly dir: string;
  /** Extra environment for every node (e.g. KV_TEST_UNSAFE_LOCAL_READS). */
  readonly env?: Record<string, string>;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** More `kv serve` flags for every node. */
  readonly extraArgs?: readonly string[];
  /** The password (of `user`, else of the default user) the helpers' own connections AUTH with. */
  readonly password?: string;
  readonly user?: string;
}

export interface RaftInfo {
  readonly [field: string]: string;
}

/**
 * Free loopback ports, held by placeholder listeners (so nothing else bound meanwhile takes them)
 * until release() just before the processes that bind them start.
 */
export function reservePorts(n: number): { ports: number[]; release(): void } {
  const listeners = Array.from({ length: n }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  return { ports: listeners.map((l) => l.port), release: () => listeners.forEach((l) => l.stop(true)) };
}

/** Parses an INFO reply's `field:value` lines. */
export function parseInfo(reply: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of reply.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#") && !line.startsWith("$")) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export class ProcCluster {
  /** Clusters started and not stopped yet (stopAll() ends them, e.g. after a test that timed out). */
  private static readonly running = new Set<ProcCluster>();
  readonly nodes: ProcNode[] = [];
  /** links.get(`${i}->${j}`): the proxy node i dials to reach node j's peer port. */
  readonly links = new Map<string, FaultProxy>();
  /** clientLinks.get(`${i}->${j}`): the proxy node i dials to reach node j's client port (its leader link). */
  readonly clientLinks = new Map<string, FaultProxy>();
  /** Nodes that exited on their own (not killed or stopped here): a crash, with the end of its log. */
  readonly unexpectedExits: { id: number; code: number | null; signal: string | null; log: string }[] = [];
  private readonly env: Record<string, string>;
  private stopped = false;

  private constructor(readonly opts: ClusterOptions) {
    this.env = { ...(process.env as Record<string, string>), NO_COLOR: "1", ...opts.env };
  }

  static async start(opts: ClusterOptions): Promise<ProcCluster> {
    if (!existsSync(KV_BIN)) throw new Error(`${KV_BIN} is missing: run 'bun run build' first`);
    const c = new ProcCluster(opts);
    ProcCluster.running.add(c);
    const n = opts.nodes ?? 3;
    const reserved = reservePorts(2 * n);
    const ports = reserved.ports;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    for (const i of ids) {
      for (const j of ids) {
        if (i === j) continue;
        c.links.set(`${i}->${j}`, FaultProxy.start({ targetPort: ports[n + j - 1] as number, name: `${i}->${j}` }));
        c.clientLinks.set(`${i}->${j}`, FaultProxy.start({ targetPort: ports[j - 1] as number, name: `${i}->${j} (client port)` }));
      }
    }
    const clusterId = `chaos-${ports[0]}`;
    for (const i of ids) {
      const members = ids.map((j) => (i === j ? `${j}=127.0.0.1:${ports[j - 1]}@${ports[n + j - 1]}` : `${j}=127.0.0.1:${c.clientLink(i, j).port}@${c.link(i, j).port}`)).join(",");
      const dataDir = join(opts.dir, `n${i}`);
      mkdirSync(dataDir, { recursive: true });
      const argv = [
        KV_BIN, "serve", "--id", String(i), "--host", "127.0.0.1", "--port", String(ports[i - 1]), "--data-dir", dataDir,
        "--cluster", members, "--cluster-id", clusterId, "--peer-port", String(ports[n + i - 1]),
        "--heartbeat-interval", String(opts.heartbeatMs ?? 50), "--election-timeout", String(opts.electionMs ?? 300),
        ...(opts.extraArgs ?? []),
      ];
      c.nodes.push({ id: i, port: ports[i - 1] as number, peerPort: ports[n + i - 1] as number, dataDir, logFile: join(opts.dir, `n${i}.log`), argv, proc: null, state: "down", starts: 0, logOffset: 0 });
    }
    reserved.release();
    for (const node of c.nodes) c.spawn(node);
    try {
      await Promise.all(c.nodes.map((node) => c.waitAnswering(node.id, 15_000)));
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  node(id: number): ProcNode {
    const n = this.nodes[id - 1];
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  link(from: number, to: number): FaultProxy {
    const p = this.links.get(`${from}->${to}`);
    if (!p) throw new Error(`no link ${from}->${to}`);
    return p;
  }

  private spawn(node: ProcNode): void {
    node.logOffset = existsSync(node.logFile) ? statSync(node.logFile).size : 0;
    const fd = openSync(node.logFile, "a");
    let proc: Subprocess;
    try {
      proc = Bun.spawn([...node.argv], { stdin: "ignore", stdout: fd, stderr: fd, env: this.env });
    } finally {
      closeSync(fd);
    }
    node.proc = proc;
    void proc.exited.then(() => {
      if (node.proc === proc && node.state !== "down" && !this.stopped) {
        node.state = "down";
        this.unexpectedExits.push({ id: node.id, code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode), log: this.logTail(node.id, 40) });
      }
    });
    node.state = "up";
    node.starts++;
  }

  /** A connection to a node's client port, authenticated when the cluster has a password. */
  private async connect(port: number): Promise<RawResp> {
    const c = await RawResp.connect(port);
    if (this.opts.password !== undefined) {
      const [r] = await c.call([this.opts.user === undefined ? ["AUTH", this.opts.password] : ["AUTH", this.opts.user, this.opts.password]], 1000);
      if (r !== "+OK\r\n") {
        c.close();
        throw new Error(`AUTH to port ${port} answered ${r}`);
      }
    }
    return c;
  }

  /** Waits until the node answers PING (bounded). */
  async waitAnswering(id: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const node = this.node(id);
    for (;;) {
      if (node.proc && node.proc.exitCode !== null) throw new Error(`node ${id} exited with ${node.proc.exitCode}:\n${this.logTail(id)}`);
      try {
        const c = await this.connect(node.port);
        try {
          const [r] = await c.call([["PING"]], 1000);
          if (r === "+PONG\r\n") return;
        } finally {
          c.close();
        }
      } catch {
        // not listening yet
      }
      if (performance.now() > deadline) throw new Error(`node ${id} did not answer within ${timeoutMs} ms:\n${this.logTail(id)}`);
      await Bun.sleep(25);
    }
  }

  /** The last lines of a node's log. */
  logTail(id: number, lines = 30): string {
    try {
      return readFileSync(this.node(id).logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /**
   * INFO raft of one node, or null if it does not answer within timeoutMs. A build whose INFO has no
   * raft section yet: role, leader and term from the node's last role line in its log (it answered, so
   * it is alive).
   */
  async info(id: number, timeoutMs = 1000): Promise<RaftInfo | null> {
    const node = this.node(id);
    if (node.state !== "up") return null;
    let c: RawResp | null = null;
    try {
      c = await this.connect(node.port);
      const [r] = await c.call([["INFO", "raft"]], timeoutMs);
      if (!r || !r.startsWith("$")) return null;
      const info = parseInfo(r);
      return info.raft_role !== undefined ? info : this.roleFromLog(node);
    } catch {
      return null;
    } finally {
      c?.close();
    }
  }

  /** One command to a node; its raw reply, or null if it does not answer within timeoutMs. */
  async command(id: number, argv: string[], timeoutMs = 2000): Promise<string | null> {
    const node = this.node(id);
    if (node.state !== "up") return null;
    let c: RawResp | null = null;
    try {
      c = await this.connect(node.port);
      const [r] = await c.call([argv], timeoutMs);
      return r ?? null;
    } catch {
      return null;
    } finally {
      c?.close();
    }
  }

  private roleFromLog(node: ProcNode): RaftInfo {
    let text = "";
    try {
      text = readFileSync(node.logFile, "latin1").slice(node.logOffset);
    } catch {
      // no log yet
    }
    const ms = [...text.matchAll(/leader of term (\d+)|following node (\d+) \(term (\d+)\)|no leader known \(term (\d+)\)/g)];
    const m = ms[ms.length - 1];
    const base = { raft_node_id: String(node.id) };
    if (!m) return { ...base, raft_role: "follower", raft_leader_id: "0", raft_term: "0" };
    if (m[1] !== undefined) return { ...base, raft_role: "leader", raft_leader_id: String(node.id), raft_term: m[1] };
    if (m[2] !== undefined) return { ...base, raft_role: "follower", raft_leader_id: m[2], raft_term: m[3] as string };
    return { ...base, raft_role: "follower", raft_leader_id: "0", raft_term: m[4] as string };
  }

  /**
   * Waits until one node that is up says it is the leader and every node in `among` (default: all up
   * and reachable ones) names it; returns its id. Bounded by timeoutMs.
   */
  async waitLeader(timeoutMs = 10_000, among?: readonly number[]): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const ids = (among ?? this.nodes.filter((n) => n.state === "up").map((n) => n.id)).slice();
      const infos = await Promise.all(ids.map((id) => this.info(id, 500)));
      const leaders = infos.filter((i) => i?.raft_role === "leader").map((i) => Number(i!.raft_node_id));
      if (leaders.length === 1) {
        const l = leaders[0] as number;
        if (infos.every((i) => i !== null && Number(i.raft_leader_id) === l)) return l;
      }
      if (performance.now() > deadline) {
        throw new Error(`no agreed leader within ${timeoutMs} ms among ${ids.join(",")}: ${JSON.stringify(infos.map((i) => i && { id: i.raft_node_id, role: i.raft_role, leader: i.raft_leader_id, term: i.raft_term }))}`);
      }
      await Bun.sleep(50);
    }
  }

  /** kill -9; waits for the exit. */
  async kill(id: number): Promise<void> {
    const node = this.node(id);
    const p = node.proc;
    if (!p || node.state === "down") return;
    node.state = "down";
    p.kill("SIGKILL");
    await p.exited;
  }

  /** Sends SIGKILL and returns at once (the caller times what follows); state is "down" from now. */
  killNow(id: number): Promise<number> {
    const node = this.node(id);
    const p = node.proc;
    if (!p) throw new Error(`node ${id} not running`);
    node.state = "down";
    p.kill("SIGKILL");
    return p.exited;
  }

  /** Starts a killed node again with the same argv and data dir; waits until it answers. */
  async restart(id: number, timeoutMs = 15_000): Promise<void> {
    const node = this.node(id);
    if (node.state !== "down") throw new Error(`node ${id} is ${node.state}`);
    await node.proc?.exited;
    this.spawn(node);
    await this.waitAnswering(id, timeoutMs);
  }

  pause(id: number): void {
    const node = this.node(id);
    if (node.state !== "up" || !node.proc) return;
    node.proc.kill("SIGSTOP");
    node.state = "paused";
  }

  resume(id: number): void {
    const node = this.node(id);
    if (node.state !== "paused" || !node.proc) return;
    node.proc.kill("SIGCONT");
    node.state = "up";
  }

  clientLink(from: number, to: number): FaultProxy {
    const p = this.clientLinks.get(`${from}->${to}`);
    if (!p) throw new Error(`no client link ${from}->${to}`);
    return p;
  }

  /**
   * Sets what node `from` dials to reach node `to` (its peer port and its client port). Dropping it
   * cuts the connections `from` opens to `to`, both of their directions: Raft messages from `from`, and
   * requests `from` forwards to `to` with their replies.
   */
  setDirected(from: number, to: number, mode: ProxyMode): void {
    this.link(from, to).setMode(mode);
    this.clientLink(from, to).setMode(mode);
  }

  /** Sets both directions of the link between a and b. */
  setLink(a: number, b: number, mode: ProxyMode): void {
    this.setDirected(a, b, mode);
    this.setDirected(b, a, mode);
  }

  /** Cuts every link between `id` and the others, both ways. */
  isolate(id: number): void {
    for (const n of this.nodes) if (n.id !== id) this.setLink(id, n.id, { kind: "drop" });
  }

  /** Cuts every link between nodes of different groups; links inside a group pass. */
  partition(groups: readonly (readonly number[])[]): void {
    const groupOf = new Map<number, number>();
    groups.forEach((g, gi) => g.forEach((id) => groupOf.set(id, gi)));
    for (const key of this.links.keys()) {
      const [a, b] = key.split("->").map(Number) as [number, number];
      const same = groupOf.get(a) !== undefined && groupOf.get(a) === groupOf.get(b);
      this.setDirected(a, b, same ? { kind: "pass" } : { kind: "drop" });
    }
  }

  /** Every link back to pass. */
  heal(): void {
    for (const p of [...this.links.values(), ...this.clientLinks.values()]) p.setMode({ kind: "pass" });
  }

  /** Stops every cluster still running. */
  static async stopAll(): Promise<void> {
    await Promise.all([...ProcCluster.running].map((c) => c.stop()));
  }

  /** Resumes paused nodes, kills every process, stops the proxies. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    ProcCluster.running.delete(this);
    for (const n of this.nodes) {
      if (n.proc && n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill("SIGKILL");
    }
    await Promise.all(this.nodes.map((n) => n.proc?.exited));
    for (const n of this.nodes) n.state = "down";
    for (const p of [...this.links.values(), ...this.clientLinks.values()]) p.stop();
  }
}
