#!/usr/bin/env bun
// A 3-node kv cluster against one kv node and against a 3-member etcd, in the same run, interleaved:
// throughput, latency and each server process's CPU per operation. See docs/benchmarks.md.
//
//   bun scripts/bench-cluster.ts [--rounds 3] [--quick] [--no-etcd] [--json FILE] [--kv-args "..."]
//
// kv: every node runs `kv serve ... --fsync always` on a free loopback port with its own temp data
// dir; the cluster's nodes get `--id i --cluster 1=127.0.0.1:P1@Q1,...` (client and peer ports both
// picked free). Load: redis-benchmark -c 50 -d 16 -r 100000 at -P 1 and -P 16, SET and GET, on three
// targets: the single node, the cluster's leader, and the cluster spread over all nodes (one
// redis-benchmark per node in parallel, -c and -n split, ops/s summed).
// etcd: Debian's etcd-server, 3 members, and scripts/etcdbench (a Go gRPC load generator built here
// offline in GOPATH mode against Debian's golang-etcd-server-dev): 50 clients on the leader, 16-byte
// keys and values, puts and linearizable single-key ranges. Skipped with a message when absent.
// Exits non-zero only when something fails to run; missed targets print "TARGET MISSED".
import { parseArgs } from "node:util";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, renameSync } from "node:fs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import {
  bulkLoad,
  fmtNum,
  fmtOps,
  freePort,
  installCleanupHandlers,
  isAlive,
  machineDescription,
  machineProcessSeconds,
  makeTempDir,
  median,
  minMax,
  onCleanup,
  printTable,
  procCpuSeconds,
  respCommand,
  runCleanups,
  sleep,
  splitCommandLine,
  startServer,
  RoundBudget,
  type Server,
} from "./bench-lib.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

// ---------------------------------------------------------------- options

