// kv cluster's parts without a running cluster: the command line of `up`, the layout and the argv
// of each node, cluster.json, INFO raft and the status table/JSON (against fake RESP servers),
// finding a node's process from its data dir's LOCK, and the CLI's status/down/up refusals run
// from source (`bun src/main.ts`).
import { afterAll, describe, expect, test } from "bun:test";
import type { Subprocess, TCPSocketListener } from "bun";
import type { ArgsDef } from "citty";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type ClusterFile,
  layout,
  membersArg,
  nodeArgv,
  parseUpArgs,
  readClusterFile,
  selfArgv,
  writeClusterFile,
} from "../../src/cli/cluster-layout.ts";
import { dataDirOfArgv, isAlive, lockPid, nodePids, portProblem, stopAll } from "../../src/cli/cluster-proc.ts";
import { type Answer, formatStatus, gather, parseMembers, parseRaftInfo, type RaftInfo, statusJson, summarize, type Target } from "../../src/cli/cluster-status.ts";
import serveCmd from "../../src/cli/serve.ts";
import { StartupError } from "../../src/cli/fatal.ts";
import { ConfigError } from "../../src/errors.ts";
import { startFake, type FakeServer } from "../client/_fake.ts";
import { tempDirs } from "../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "..", "..");
const tempDir = tempDirs("kv-cluster-cli-");
const serveDef = serveCmd.args as ArgsDef;

/** Every process this file starts, killed after it whatever happened. */
const procs: Subprocess[] = [];
const fakes: FakeServer[] = [];
afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  for (const f of fakes) f.stop();
});

// ---- the command line of up ----

describe("kv cluster up's command line", () => {
  test("N, its own flags, and serve flags passed through in order", () => {
    const o = parseUpArgs(["3", "--base-port", "6379", "--data-dir=/tmp/c", "--detach", "--fsync", "no", "--log-level=debug", "--timeout", "5"], serveDef);
    expect(o).toEqual({ count: 3, basePort: 6379, dataDir: "/tmp/c", detach: true, timeoutMs: 5000, serveFlags: ["--fsync", "no", "--log-level", "debug"] });
  });

  test("defaults: no N (restart), base port from the file or 7001, ./cluster, foreground, 30 s", () => {
    expect(parseUpArgs([], serveDef)).toEqual({ count: undefined, basePort: undefined, dataDir: "./cluster", detach: false, timeoutMs: 30_000, serveFlags: [] });
    expect(parseUpArgs(["--detach", "5"], serveDef).count).toBe(5);
  });

  test("flags the launcher sets for each node are refused with the reason", () => {
    for (const [flag, why] of [
      ["--id", "node i gets --id i"],
      ["--port", "--base-port"],
      ["--cluster", "names the members"],
      ["--cluster-id", "keeps it in cluster.json"],
      ["--peer-port", "+10000"],
      ["--host", "127.0.0.1"],
    ] as const) {
      expect(() => parseUpArgs(["3", flag, "1"], serveDef)).toThrow(why);
      expect(() => parseUpArgs(["3", flag, "1"], serveDef)).toThrow(ConfigError);
    }
  });

  test("typos, bad values and extra words are refused before any node starts", () => {
    expect(() => parseUpArgs(["3", "--fsycn", "no"], serveDef)).toThrow("unknown option: --fsycn");
    expect(() => parseUpArgs(["3", "--fsync", "sometimes"], serveDef)).toThrow("--fsync: 'sometimes' is not one of");
    expect(() => parseUpArgs(["3", "4"], serveDef)).toThrow("unexpected argument: 4");
    expect(() => parseUpArgs(["0"], serveDef)).toThrow("out of range");
    expect(() => parseUpArgs(["33"], serveDef)).toThrow("out of range");
    expect(() => parseUpArgs(["three"], serveDef)).toThrow("not a whole number");
    expect(() => parseUpArgs(["3", "--base-port"], serveDef)).toThrow("--base-port needs a value");
    expect(() => parseUpArgs(["3", "--base-port", "55535"], serveDef)).toThrow("leaves no room for 3 nodes");
    expect(parseUpArgs(["3", "--base-port", "55533"], serveDef).basePort).toBe(55533);
    expect(() => parseUpArgs(["3", "--fsync"], serveDef)).toThrow("--fsync needs a value");
  });
});

// ---- layout and argv ----

describe("layout", () => {
  test("the binary finds itself compiled and from source", () => {
    expect(selfArgv("/usr/local/bin/kv", "/$bunfs/root/kv", [])).toEqual(["/usr/local/bin/kv"]);
    expect(selfArgv("/usr/bin/bun", "/repo/src/main.ts", ["--smol"])).toEqual(["/usr/bin/bun", "--smol", "/repo/src/main.ts"]);
  });

  test("node i: id i, port base+i-1, peer +10000, DIR/n<i>, DIR/n<i>/kv.log; its argv names every member", () => {
    const nodes = layout("/c", 3, 7001);
    expect(nodes.map((n) => [n.name, n.id, n.addr, n.peer, n.dataDir, n.log])).toEqual([
      ["n1", 1, "127.0.0.1:7001", "127.0.0.1:17001", "/c/n1", "/c/n1/kv.log"],
      ["n2", 2, "127.0.0.1:7002", "127.0.0.1:17002", "/c/n2", "/c/n2/kv.log"],
      ["n3", 3, "127.0.0.1:7003", "127.0.0.1:17003", "/c/n3", "/c/n3/kv.log"],
    ]);
    expect(membersArg(nodes)).toBe("1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003");
    expect(nodeArgv(["/bin/kv"], nodes[1]!, nodes, "kv-abc", ["--fsync", "no"])).toEqual([
      "/bin/kv", "serve", "--id", "2", "--host", "127.0.0.1", "--port", "7002", "--data-dir", "/c/n2",
      "--cluster", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--cluster-id", "kv-abc", "--fsync", "no",
    ]);
    // A peer port other than client+10000 is written out (host:port@peerport).
    const moved = nodes.map((n) => (n.id === 2 ? { ...n, peer: "127.0.0.1:27002" } : n));
    expect(membersArg(moved)).toBe("1=127.0.0.1:7001,2=127.0.0.1:7002@27002,3=127.0.0.1:7003");
  });

  test("cluster.json round-trips; the data dirs follow DIR when it moved; a damaged file is named", () => {
    const dir = tempDir();
    expect(readClusterFile(dir)).toBeUndefined();
    const nodes = layout("/elsewhere", 2, 7001).map((n, i) => ({ ...n, pid: 100 + i, start: ["/bin/kv", "serve", "--id", String(n.id)] }));
    const file: ClusterFile = { clusterId: "kv-0123", basePort: 7001, serveFlags: ["--fsync", "no"], nodes };
    writeClusterFile(dir, file);
    const back = readClusterFile(dir)!;
    expect(back.clusterId).toBe("kv-0123");
    expect(back.nodes.map((n) => [n.pid, n.start, n.dataDir, n.log])).toEqual([
      [100, ["/bin/kv", "serve", "--id", "1"], join(dir, "n1"), join(dir, "n1", "kv.log")],
      [101, ["/bin/kv", "serve", "--id", "2"], join(dir, "n2"), join(dir, "n2", "kv.log")],
    ]);
    const path = join(dir, "cluster.json");
    for (const bad of ["{", "[]", JSON.stringify({ ...file, clusterId: "" }), JSON.stringify({ ...file, nodes: [nodes[1], nodes[0]] }), JSON.stringify({ ...file, nodes: [{ ...nodes[0], name: "n2" }] }), JSON.stringify({ ...file, nodes: [{ ...nodes[0], start: "kv" }] })]) {
      writeFileSync(path, bad);
      let err: unknown;
      try {
        readClusterFile(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StartupError);
      expect((err as StartupError).message).toContain(`${path} is damaged`);
    }
    // After `kv cluster remove 1`: a gap in the ids, the removed id recorded.
    writeClusterFile(dir, { ...file, nodes: [nodes[1]!], removed: [1] });
    expect(readClusterFile(dir)!.nodes.map((n) => n.id)).toEqual([2]);
    expect(readClusterFile(dir)!.removed).toEqual([1]);
  });
});

// ---- INFO raft and the status view ----

function infoText(o: { id: number; role: string; term: number; commit: number; applied: number; leader: number; members?: string; extra?: string }): string {
  return [
    "# Server",
    "redis_version:7.2.0",
    "",
    "# Raft",
    `raft_node_id:${o.id}`,
    "raft_cluster_id:kv-test",
    `raft_role:${o.role}`,
    `raft_leader_id:${o.leader}`,
    `raft_leader_addr:${o.leader === 0 ? "" : "127.0.0.1:7001"}`,
    `raft_term:${o.term}`,
    `raft_commit_index:${o.commit}`,
    `raft_applied_index:${o.applied}`,
    `raft_last_index:${o.commit + 1}`,
    "raft_snapshot_index:0",
    "raft_voters:1,2,3",
    "raft_learners:",
    `raft_members:${o.members ?? "1=127.0.0.1:7001@127.0.0.1:17001,2=127.0.0.1:7002@127.0.0.1:17002,3=127.0.0.1:7003@127.0.0.1:17003"}`,
    ...(o.extra === undefined ? [] : [o.extra]),
    "",
  ].join("\r\n");
}

function info(o: Parameters<typeof infoText>[0]): RaftInfo {
  return parseRaftInfo(infoText(o))!;
}

function target(id: number, extra: Partial<Target> = {}): Target {
  return { id, name: `n${id}`, addr: `127.0.0.1:${7000 + id}`, dataDir: null, pid: null, running: null, ...extra };
}

describe("INFO raft", () => {
  test("fields of the raft section, members with their peer addresses; no section: null", () => {
    const r = info({ id: 2, role: "follower", term: 7, commit: 41, applied: 40, leader: 1, extra: "raft_peer_2:addr=127.0.0.1:17002,match=41,last_contact_ms=3" });
    expect(r).toEqual({
      nodeId: 2,
      clusterId: "kv-test",
      role: "follower",
      leaderId: 1,
      leaderAddr: "127.0.0.1:7001",
      term: 7,
      commit: 41,
      applied: 40,
      lastIndex: 42,
      snapshotIndex: 0,
      voters: [1, 2, 3],
      learners: [],
      members: [
        { id: 1, addr: "127.0.0.1:7001", peer: "127.0.0.1:17001" },
        { id: 2, addr: "127.0.0.1:7002", peer: "127.0.0.1:17002" },
        { id: 3, addr: "127.0.0.1:7003", peer: "127.0.0.1:17003" },
      ],
      peers: new Map([[2, { match: 41, lastContactMs: 3 }]]),
    });
    expect(parseRaftInfo("# Server\r\nredis_version:7.2.0\r\n")).toBeNull();
    expect(parseMembers("1=[::1]:7001@[::1]:17001, junk ,2=h:1@h:2")).toEqual([
      { id: 1, addr: "[::1]:7001", peer: "[::1]:17001" },
      { id: 2, addr: "h:1", peer: "h:2" },
    ]);
  });

  test("lag is the leader's commit index minus each node's applied index; down and silent nodes", () => {
    const answers: Answer[] = [
      { info: info({ id: 1, role: "leader", term: 4, commit: 50, applied: 50, leader: 1 }) },
      { info: info({ id: 2, role: "follower", term: 4, commit: 48, applied: 45, leader: 1 }) },
      { error: "could not connect" },
      { error: "timed out" },
    ];
    const s = summarize([target(1, { running: true, pid: 11 }), target(2, { running: true, pid: 12 }), target(3, { running: false }), target(4, { running: true, pid: 14 })], answers);
    expect(s.leader).toBe(1);
    expect(s.term).toBe(4);
    expect(s.nodes.map((n) => [n.id, n.up, n.role, n.lag])).toEqual([
      [1, true, "leader", 0],
      [2, true, "follower", 5],
      [3, false, null, null],
      [4, false, null, null],
    ]);
    expect(formatStatus(s)).toBe(
      [
        "degraded: 2/3 voters up (down: 3), leader 1, max lag 5 entries (0 ms)",
        "leader: node 1 (term 4)",
        "ID  ADDRESS         ROLE      MEMBER  TERM  COMMIT  APPLIED  SNAPSHOT  LAG  LAG MS  CONTACT MS  STATE      PID",
        "1   127.0.0.1:7001  leader    voter   4     50      50       0         0    0       0           up         11",
        "2   127.0.0.1:7002  follower  voter   4     48      45       0         5    -       -           up         12",
        "3   127.0.0.1:7003  -         voter   -     -       -        -         -    -       -           down       -",
        "4   127.0.0.1:7004  -         -       -     -       -        -         -    -       -           no answer  14",
        "",
      ].join("\n"),
    );
    const j = JSON.parse(statusJson(s));
    expect(j.leader).toBe(1);
    expect(j.nodes.map((n: { state: string; error: string | null }) => [n.state, n.error])).toEqual([
      ["up", null],
      ["up", null],
      ["down", "could not connect"],
      ["no answer", "timed out"],
    ]);
  });

  test("a deposed leader that still says so loses to the leader of the higher term; no leader: no lag", () => {
    const s = summarize(
      [target(1), target(2), target(3)],
      [
        { info: info({ id: 1, role: "leader", term: 3, commit: 90, applied: 90, leader: 1 }) },
        { info: info({ id: 2, role: "leader", term: 5, commit: 70, applied: 70, leader: 2 }) },
        { info: info({ id: 3, role: "follower", term: 5, commit: 70, applied: 60, leader: 2 }) },
      ],
    );
    expect([s.leader, s.term, s.nodes.map((n) => n.lag)]).toEqual([2, 5, [0, 0, 10]]);
    const none = summarize([target(1), target(2)], [{ info: info({ id: 1, role: "candidate", term: 6, commit: 9, applied: 9, leader: 0 }) }, { info: null }]);
    expect(none.leader).toBeNull();
    expect(none.nodes.map((n) => [n.up, n.lag, n.error])).toEqual([
      [true, null, null],
      [true, null, "no INFO raft section (not a cluster node)"],
    ]);
    expect(formatStatus(none).split("\n").slice(0, 2)).toEqual(["down: no quorum: 1/3 voters up, 2 needed (down: 2, 3)", "no leader"]);
  });
});

describe("the health verdict", () => {
  const peers = "raft_peer_2:addr=127.0.0.1:7002,match=50,last_contact_ms=12\r\nraft_peer_3:addr=127.0.0.1:7003,match=50,last_contact_ms=2400";
  const leader = (extra = peers) => ({ info: info({ id: 1, role: "leader", term: 4, commit: 50, applied: 50, leader: 1, extra }) });
  const follower = (id: number, applied = 50) => ({ info: info({ id, role: "follower", term: 4, commit: 50, applied, leader: 1 }) });
  const t3 = [target(1), target(2), target(3)];

  test("healthy: every voter up, lag measured in entries and ms", () => {
    const s = summarize(t3, [leader(), follower(2, 48), follower(3)], new Map([[2, { ms: 40, over: null }]]));
    expect([s.health, s.verdict]).toEqual(["healthy", "healthy: 3/3 voters up, leader 1, max lag 2 entries (40 ms)"]);
    expect(s.nodes.map((n) => [n.voter, n.lag, n.lagMs, n.lastContactMs, n.snapshotIndex])).toEqual([
      [true, 0, 0, 0, 0],
      [true, 2, 40, 12, 0],
      [true, 0, 0, 2400, 0],
    ]);
  });

  test("degraded: one voter down, or a node not caught up within the bound", () => {
    const one = summarize(t3, [leader(), follower(2), { error: "could not connect" }]);
    expect([one.health, one.verdict]).toEqual(["degraded", "degraded: 2/3 voters up (down: 3), leader 1, max lag 0 entries (0 ms)"]);
    const slow = summarize(t3, [leader(), follower(2, 10), follower(3)], new Map([[2, { ms: null, over: 1000 }]]));
    expect([slow.health, slow.verdict]).toEqual(["degraded", "degraded: 3/3 voters up, leader 1, max lag 40 entries (> 1000 ms); behind: 2"]);
    expect(formatStatus(slow).split("\n")[4]).toMatch(/^2 .* 40 +>1000 +12 +up$/);
  });

  test("down: no quorum (two of three voters down), or no leader with a quorum; learners counted apart", () => {
    const nq = summarize(t3, [{ info: info({ id: 1, role: "follower", term: 5, commit: 50, applied: 50, leader: 0 }) }, { error: "x" }, { error: "y" }]);
    expect([nq.health, nq.verdict, nq.leader]).toEqual(["down", "down: no quorum: 1/3 voters up, 2 needed (down: 2, 3)", null]);
    // A deposed leader that still says so, cut off from both others: no quorum either.
    const stale = summarize(t3, [leader(), { error: "x" }, { error: "y" }]);
    expect([stale.health, stale.verdict]).toEqual(["down", "down: no quorum: 1/3 voters up, 2 needed (down: 2, 3)"]);
    const electing = summarize(t3, [follower(1), { info: info({ id: 2, role: "candidate", term: 6, commit: 50, applied: 50, leader: 0 }) }, { error: "x" }]);
    expect(electing.health).toBe("down");
    expect(electing.verdict).toBe("down: no leader: 2/3 voters up (down: 3) (an election is under way, or the voters cannot reach each other)");
    const withLearner = (t: string) => t.replace("raft_voters:1,2,3\r\nraft_learners:", "raft_voters:1,2,3\r\nraft_learners:4");
    const l = parseRaftInfo(withLearner(infoText({ id: 1, role: "leader", term: 4, commit: 50, applied: 50, leader: 1 })))!;
    const s = summarize([...t3, target(4)], [{ info: l }, follower(2), follower(3), { error: "z" }]);
    expect([s.health, s.verdict]).toEqual(["degraded", "degraded: 3/3 voters up, 0/1 learners up (down: 4), leader 1, max lag 0 entries (0 ms)"]);
    expect(s.nodes.map((n) => n.voter)).toEqual([true, true, true, false]);
  });
});

/** A fake node answering INFO with `text`. */
function fakeNode(text: () => string): FakeServer {
  const f = startFake((argv) => {
    if (argv[0]!.toUpperCase() !== "INFO") return "-ERR unknown command\r\n";
    const t = text();
    return `$${Buffer.byteLength(t)}\r\n${t}\r\n`;
  });
  fakes.push(f);
  return f;
}

describe("status over RESP (fake nodes)", () => {
  test("gather asks each node INFO raft with the client library; a closed port is down", async () => {
    const a = fakeNode(() => infoText({ id: 1, role: "leader", term: 2, commit: 10, applied: 10, leader: 1 }));
    // Behind at the first ask, caught up at the next: its time lag is measured by asking again.
    let asked = 0;
    const b = fakeNode(() => infoText({ id: 2, role: "follower", term: 2, commit: 10, applied: asked++ === 0 ? 8 : 10, leader: 1 }));
    const c = fakeNode(() => "");
    c.stop();
    const s = await gather([target(1, { addr: a.addr }), target(2, { addr: b.addr }), target(3, { addr: c.addr })], 1000);
    expect(s.nodes.map((n) => [n.up, n.role, n.lag])).toEqual([
      [true, "leader", 0],
      [true, "follower", 2],
      [false, null, null],
    ]);
    expect(a.log.map((e) => e.argv)).toEqual([["INFO", "raft"]]);
    expect(b.log.map((e) => e.argv)).toEqual([
      ["INFO", "raft"],
      ["INFO", "raft"],
    ]);
    expect(s.nodes[1]!.lagMs).toBeGreaterThanOrEqual(0);
    expect(s.nodes[1]!.lagMsOver).toBeNull();
    expect(s.verdict).toMatch(/^degraded: 2\/3 voters up \(down: 3\), leader 1, max lag 2 entries \(\d+ ms\)$/);
  });
});

// ---- processes ----

/** Starts the fake node on `dataDir` and waits for it to hold the LOCK. */
async function fakeServe(dataDir: string, extra: string[] = []): Promise<Subprocess<"ignore", "pipe", "inherit">> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "_fake-node.ts"), "serve", "--data-dir", dataDir, ...extra], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  procs.push(p);
  const reader = p.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  expect(new TextDecoder().decode(value)).toBe("ready\n");
  return p;
}