const { values: opt } = parseArgs({
  args: process.argv.slice(2),
  options: {
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    "no-etcd": { type: "boolean", default: false },
    "no-cluster": { type: "boolean", default: false },
    "kv-args": { type: "string", default: "" },
    requests: { type: "string" },
    "etcd-requests": { type: "string" },
    retries: { type: "string", default: "1" },
    "run-timeout": { type: "string", default: "180" },
    budget: { type: "string" },
    json: { type: "string" },
    report: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});

if (opt.help) {
  console.log(`usage: bun scripts/bench-cluster.ts [options]
  --rounds N            interleaved rounds (default 3; 1 with --quick)
  --quick               short smoke run: 1 round, few requests, small preload
  --no-etcd             leave etcd out (it is also left out, with a message, when it is not installed)
  --no-cluster          leave the kv cluster out (single node and etcd only)
  --kv-args "..."       extra arguments for every "kv serve" (single node and cluster alike)
  --requests N          requests per redis-benchmark run (default 100000 at -P 1, 500000 at -P 16)
  --etcd-requests N     requests per etcd run (default 40000 puts, 60000 ranges)
  --retries N           rerun a run disturbed by other load up to N times (default 1)
  --run-timeout S       kill a load generator after S seconds (default 180)
  --budget S            seconds of measuring after which no more reruns or long idle waits (default 600)
  --json FILE           also write every measurement as JSON
  --report FILES        only print the tables again from --json file(s), comma-separated (rounds pooled)
etcd needs Debian packages: bash scripts/bench-tools.sh installs them
env: KV_BENCH_IDLE_MAX_MS   longest wait for an idle machine before each run (default 10000)`);
  process.exit(0);
}

function intOpt(name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  const n = Number(v.replace(/_/g, ""));
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const quick = opt.quick!;
const rounds = intOpt("rounds", opt.rounds, quick ? 1 : 3, 1);
const retries = intOpt("retries", opt.retries, 1, 0);
const runTimeoutMs = intOpt("run-timeout", opt["run-timeout"], 180, 1) * 1000;
const budgetMs = intOpt("budget", opt.budget, quick ? 60 : 600, 0) * 1000;
const idleMaxMs = intOpt("KV_BENCH_IDLE_MAX_MS", process.env.KV_BENCH_IDLE_MAX_MS, quick ? 2000 : 10_000, 0);
const requestsFor = (p: number): number =>
  intOpt("requests", opt.requests, quick ? (p === 1 ? 10_000 : 50_000) : p === 1 ? 100_000 : 500_000, 1);
const etcdRequestsFor = (op: EtcdOp): number =>
  intOpt("etcd-requests", opt["etcd-requests"], quick ? 3000 : op === "put" ? 40_000 : 60_000, 1);

const CLIENTS = 50;
const DATA_BYTES = 16;
const KEYSPACE = 100_000;
const NODES = 3;
/** Keys loaded before the first round (all of the key space: every GET and range finds its key). */
const PRELOAD_KEYS = quick ? 10_000 : KEYSPACE;
/**
 * A run is "disturbed" when processes other than the servers under test, the load generator and
 * this script used more than this share of one core during it (their work steals the 2 cores).
 */
const NOISE_LIMIT = 0.15;
const PIPELINES = [1, 16] as const;
const TESTS = ["set", "get"] as const;
type Test = (typeof TESTS)[number];
type EtcdOp = "put" | "range";
type Target = "single" | "cluster-leader" | "cluster-spread";

// ---------------------------------------------------------------- small helpers

function which(cmd: string): string | null {
  if (cmd.includes("/")) return existsSync(cmd) ? cmd : null;
  return Bun.which(cmd);
}

function versionOf(argv: string[]): string {
  try {
    const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", timeout: 5000 });
    return (r.stdout.toString() + r.stderr.toString()).trim().split("\n")[0] ?? "";
  } catch {
    return "?";
  }
}

/** `field:value` lines of an INFO reply. */
function parseInfo(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

/** Splits `total` into `parts` integers that differ by at most 1 (larger first). */
function split(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}

/** Runs a child to completion with a timeout; returns its output, exit code and CPU seconds. */
async function runChild(argv: string[], env?: Record<string, string | undefined>): Promise<{ out: string; err: string; code: number; signal: string | null; cpuS: number; wallS: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: env ?? process.env });
  const kill = () => {
    try {
      proc.kill("SIGKILL");
    } catch {
      // gone
    }
  };
  onCleanup(kill);
  const timer = setTimeout(kill, runTimeoutMs);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const usage = proc.resourceUsage();
  const cpuS = usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : NaN;
  return { out, err, code, signal: proc.signalCode == null ? null : String(proc.signalCode), cpuS, wallS: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------- budget and idle gate

const roundBudget = new RoundBudget(budgetMs, rounds, idleMaxMs);
const startRoundBudget = (): void => roundBudget.startRound();
const withinBudget = (): boolean => roundBudget.within();
const idleGate = (label: string): Promise<number> => roundBudget.idleGate(label);

// ---------------------------------------------------------------- measurements

interface Common {
  round: number;
  requests: number;
  ops: number;
  avgMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Server CPU per operation, per process (node ids / member order), microseconds. */
  nodeCpuUsPerOp: number[];
  /** Sum over the server processes. */
  cpuUsPerOp: number;
  /** Sum over the server processes, in cores, over the run's wall time. */
  cpuShare: number;
  clientCpuShare: number;
  otherCpuShare: number;
  wallS: number;
  attempts: number;
}

interface KvRun extends Common {
  target: Target;
  pipeline: number;
  test: Test;
  /** Total requests / wall time of the slowest redis-benchmark (equals ops for one). */
  opsWall: number;
  leaderId: number;
}

interface EtcdRun extends Common {
  op: EtcdOp;
  errors: number;
}

/** Every server process this script started (the idle ones too), so that their CPU is not "other" load. */
const ownServerPids = new Set<number>();

/**
 * Measures CPU of `pids` (the servers under test), of the whole machine and of this script around
 * `fn` (which reports its children's CPU). "Other" is what the rest of the machine used: not the
 * servers this script started (under test or idle), not the load generators, not this script.
 */
async function measured<T extends { clientCpuS: number; requests: number; wallS: number }>(
  pids: number[],
  fn: () => Promise<T>,
): Promise<T & { nodeCpuUsPerOp: number[]; cpuUsPerOp: number; cpuShare: number; clientCpuShare: number; otherCpuShare: number }> {
  const idle = [...ownServerPids].filter((p) => !pids.includes(p));
  const sum = (ps: number[]) => ps.map(procCpuSeconds).filter((x) => Number.isFinite(x)).reduce((a, b) => a + b, 0);
  const cpu0 = pids.map(procCpuSeconds);
  const idle0 = sum(idle);
  const all0 = machineProcessSeconds();
  const self0 = process.cpuUsage();
  const r = await fn();
  const cpu1 = pids.map(procCpuSeconds);
  const idle1 = sum(idle);
  const all1 = machineProcessSeconds();
  const self1 = process.cpuUsage(self0);
  const deltas = cpu1.map((c, i) => c - cpu0[i]!);
  const serverS = deltas.reduce((a, b) => a + b, 0);
  const otherS =
    all1 - all0 - serverS - (idle1 - idle0) - (Number.isFinite(r.clientCpuS) ? r.clientCpuS : 0) - (self1.user + self1.system) / 1e6;
  return {
    ...r,
    nodeCpuUsPerOp: deltas.map((d) => (d / r.requests) * 1e6),
    cpuUsPerOp: (serverS / r.requests) * 1e6,
    cpuShare: serverS / r.wallS,
    clientCpuShare: r.clientCpuS / r.wallS,
    otherCpuShare: Math.max(0, otherS / r.wallS),
  };
}

function parseCsv(out: string): Map<string, number[]> {
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const rows = new Map<string, number[]>();
  for (const line of out.split(/\r?\n/)) {
    if (!line.startsWith('"') || line.startsWith('"test"')) continue;
    const cells = line.split(",").map((c) => c.replace(/^"|"$/g, ""));
    rows.set(cells[0]!.toUpperCase(), cells.slice(1).map(Number));
  }
  return rows;
}

const redisBenchmarkArgv = (port: number, clients: number, requests: number, p: number, test: Test): string[] => [
  "redis-benchmark", "-h", "127.0.0.1", "-p", String(port),
  "-c", String(clients), "-n", String(requests), "-d", String(DATA_BYTES), "-r", String(KEYSPACE),
  "-P", String(p), "-t", test, "--csv",
];

/**
 * One redis-benchmark per port, in parallel, with -c and -n split between them. ops/s is the sum of
 * their figures; p50/p99 are the largest of theirs (an upper bound of the merged percentile: each
 * share has at least that fraction of its requests at or below it); avg is request-weighted.
 */
async function redisBenchmarks(ports: number[], p: number, test: Test, requests: number) {
  const cs = split(CLIENTS, ports.length);
  const ns = split(requests, ports.length);
  const t0 = performance.now();
  const results = await Promise.all(ports.map((port, i) => runChild(redisBenchmarkArgv(port, cs[i]!, ns[i]!, p, test))));
  const wallS = (performance.now() - t0) / 1000;
  const rows = results.map((r, i) => {
    const argv = redisBenchmarkArgv(ports[i]!, cs[i]!, ns[i]!, p, test).join(" ");
    if (r.code !== 0) {
      const why = r.signal ? `killed by ${r.signal} (timeout ${runTimeoutMs / 1000} s?)` : `exit code ${r.code}`;
      throw new Error(`redis-benchmark ${why}: ${argv}\n${r.err.trim().slice(-1000)}\n${r.out.trim().slice(-1000)}`);
    }
    const row = parseCsv(r.out).get(test.toUpperCase());
    if (!row || row.length < 7 || row.some((x) => !Number.isFinite(x))) {
      throw new Error(`could not parse redis-benchmark CSV (${argv}):\n${r.out.trim().slice(-1000)}\n${r.err.trim().slice(-500)}`);
    }
    return row;
  });
  return {
    requests,
    ops: rows.reduce((a, r) => a + r[0]!, 0),
    opsWall: requests / Math.max(...results.map((r) => r.wallS)),
    avgMs: rows.reduce((a, r, i) => a + r[1]! * ns[i]!, 0) / requests,
    p50Ms: Math.max(...rows.map((r) => r[3]!)),
    p99Ms: Math.max(...rows.map((r) => r[5]!)),
    maxMs: Math.max(...rows.map((r) => r[6]!)),
    clientCpuS: results.reduce((a, r) => a + r.cpuS, 0),
    wallS,
  };
}

// ---------------------------------------------------------------- kv

interface KvGroup {
  name: string;
  nodes: Array<Server & { id: number }>;
  clustered: boolean;
}

let kvExe = `${ROOT}/kv`;
const kvCommonArgs = (): string[] => ["--fsync", "always", ...splitCommandLine(opt["kv-args"] ?? "")];

function kvHasCluster(exe: string): boolean {
  const help = Bun.spawnSync([exe, "serve", "--help"], { stdout: "pipe", stderr: "pipe", timeout: 10_000, env: { ...process.env, NO_COLOR: "1" } });
  return /--cluster\b/.test(help.stdout.toString() + help.stderr.toString());
}

/** Any reply to PING (also -CLUSTERDOWN while no leader is known) means the node is up. */
const answersPing = (port: number) => async (): Promise<string | null> => {
  const r = await respCommand(port, ["PING"], 1000);
  return r.length > 0 ? null : "empty reply to PING";
};

async function startSingle(tmp: string): Promise<KvGroup> {
  const dir = join(tmp, "single");
  mkdirSync(dir, { recursive: true });
  const port = freePort();
  const argv = [kvExe, "serve", "--port", String(port), "--data-dir", dir, ...kvCommonArgs()];
  const s = await startServer("kv-single", argv, port, dir, { cwd: tmp, readyMs: 20_000 });
  console.log(`started kv single node pid ${s.pid} on 127.0.0.1:${port}: ${argv.join(" ")}`);
  ownServerPids.add(s.pid);
  return { name: "single", nodes: [{ ...s, id: 1 }], clustered: false };
}

async function startCluster(tmp: string): Promise<KvGroup> {
  const ports = Array.from({ length: NODES }, () => ({ client: freePort(), peer: freePort() }));
  const spec = ports.map((p, i) => `${i + 1}=127.0.0.1:${p.client}@${p.peer}`).join(",");
  const nodes = await Promise.all(
    ports.map(async (p, i) => {
      const id = i + 1;
      const dir = join(tmp, `n${id}`);
      mkdirSync(dir, { recursive: true });
      const argv = [kvExe, "serve", "--id", String(id), "--port", String(p.client), "--data-dir", dir, "--cluster", spec, ...kvCommonArgs()];
      const s = await startServer(`kv-n${id}`, argv, p.client, dir, { cwd: tmp, readyMs: 20_000, ready: answersPing(p.client) });
      ownServerPids.add(s.pid);
      if (id === 1) console.log(`kv cluster node command: ${argv.join(" ")}`);
      return { ...s, id };
    }),
  );
  console.log(`started kv cluster: ${nodes.map((n) => `n${n.id} pid ${n.pid} 127.0.0.1:${n.port}`).join(", ")}`);
  return { name: "cluster", nodes, clustered: true };
}

/** The node every member names as leader (INFO raft), and its term; waits up to `maxMs` for one. */
async function kvLeader(g: KvGroup, maxMs = 20_000): Promise<Server & { id: number; term: number }> {
  if (!g.clustered) return { ...g.nodes[0]!, term: 0 };
  const start = performance.now();
  let last = "";
  for (let i = 0; i < 1000 && performance.now() - start < maxMs; i++) {
    try {
      const infos = await Promise.all(g.nodes.map(async (n) => parseInfo(await respCommand(n.port, ["INFO", "raft"], 2000))));
      const leaders = infos.map((m) => Number(m.get("raft_leader_id") ?? "0"));
      const self = g.nodes.findIndex((_, j) => infos[j]!.get("raft_role") === "leader");
      if (self >= 0 && leaders.every((l) => l === g.nodes[self]!.id)) return { ...g.nodes[self]!, term: Number(infos[self]!.get("raft_term") ?? "0") };
      last = `roles ${infos.map((m) => m.get("raft_role") ?? "?").join(",")}, leader ids ${leaders.join(",")}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await sleep(100);
  }
  throw new Error(`kv cluster: no leader that all nodes agree on within ${maxMs} ms (${last})`);
}

/** Error replies a cluster gives while it has no leader or changes leader: the run is retried. */
const RETRYABLE_REPLY = /-?(UNCERTAIN|TRYAGAIN|CLUSTERDOWN)\b/;
/** Leader changes and retryable error replies seen, for the report. */
const leaderEvents: string[] = [];

/** Tells of a run that saw the leader change (from before it to after it) or an error reply: a retry is due. */
class Unsettled extends Error {}

async function kvRun(g: KvGroup, target: Target, p: number, test: Test, requests: number) {
  const leader = await kvLeader(g);
  const ports = target === "cluster-spread" ? g.nodes.map((n) => n.port) : [leader.port];
  let r: Awaited<ReturnType<typeof redisBenchmarks>> & Awaited<ReturnType<typeof measured>>;
  try {
    r = await measured(
      g.nodes.map((n) => n.pid),
      () => redisBenchmarks(ports, p, test, requests),
    );
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    for (const n of g.nodes) if (!isAlive(n)) throw new Error(`kv ${n.name} died during ${test} -P ${p} (log: ${n.logPath})`);
    // redis-benchmark 7 exits at the first error reply.
    const m = RETRYABLE_REPLY.exec(msg);
    if (g.clustered && m) throw new Unsettled(`${m[1]} reply during the run (leader was n${leader.id})`);
    throw e;
  }
  for (const n of g.nodes) if (!isAlive(n)) throw new Error(`kv ${n.name} died during ${test} -P ${p} (log: ${n.logPath})`);
  const after = await kvLeader(g);
  if (after.id !== leader.id || after.term !== leader.term) {
    throw new Unsettled(`leader changed during the run: n${leader.id} term ${leader.term} -> n${after.id} term ${after.term}`);
  }
  return { ...r, leaderId: leader.id };
}

// ---------------------------------------------------------------- etcd

interface Etcd {
  members: Server[];
  endpoints: string[];
  bench: string;
}

function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "kv-bench");
}

/**
 * Builds scripts/etcdbench offline in GOPATH mode against Debian's clientv3 sources, once per
 * source and Go version (cached). Returns the binary, or null with the reason printed.
 */
function buildEtcdbench(): string | null {
  const gopath = "/usr/share/gocode";
  if (!which("go")) {
    console.log("etcd skipped: no Go toolchain to build scripts/etcdbench (bash scripts/bench-tools.sh installs it)");
    return null;
  }
  if (!existsSync(join(gopath, "src/go.etcd.io/etcd/clientv3"))) {
    console.log(`etcd skipped: no etcd client sources in ${gopath} (bash scripts/bench-tools.sh installs them)`);
    return null;
  }
  const src = join(ROOT, "scripts/etcdbench/main.go");
  const goVersion = versionOf(["go", "version"]);
  const hash = createHash("sha256").update(readFileSync(src)).update(goVersion).digest("hex").slice(0, 16);
  const dir = cacheDir();
  const bin = join(dir, `etcdbench-${hash}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  console.log(`building scripts/etcdbench (${goVersion}, GOPATH mode against ${gopath}) ...`);
  const tmpBin = `${bin}.tmp${process.pid}`;
  const r = Bun.spawnSync(["go", "build", "-o", tmpBin, src], {
    cwd: join(ROOT, "scripts/etcdbench"),
    stdout: "pipe",
    stderr: "pipe",
    timeout: 300_000,
    env: { ...process.env, GO111MODULE: "off", GOPATH: gopath, GOFLAGS: "", GOCACHE: join(dir, "gocache"), GOPROXY: "off" },
  });
  if (r.exitCode !== 0 || !existsSync(tmpBin)) {
    console.log(`etcd skipped: building scripts/etcdbench failed:\n${(r.stderr.toString() + r.stdout.toString()).trim().slice(-2000)}`);
    return null;
  }
  chmodSync(tmpBin, 0o755);
  renameSync(tmpBin, bin);
  return bin;
}

async function startEtcd(tmp: string, bench: string): Promise<Etcd> {
  const ports = Array.from({ length: NODES }, () => ({ client: freePort(), peer: freePort() }));
  const initial = ports.map((p, i) => `s${i + 1}=http://127.0.0.1:${p.peer}`).join(",");
  const members = await Promise.all(
    ports.map(async (p, i) => {
      const name = `s${i + 1}`;
      const dir = join(tmp, `etcd-${name}`);
      mkdirSync(dir, { recursive: true });
      const argv = [
        "etcd", "--name", name, "--data-dir", join(dir, "data"),
        "--listen-client-urls", `http://127.0.0.1:${p.client}`, "--advertise-client-urls", `http://127.0.0.1:${p.client}`,
        "--listen-peer-urls", `http://127.0.0.1:${p.peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${p.peer}`,
        "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", `kv-bench-${process.pid}`,
        "--logger", "zap", "--log-outputs", join(dir, "etcd.log"),
      ];
      const ready = async (): Promise<string | null> => {
        const res = await fetch(`http://127.0.0.1:${p.client}/health`, { signal: AbortSignal.timeout(1000) });
        const body = await res.text();
        return /"health":\s*"true"/.test(body) ? null : `health: ${body.slice(0, 200)}`;
      };
      const s = await startServer(`etcd-${name}`, argv, p.client, dir, { cwd: tmp, readyMs: 30_000, ready });
      ownServerPids.add(s.pid);
      if (i === 0) console.log(`etcd member command: ${argv.join(" ")}`);
      return s;
    }),
  );
  console.log(`started etcd: ${members.map((m) => `${m.name} pid ${m.pid} 127.0.0.1:${m.port}`).join(", ")}`);
  return { members, endpoints: members.map((m) => `127.0.0.1:${m.port}`), bench };
}

async function etcdLeader(e: Etcd): Promise<string> {
  let last = "";
  const start = performance.now();
  for (let i = 0; i < 100 && performance.now() - start < 20_000; i++) {
    const r = await runChild([e.bench, "-op", "leader", "-endpoints", e.endpoints.join(",")]);
    if (r.code === 0 && r.out.trim()) return r.out.trim();
    last = r.err.trim();
    await sleep(200);
  }
  throw new Error(`etcd: no leader within 20 s (${last})`);
}

const etcdbenchArgv = (e: Etcd, endpoint: string, op: EtcdOp, total: number, extra: string[] = []): string[] => [
  e.bench, "-op", op, "-endpoints", endpoint, "-clients", String(CLIENTS), "-conns", "10", "-total", String(total),
  "-key-size", "16", "-val-size", String(DATA_BYTES), "-key-space", String(KEYSPACE), ...extra,
];

interface EtcdbenchResult {
  requests: number;
  errors: number;
  firstError?: string;
  seconds: number;
  ops: number;
  avgMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function etcdbench(argv: string[]): Promise<EtcdbenchResult & { clientCpuS: number; wallS: number }> {
  const r = await runChild(argv);
  const line = r.out.trim().split("\n").pop() ?? "";
  let parsed: EtcdbenchResult;
  try {
    parsed = JSON.parse(line) as EtcdbenchResult;
  } catch {
    throw new Error(`etcdbench failed (code ${r.code}${r.signal ? `, ${r.signal}` : ""}): ${argv.join(" ")}\n${r.err.trim().slice(-1000)}\n${r.out.trim().slice(-500)}`);
  }
  if (r.code !== 0 || parsed.errors > 0) {
    throw new Error(`etcdbench: ${parsed.errors} errors (first: ${parsed.firstError ?? "?"}), code ${r.code}: ${argv.join(" ")}`);
  }
  return { ...parsed, clientCpuS: r.cpuS, wallS: r.wallS };
}

async function etcdRun(e: Etcd, op: EtcdOp, total: number) {
  const leader = await etcdLeader(e);
  const r = await measured(
    e.members.map((m) => m.pid),
    () => etcdbench(etcdbenchArgv(e, leader, op, total)),
  );
  for (const m of e.members) if (!isAlive(m)) throw new Error(`${m.name} died during ${op} (log: ${m.dir}/etcd.log)`);
  return r;
}

// ---------------------------------------------------------------- main

const kvRuns: KvRun[] = [];
const etcdRuns: EtcdRun[] = [];

function printRunLine(label: string, r: Omit<Common, "round" | "attempts">, extra = ""): void {
  const perNode = r.nodeCpuUsPerOp.length > 1 ? ` [${r.nodeCpuUsPerOp.map((x) => fmtNum(x, 1)).join(" + ")}]` : "";
  console.log(
    `  ${label.padEnd(28)} ${fmtOps(r.ops).padStart(6)} ops/s  p50 ${fmtNum(r.p50Ms, 3)} p99 ${fmtNum(r.p99Ms, 3)} ms  ` +
      `server ${fmtNum(r.cpuUsPerOp, 1)} us/op${perNode} (${(r.cpuShare * 100).toFixed(0)}% cpu), ` +
      `client ${(r.clientCpuShare * 100).toFixed(0)}%, other ${(r.otherCpuShare * 100).toFixed(0)}% cpu, ${r.wallS.toFixed(1)} s${extra}` +
      (r.otherCpuShare > NOISE_LIMIT ? "  [disturbed]" : ""),
  );
}

/** Most runs in a row that may end Unsettled (leader change, error reply) before the benchmark gives up. */
const MAX_UNSETTLED = 3;

/**
 * Runs `once` until it is undisturbed (at most 1 + --retries times, within budget); keeps the least
 * disturbed. A run that ends Unsettled is not a measurement: it is logged and run again (at most
 * MAX_UNSETTLED times in a row, whatever --retries says).
 */
async function withRetries<R extends { otherCpuShare: number }>(label: string, once: () => Promise<R>, show: (r: R) => void): Promise<R & { attempts: number }> {
  let best: R | null = null;
  let attempts = 0;
  for (let a = 0; a <= retries && (a === 0 || withinBudget()); a++) {
    attempts++;
    await idleGate(label);
    let r: R | null = null;
    for (let u = 0; r === null; u++) {
      try {
        r = await once();
      } catch (e) {
        if (!(e instanceof Unsettled) || u + 1 >= MAX_UNSETTLED) throw e;
        leaderEvents.push(`${label}: ${e.message}`);
        console.log(`  ${label.padEnd(28)} not measured: ${e.message}; running it again`);
        await sleep(1000);
      }
    }
    show(r);
    if (!best || r.otherCpuShare < best.otherCpuShare) best = r;
    if (r.otherCpuShare <= NOISE_LIMIT) break;
  }
  return { ...best!, attempts };
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const startedAt = new Date();
  const t0 = performance.now();

  if (!which("redis-benchmark")) {
    console.error("redis-benchmark not found: apt-get install redis-tools");
    return 1;
  }
  if (!existsSync(kvExe)) {
    console.error(`${kvExe} not found: run \`bun run build\` first`);
    return 1;
  }
  const tmp = makeTempDir("kv-bench-cluster-");
  // The binary is copied first, so a rebuild during the run cannot swap it.
  copyFileSync(kvExe, join(tmp, "kv"));
  kvExe = join(tmp, "kv");

  let withCluster = !opt["no-cluster"];
  if (withCluster && !kvHasCluster(kvExe)) {
    console.log("kv cluster skipped: this ./kv has no `serve --cluster` (single node and etcd only)");
    withCluster = false;
  }
  let bench: string | null = null;
  if (!opt["no-etcd"]) {
    if (!which("etcd")) console.log("etcd skipped: etcd not found (bash scripts/bench-tools.sh installs it)");
    else bench = buildEtcdbench();
  }

  const git = (args: string[]) => Bun.spawnSync(["git", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" }).stdout.toString().trim();
  const versions = {
    kv: `${versionOf([kvExe, "--version"])} (repo at ${git(["rev-parse", "--short", "HEAD"])})`,
    redisBenchmark: versionOf(["redis-benchmark", "--version"]),
    etcd: bench ? versionOf(["etcd", "--version"]) : "",
    go: bench ? versionOf(["go", "version"]) : "",
  };
  console.log(`# bench-cluster ${startedAt.toISOString()}`);
  console.log(`command: bun scripts/bench-cluster.ts ${process.argv.slice(2).join(" ")}`.trimEnd());
  console.log(`machine: ${machineDescription()}`);
  console.log(`kv: ${versions.kv}; redis-benchmark: ${versions.redisBenchmark}${bench ? `; etcd: ${versions.etcd}; ${versions.go}` : ""}`);
  console.log(
    `${rounds} round(s); redis-benchmark -c ${CLIENTS} -d ${DATA_BYTES} -r ${KEYSPACE}, -n ${requestsFor(1)} at -P 1, ${requestsFor(16)} at -P 16` +
      (bench ? `; etcdbench -clients ${CLIENTS} -conns 10, ${etcdRequestsFor("put")} puts, ${etcdRequestsFor("range")} ranges` : ""),
  );
  console.log(`redis-benchmark: ${redisBenchmarkArgv(0, CLIENTS, requestsFor(1), 1, "set").join(" ").replace("-p 0", "-p PORT")}`);
  console.log("cluster-spread: one redis-benchmark per node in parallel, -c 17/17/16 and -n split; ops/s summed, p50/p99 the largest of the three.");
  console.log("the load generators, the servers and this script share the machine: read the ratios, not the absolute figures.\n");

  const targets: Target[] = withCluster ? ["single", "cluster-leader", "cluster-spread"] : ["single"];
  const groups = new Map<"single" | "cluster", KvGroup>();
  const groupOf = (t: Target) => groups.get(t === "single" ? "single" : "cluster")!;
  let etcd: Etcd | null = null;
  let failure: Error | null = null;

  try {
    groups.set("single", await startSingle(tmp));
    if (withCluster) {
      groups.set("cluster", await startCluster(tmp));
      const l = await kvLeader(groups.get("cluster")!);
      console.log(`kv cluster leader: n${l.id} (127.0.0.1:${l.port})`);
    }
    if (bench) {
      etcd = await startEtcd(tmp, bench);
      console.log(`etcd leader: ${await etcdLeader(etcd)}`);
      console.log(`etcdbench: ${etcdbenchArgv(etcd, "LEADER", "put", etcdRequestsFor("put")).join(" ")} (and -op range: linearizable)`);
    }

    // Preload the key space (every GET / range finds its key) and warm up; not recorded.
    console.log(`\npreloading ${PRELOAD_KEYS} keys (key:%012d, ${DATA_BYTES} B values) into each system, then a warm-up`);
    for (const [name, g] of groups) {
      let leader = await kvLeader(g);
      let ms = NaN;
      // SETs of the same keys and values are idempotent: a load cut off by an error reply is started again.
      for (let attempt = 1; Number.isNaN(ms); attempt++) {
        try {
          ms = (await bulkLoad(leader.port, PRELOAD_KEYS, DATA_BYTES, { timeoutMs: 300_000 })).ms;
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          const m = RETRYABLE_REPLY.exec(msg);
          if (!g.clustered || !m || attempt >= MAX_UNSETTLED) throw e;
          leaderEvents.push(`preload: ${m[1]} reply (leader was n${leader.id})`);
          console.log(`  kv ${name}: preload cut off by a ${m[1]} reply (leader was n${leader.id}); loading again`);
          await sleep(1000);
          leader = await kvLeader(g);
        }
      }
      console.log(`  kv ${name}: ${PRELOAD_KEYS} pipelined SETs in ${(ms / 1000).toFixed(1)} s`);
      for (const test of TESTS) {
        try {
          await redisBenchmarks([(await kvLeader(g)).port], 1, test, quick ? 5000 : 20_000);
        } catch (e) {
          const m = RETRYABLE_REPLY.exec(e instanceof Error ? e.message : String(e));
          if (!g.clustered || !m) throw e;
          leaderEvents.push(`warm-up ${test.toUpperCase()}: ${m[1]} reply`);
          console.log(`  kv ${name}: warm-up ${test.toUpperCase()} cut off by a ${m[1]} reply`);
        }
      }
    }
    if (etcd) {
      const leader = await etcdLeader(etcd);
      const r = await etcdbench(etcdbenchArgv(etcd, leader, "put", PRELOAD_KEYS, ["-sequential"]));
      console.log(`  etcd: ${PRELOAD_KEYS} puts in ${r.seconds.toFixed(1)} s`);
      await etcdbench(etcdbenchArgv(etcd, leader, "range", quick ? 1000 : 5000));
    }

    for (let round = 1; round <= rounds; round++) {
      startRoundBudget();
      console.log(`\nround ${round}/${rounds}`);
      for (const p of PIPELINES) {
        for (const test of TESTS) {
          for (const target of targets) {
            const g = groupOf(target);
            const label = `${target} ${test.toUpperCase()} -P ${p}`;
            const r = await withRetries(
              label,
              () => kvRun(g, target, p, test, requestsFor(p)),
              (x) => printRunLine(label, x, target === "cluster-spread" ? `, wall-clock sum ${fmtOps(x.opsWall)}` : ""),
            );
            kvRuns.push({
              round, target, pipeline: p, test, requests: r.requests, ops: r.ops, opsWall: r.opsWall, avgMs: r.avgMs,
              p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, nodeCpuUsPerOp: r.nodeCpuUsPerOp, cpuUsPerOp: r.cpuUsPerOp,
              cpuShare: r.cpuShare, clientCpuShare: r.clientCpuShare, otherCpuShare: r.otherCpuShare, wallS: r.wallS,
              attempts: r.attempts, leaderId: r.leaderId,
            });
          }
          // etcd right after kv's -P 1 runs of the same kind: puts next to SET, ranges next to GET.
          if (etcd && p === 1) {
            const op: EtcdOp = test === "set" ? "put" : "range";
            const label = `etcd ${op === "put" ? "put" : "range (linearizable)"}`;
            const r = await withRetries(label, () => etcdRun(etcd!, op, etcdRequestsFor(op)), (x) => printRunLine(label, x));
            etcdRuns.push({
              round, op, requests: r.requests, errors: r.errors, ops: r.ops, avgMs: r.avgMs, p50Ms: r.p50Ms, p99Ms: r.p99Ms,
              maxMs: r.maxMs, nodeCpuUsPerOp: r.nodeCpuUsPerOp, cpuUsPerOp: r.cpuUsPerOp, cpuShare: r.cpuShare,
              clientCpuShare: r.clientCpuShare, otherCpuShare: r.otherCpuShare, wallS: r.wallS, attempts: r.attempts,
            });
          }
        }
      }
    }
  } catch (e) {
    failure = e instanceof Error ? e : new Error(String(e));
    // What the kv nodes last said (elections, errors) helps to tell why.
    for (const g of groups.values())
      for (const n of g.nodes) {
        let tail = "";
        try {
          tail = readFileSync(n.logPath, "utf8").split("\n").slice(-12).join("\n");
        } catch {
          // no log
        }
        console.error(`--- ${n.name} (${n.logPath}), last lines ---\n${tail}`);
      }
  } finally {
    await Promise.all([...[...groups.values()].flatMap((g) => g.nodes), ...(etcd?.members ?? [])].map((s) => s.stop()));
  }

  const ratios = report(startedAt);
  if (leaderEvents.length > 0) {
    console.log(`\n## Runs not measured because the cluster changed leader or answered with an error (${leaderEvents.length})\n`);
    for (const e of leaderEvents) console.log(`- ${e}`);
  }
  console.log(`\ntotal time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (opt.json) {
    writeFileSync(
      opt.json,
      JSON.stringify({ startedAt: startedAt.toISOString(), argv: process.argv.slice(2), machine: machineDescription(), versions, kvRuns, etcdRuns, ratios, leaderEvents }, null, 2),
    );
    console.log(`wrote ${opt.json}`);
  }
  if (failure) {
    console.error(`\nFAILED: ${failure.message}`);
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------- report

interface Ratio {
  name: string;
  /** Median over the rounds of the ratio within each round (both sides measured minutes apart). */
  value: number;
  perRound: number[];
  /** Ratio of the medians over all rounds, for comparison. */
  ofMedians: number;
  target: string;
  ok: boolean | null;
  /** Rounds in which neither side was disturbed by other load, of the rounds paired. */
  cleanPairs: number;
  pairs: number;
}

function report(startedAt: Date): Ratio[] {
  const isClean = (r: Common) => r.otherCpuShare <= NOISE_LIMIT;
  const med = <R extends Common>(rs: R[], f: (r: R) => number) => median(rs.map(f));
  const row = <R extends Common>(label: string[], rs: R[]): string[] => {
    const [lo, hi] = minMax(rs.map((r) => r.ops));
    const nodes = rs[0]!.nodeCpuUsPerOp.length;
    const perNode = Array.from({ length: nodes }, (_, i) => fmtNum(med(rs, (r) => r.nodeCpuUsPerOp[i]!), 1)).join(" / ");
    const nClean = rs.filter(isClean).length;
    return [
      ...label,
      `${fmtOps(med(rs, (r) => r.ops))} (${fmtOps(lo)}-${fmtOps(hi)})`,
      `${fmtNum(med(rs, (r) => r.p50Ms), 3)} / ${fmtNum(med(rs, (r) => r.p99Ms), 3)}`,
      nodes > 1 ? `${perNode} = ${fmtNum(med(rs, (r) => r.cpuUsPerOp), 1)}` : fmtNum(med(rs, (r) => r.cpuUsPerOp), 1),
      `${(med(rs, (r) => r.cpuShare) * 100).toFixed(0)}%`,
      `${(med(rs, (r) => r.clientCpuShare) * 100).toFixed(0)}%`,
      `${(med(rs, (r) => r.otherCpuShare) * 100).toFixed(0)}% (${(Math.max(...rs.map((r) => r.otherCpuShare)) * 100).toFixed(0)}%)`,
      `${nClean}/${rs.length}`,
    ];
  };
  const kvSel = (t: Target, p: number, test: Test) => kvRuns.filter((r) => r.target === t && r.pipeline === p && r.test === test);
  const etcdSel = (op: EtcdOp) => etcdRuns.filter((r) => r.op === op);

  if (kvRuns.length > 0 || etcdRuns.length > 0) {
    const rounds = Math.max(0, ...kvRuns.map((r) => r.round), ...etcdRuns.map((r) => r.round));
    console.log(`\n## Medians of ${rounds} round(s), ${startedAt.toISOString().slice(0, 10)}\n`);
    console.log("CPU us/op: each server process (kv nodes n1/n2/n3, etcd members s1/s2/s3) per operation, then their sum.");
    console.log("cluster-spread p50/p99: the largest of the three redis-benchmarks' figures (an upper bound).");
    console.log(`other CPU: what processes outside the benchmark used during the run, in cores (median, max); a run with more than ${NOISE_LIMIT * 100}% is "disturbed".\n`);
    const rows: string[][] = [];
    for (const p of PIPELINES)
      for (const test of TESTS) {
        for (const t of ["single", "cluster-leader", "cluster-spread"] as Target[]) {
          const rs = kvSel(t, p, test);
          if (rs.length > 0) rows.push(row([`kv ${t}`, String(p), test.toUpperCase()], rs));
        }
        if (p === 1) {
          const op: EtcdOp = test === "set" ? "put" : "range";
          const rs = etcdSel(op);
          if (rs.length > 0) rows.push(row(["etcd 3 members, leader", "-", op === "put" ? "put" : "range (lin.)"], rs));
        }
      }
    printTable(["system", "P", "test", "ops/s (range)", "p50 / p99 ms", "server CPU us/op", "server CPU", "client CPU", "other CPU (max)", "undisturbed"], rows);
  }

  const ratios: Ratio[] = [];
  /** `a` over `b` within each round that has both, and over the medians of all rounds. */
  const add = (name: string, a: Common[], b: Common[], f: (r: Common) => number, target: string, test: ((x: number) => boolean) | null) => {
    const perRound: number[] = [];
    let cleanPairs = 0;
    for (const x of a) {
      const y = b.find((r) => r.round === x.round);
      if (!y) continue;
      perRound.push(f(x) / f(y));
      if (isClean(x) && isClean(y)) cleanPairs++;
    }
    if (perRound.length === 0) return;
    const value = median(perRound);
    ratios.push({ name, value, perRound, ofMedians: median(a.map(f)) / median(b.map(f)), target, ok: test ? test(value) : null, cleanPairs, pairs: perRound.length });
  };
  const ops = (r: Common) => r.ops;
  const p99 = (r: Common) => r.p99Ms;
  const put = etcdSel("put");
  const range = etcdSel("range");
  add("kv cluster SET -P 1 (leader) / etcd put, ops/s", kvSel("cluster-leader", 1, "set"), put, ops, ">= 3x", (x) => x >= 3);
  add("kv cluster SET -P 1 (leader) / etcd put, p99", kvSel("cluster-leader", 1, "set"), put, p99, "<= 1x", (x) => x <= 1);
  add("kv cluster SET -P 1 (spread) / etcd put, ops/s", kvSel("cluster-spread", 1, "set"), put, ops, "(info)", null);
  add("kv cluster GET -P 1 (leader) / etcd linearizable range, ops/s", kvSel("cluster-leader", 1, "get"), range, ops, ">= 3x", (x) => x >= 3);
  add("kv cluster GET -P 1 (spread) / etcd linearizable range, ops/s", kvSel("cluster-spread", 1, "get"), range, ops, "(info)", null);
  for (const p of PIPELINES)
    for (const t of ["cluster-leader", "cluster-spread"] as Target[]) {
      const isTarget = p === 1 && t === "cluster-leader";
      add(`kv ${t} / single node, durable SET -P ${p}, ops/s`, kvSel(t, p, "set"), kvSel("single", p, "set"), ops, isTarget ? ">= 0.5x" : "(info)", isTarget ? (x) => x >= 0.5 : null);
    }
  if (ratios.length > 0) {
    console.log("\n## Ratios: median over the rounds of each round's ratio (per round; ratio of the medians above)\n");
    printTable(
      ["ratio", "value", "per round", "of medians", "target", "", "undisturbed rounds"],
      ratios.map((r) => [
        r.name,
        `${fmtNum(r.value)}x`,
        r.perRound.map((x) => fmtNum(x)).join(", "),
        `${fmtNum(r.ofMedians)}x`,
        r.target,
        r.ok === null ? "" : r.ok ? "met" : "MISSED",
        `${r.cleanPairs}/${r.pairs}${r.cleanPairs === 0 ? " NOISY" : ""}`,
      ]),
    );
    const targeted = ratios.filter((r) => r.ok !== null);
    if (targeted.length > 0) {
      console.log("\n## Targets\n");
      for (const r of targeted) {
        console.log(`${r.ok ? "target met:   " : "TARGET MISSED:"} ${r.name} = ${fmtNum(r.value)}x (target ${r.target}; rounds ${r.perRound.map((x) => fmtNum(x)).join(", ")})${r.cleanPairs === 0 ? " [NOISY: other load in every round]" : ""}`);
      }
    }
  }
  return ratios;
}

let code = 1;
try {
  if (opt.report) {
    // Several files (comma-separated) are pooled: their rounds are renumbered one after another.
    let startedAt = "";
    let offset = 0;
    for (const f of opt.report.split(",")) {
      const saved = JSON.parse(readFileSync(f, "utf8")) as { startedAt: string; kvRuns: KvRun[]; etcdRuns: EtcdRun[]; leaderEvents?: string[] };
      startedAt ||= saved.startedAt;
      const maxRound = Math.max(0, ...saved.kvRuns.map((r) => r.round), ...saved.etcdRuns.map((r) => r.round));
      kvRuns.push(...saved.kvRuns.map((r) => ({ ...r, round: r.round + offset })));
      etcdRuns.push(...saved.etcdRuns.map((r) => ({ ...r, round: r.round + offset })));
      leaderEvents.push(...(saved.leaderEvents ?? []));
      offset += maxRound;
    }
    report(new Date(startedAt));
    code = 0;
  } else code = await main();
} catch (e) {
  console.error(`FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  code = 1;
} finally {
  runCleanups();
}
process.exit(code);