function spawnSleep(): Subprocess {
  const p = Bun.spawn(["sleep", "60"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  procs.push(p);
  return p;
}

describe("finding a node's process from its data dir", () => {
  test("the data dir a serve command line names, from its working directory", () => {
    expect(dataDirOfArgv(["/bin/kv", "serve", "--id", "1", "--data-dir", "/c/n1"])).toBe("/c/n1");
    expect(dataDirOfArgv(["bun", "src/main.ts", "serve", "--data-dir=rel/n2"])).toBe("rel/n2");
    expect(dataDirOfArgv(["/bin/kv", "serve"])).toBe("./data");
    expect(dataDirOfArgv(["/bin/kv", "get", "k"])).toBeUndefined();
  });

  test("the LOCK's pid when it serves that dir; never a pid reused by another process", async () => {
    const dir = tempDir();
    const n1 = join(dir, "n1");
    const p = await fakeServe(n1);
    expect(lockPid(n1)).toBe(p.pid);
    expect(nodePids(n1)).toEqual([p.pid]);
    // The recorded pid of a node restarted since (gone) adds nothing; a live one on another dir neither.
    expect(nodePids(n1, 999_999_999)).toEqual([p.pid]);
    const other = join(dir, "n2");
    const q = await fakeServe(other);
    expect(nodePids(n1, q.pid)).toEqual([p.pid]);
    // A LOCK left by a dead node whose pid now belongs to something else: not a kv on this dir.
    const n3 = join(dir, "n3");
    mkdirSync(n3);
    const sleeper = spawnSleep();
    writeFileSync(join(n3, "LOCK"), `${sleeper.pid}\n`);
    expect(nodePids(n3)).toEqual([]);
    expect(nodePids(n3, sleeper.pid)).toEqual([]);
    expect(nodePids(join(dir, "none"))).toEqual([]);
  });

  test("stopAll: SIGTERM, then SIGKILL with a message for one that does not exit", async () => {
    const dir = tempDir();
    const good = await fakeServe(join(dir, "n1"));
    const stuck = await fakeServe(join(dir, "n2"), ["--ignore-term"]);
    const said: string[] = [];
    const res = await stopAll(
      [
        { name: "n1", pid: good.pid },
        { name: "n2", pid: stuck.pid },
      ],
      500,
      (l) => said.push(l),
    );
    expect(res.stopped.map((t) => t.name)).toEqual(["n1"]);
    expect(res.killed.map((t) => t.name)).toEqual(["n2"]);
    expect(res.stuck).toEqual([]);
    expect(said).toEqual([`n2: pid ${stuck.pid} did not exit within 1 s of SIGTERM: sending SIGKILL`]);
    expect(await good.exited).toBe(0);
    await stuck.exited;
    expect(stuck.signalCode).toBe("SIGKILL");
  });

  test("a port another process listens on is named as taken", () => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      expect(portProblem(l.port)).toBe("in use by another process");
    } finally {
      l.stop(true);
    }
    expect(portProblem(l.port)).toBeNull();
  });
});

// ---- the CLI, from source ----

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `bun src/main.ts cluster ...` (bounded: killed after 20 s). */
async function kvCluster(args: string[]): Promise<Run> {
  const p = Bun.spawn([process.execPath, join(ROOT, "src", "main.ts"), "cluster", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  procs.push(p);
  const killer = setTimeout(() => p.kill("SIGKILL"), 20_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(killer);
  return { code, stdout, stderr };
}

describe("kv cluster down and status (from source)", () => {
  test("down finds nodes from their LOCK files (not the recorded pids), leaves other processes alone, and is idempotent", async () => {
    const dir = tempDir();
    const missing = await kvCluster(["down", "--data-dir", join(dir, "nothing")]);
    expect([missing.code, missing.stdout]).toEqual([0, `no cluster in ${join(dir, "nothing")}: nothing to stop\n`]);

    const c = join(dir, "c");
    mkdirSync(c);
    const n1 = await fakeServe(join(c, "n1"));
    const n2 = await fakeServe(join(c, "n2"));
    // cluster.json records pids from an earlier launch: one now someone else's, one gone.
    const sleeper = spawnSleep();
    const nodes = layout(c, 3, 7001).map((n, i) => ({ ...n, pid: [sleeper.pid, 999_999_999, 0][i]!, start: ["/bin/kv", "serve"] }));
    writeClusterFile(c, { clusterId: "kv-x", basePort: 7001, serveFlags: [], nodes });
    const r = await kvCluster(["down", "--data-dir", c]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`stopping n1 (pid ${n1.pid}), n2 (pid ${n2.pid})\n`);
    expect(r.stdout).toContain("stopped 2 node(s)");
    expect(await n1.exited).toBe(0);
    expect(await n2.exited).toBe(0);
    expect(isAlive(sleeper.pid)).toBe(true);

    const again = await kvCluster(["down", "--data-dir", c]);
    expect([again.code, again.stdout]).toEqual([0, `no node of the cluster in ${c} is running: nothing to stop\n`]);
  });

  test("status --data-dir and --addr: every member, from cluster.json or from a node's raft_members", async () => {
    const answer = { 1: { role: "leader", applied: 20 }, 2: { role: "follower", applied: 17 }, 3: { role: "follower", applied: 20 } } as const;
    const servers = ([1, 2, 3] as const).map((id) => ({ id, s: null as FakeServer | null }));
    let members = "";
    for (const x of servers) {
      x.s = fakeNode(() => infoText({ id: x.id, role: answer[x.id].role, term: 3, commit: 20, applied: answer[x.id].applied, leader: 1, members }));
    }
    members = servers.map((x) => `${x.id}=${x.s!.addr}@127.0.0.1:1`).join(",");
    const c = tempDir();
    const nodes = layout(c, 3, 7001).map((n, i) => ({ ...n, addr: servers[i]!.s!.addr, pid: 0, start: ["/bin/kv", "serve"] }));
    writeClusterFile(c, { clusterId: "kv-x", basePort: 7001, serveFlags: [], nodes });

    const r = await kvCluster(["status", "--data-dir", c, "--json"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const j = JSON.parse(r.stdout);
    expect(j.leader).toBe(1);
    expect(j.nodes.map((n: { id: number; up: boolean; role: string; lag: number; state: string }) => [n.id, n.up, n.role, n.lag, n.state])).toEqual([
      [1, true, "leader", 0, "up"],
      [2, true, "follower", 3, "up"],
      [3, true, "follower", 0, "up"],
    ]);

    servers[2]!.s!.stop();
    const byAddr = await kvCluster(["status", "--addr", servers[1]!.s!.addr]);
    expect([byAddr.code, byAddr.stderr]).toEqual([0, ""]);
    const lines = byAddr.stdout.split("\n");
    // Node 2 never gets past applied 17 (the fake's answer): not caught up within --timeout (1000 ms).
    expect(lines[0]).toBe("degraded: 2/3 voters up (down: 3), leader 1, max lag 3 entries (> 1000 ms); behind: 2");
    expect(lines[1]).toBe("leader: node 1 (term 3)");
    expect(lines[2]).toMatch(/^ID +ADDRESS +ROLE +MEMBER +TERM +COMMIT +APPLIED +SNAPSHOT +LAG +LAG MS +CONTACT MS +STATE$/);
    expect(lines[3]).toMatch(new RegExp(`^1 +${servers[0]!.s!.addr} +leader +voter +3 +20 +20 +0 +0 +0 +0 +up$`));
    expect(lines[4]).toMatch(new RegExp(`^2 +${servers[1]!.s!.addr} +follower +voter +3 +20 +17 +0 +3 +>1000 +- +up$`));
    expect(lines[5]).toMatch(new RegExp(`^3 +${servers[2]!.s!.addr} +- +voter +- +- +- +- +- +- +- +down$`));

    const none = await kvCluster(["status", "--data-dir", join(c, "nope")]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`no cluster in ${join(c, "nope")}`);
    const both = await kvCluster(["status", "--data-dir", c, "--addr", "127.0.0.1:1"]);
    expect([both.code, both.stderr.split("\n")[0]]).toEqual([1, "error: give --data-dir or --addr, not both"]);
  });
});

describe("kv cluster up refuses (from source)", () => {
  test("a port taken by another process, before starting anything", async () => {
    // Node 2's client port taken; node 1's ports free (a base port low enough for peer ports +10000).
    let l: TCPSocketListener | undefined;
    for (let tries = 0; l === undefined && tries < 50; tries++) {
      const port = 20_001 + Math.floor(Math.random() * 20_000);
      if (portProblem(port - 1) !== null || portProblem(port - 1 + 10_000) !== null) continue;
      try {
        l = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      } catch {}
    }
    if (l === undefined) throw new Error("no free port found in 50 tries");
    try {
      const dir = join(tempDir(), "c");
      const base = l.port - 1;
      const r = await kvCluster(["up", "2", "--base-port", String(base), "--data-dir", dir, "--detach"]);
      expect(r.code).toBe(1);
      expect(r.stderr.split("\n")[0]).toBe(`error: cannot start n2: port ${l.port} (its client port) is in use by another process`);
      expect(existsSync(join(dir, "cluster.json"))).toBe(false);
      expect(existsSync(join(dir, "n1", "kv.log"))).toBe(false);
    } finally {
      l.stop(true);
    }
  });

  test("another size or base port for the cluster a dir holds", async () => {
    const c = tempDir();
    writeClusterFile(c, { clusterId: "kv-x", basePort: 7001, serveFlags: [], nodes: layout(c, 3, 7001).map((n) => ({ ...n, start: ["/bin/kv"] })) });
    const size = await kvCluster(["up", "5", "--data-dir", c, "--detach"]);
    expect(size.code).toBe(1);
    expect(size.stderr).toContain(`${c} holds a 3-node cluster`);
    const port = await kvCluster(["up", "--base-port", "8001", "--data-dir", c, "--detach"]);
    expect(port.code).toBe(1);
    expect(port.stderr).toContain("has base port 7001");
  });
});
