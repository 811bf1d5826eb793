// kv cluster up/status/down with the compiled ./kv: a 3-node cluster on free loopback ports, a node
// killed -9 and restarted by hand from cluster.json's `start` (down still finds it through its
// LOCK), down twice, and up again on the same dir keeping the data. Also `up` run from source.
import { describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { closeSync, existsSync, openSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { isAlive, lockPid } from "../../src/cli/cluster-proc.ts";
import { createClient } from "../../src/client/index.ts";
import { KV_BIN, ROOT } from "../helpers/server.ts";
import { clusterCliHarness, freeBasePort } from "../helpers/cluster-cli.ts";

/** Every cluster dir used here: whatever runs on it is killed after the file, even when a test failed, then the dir removed. */
const { started, clusterDir, run, kv } = clusterCliHarness("kv-cluster-it-");

interface StatusJson {
  leader: number | null;
  nodes: { id: number; addr: string; up: boolean; role: string | null; state: string; pid: number | null; lag: number | null }[];
}

async function statusJson(dir: string): Promise<StatusJson> {
  const r = await kv("cluster", "status", "--data-dir", dir, "--json");
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout) as StatusJson;
}

/** Polls status until `ok` holds (bounded by 20 s); returns the last status. */
async function waitStatus(dir: string, ok: (s: StatusJson) => boolean): Promise<StatusJson> {
  const deadline = Date.now() + 20_000;
  let s = await statusJson(dir);
  while (!ok(s) && Date.now() < deadline) {
    await Bun.sleep(100);
    s = await statusJson(dir);
  }
  return s;
}

const oneLeaderAllUp = (n: number) => (s: StatusJson) => s.leader !== null && s.nodes.length === n && s.nodes.every((x) => x.up) && s.nodes.filter((x) => x.role === "leader").length === 1;

function allPids(dir: string): number[] {
  return readClusterFile(dir)!.nodes.map((n) => lockPid(n.dataDir) ?? n.pid);
}

describe("kv cluster with the compiled binary", () => {
  test("up 3 --detach, status, kill -9 and a restart by hand, down (twice), up again keeps the data", async () => {
    expect(existsSync(KV_BIN)).toBe(true);
    const dir = clusterDir();
    const base = freeBasePort(3);
    const addrs = [0, 1, 2].map((i) => `127.0.0.1:${base + i}`);

    const up = await kv("cluster", "up", "3", "--base-port", String(base), "--data-dir", dir, "--detach");
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    const file = readClusterFile(dir)!;
    for (const n of file.nodes) started.push(n.pid);
    expect(file.nodes.map((n) => [n.name, n.addr, n.peer])).toEqual([1, 2, 3].map((i) => [`n${i}`, `127.0.0.1:${base + i - 1}`, `127.0.0.1:${base + i - 1 + 10_000}`]));
    expect(file.clusterId).toMatch(/^kv-[0-9a-f]{16}$/);
    // The table: a row per node with its address, role and pid; exactly one leader.
    for (const n of file.nodes) expect(up.stdout).toMatch(new RegExp(`^${n.id} +${n.addr} +(leader|follower) +${n.pid} +${n.dataDir} +started$`, "m"));
    expect(up.stdout.match(/^\d+ +\S+ +leader /gm)?.length).toBe(1);
    for (const n of file.nodes) expect(n.start).toEqual(expect.arrayContaining(["serve", "--cluster", "--cluster-id", file.clusterId, n.dataDir]));
    expect(file.nodes[1]!.start.slice(0, 6)).toEqual([KV_BIN, "serve", "--id", "2", "--host", "127.0.0.1"]);

    const s1 = await waitStatus(dir, oneLeaderAllUp(3));
    expect(s1.nodes.map((n) => [n.id, n.addr, n.up, n.state])).toEqual([1, 2, 3].map((i) => [i, addrs[i - 1]!, true, "up"]));
    expect(s1.nodes.filter((n) => n.role === "leader").map((n) => n.id)).toEqual([s1.leader!]);

    const client = createClient({ addrs, timeoutMs: 10_000 });
    try {
      expect(await client.set("k", "v1")).toBe(true);
    } finally {
      await client.close();
    }

    // kill -9 the leader; restart it by hand from its `start` line.
    const victim = file.nodes.find((n) => n.id === s1.leader)!;
    const victimPid = lockPid(victim.dataDir)!;
    expect(victimPid).toBe(victim.pid);
    process.kill(victimPid, "SIGKILL");
    const s2 = await waitStatus(dir, (s) => s.leader !== null && s.leader !== victim.id);
    expect(s2.nodes.find((n) => n.id === victim.id)!.state).toBe("down");
    expect(s2.leader).not.toBe(victim.id);

    const fd = openSync(victim.log, "a");
    let hand: Subprocess;
    try {
      hand = Bun.spawn(victim.start, { cwd: victim.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true });
    } finally {
      closeSync(fd);
    }
    started.push(hand.pid);
    const s3 = await waitStatus(dir, oneLeaderAllUp(3));
    expect(s3.nodes.every((n) => n.up)).toBe(true);
    expect(lockPid(victim.dataDir)).toBe(hand.pid);
    expect(s3.nodes.find((n) => n.id === victim.id)!.pid).toBe(hand.pid);
    const c2 = createClient({ addrs: [victim.addr], timeoutMs: 10_000 });
    try {
      // Through the restarted node (forwarded to the leader if it follows).
      expect(await c2.set("k", "v2")).toBe(true);
      expect(await c2.get("k")).toBe("v2");
    } finally {
      await c2.close();
    }

    // up on a running cluster: everything already running, left alone.
    const again = await kv("cluster", "up", "3", "--data-dir", dir, "--detach");
    expect([again.code, again.stderr]).toEqual([0, ""]);
    expect(again.stdout.match(/already running$/gm)?.length).toBe(3);
    expect(lockPid(victim.dataDir)).toBe(hand.pid);

    // down stops all three, the hand-started one found through its LOCK.
    const pids = allPids(dir);
    expect(pids).toContain(hand.pid);
    const down = await kv("cluster", "down", "--data-dir", dir);
    expect([down.code, down.stderr]).toEqual([0, ""]);
    expect(down.stdout).toContain(`${victim.name} (pid ${hand.pid})`);
    expect(down.stdout).toContain("stopped 3 node(s)");
    expect(await hand.exited).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    const down2 = await kv("cluster", "down", "--data-dir", dir);
    expect([down2.code, down2.stdout, down2.stderr]).toEqual([0, `no node of the cluster in ${dir} is running: nothing to stop\n`, ""]);
    const st = await kv("cluster", "status", "--data-dir", dir, "--json");
    expect(st.code).toBe(3);
    expect((JSON.parse(st.stdout) as StatusJson).nodes.map((n) => n.state)).toEqual(["down", "down", "down"]);

    // up again on the same dir: the same cluster, its data, its cluster id.
    const up2 = await kv("cluster", "up", "3", "--data-dir", dir, "--detach");
    expect([up2.code, up2.stderr]).toEqual([0, ""]);
    const file2 = readClusterFile(dir)!;
    for (const n of file2.nodes) started.push(n.pid);
    expect(file2.clusterId).toBe(file.clusterId);
    expect(up2.stdout.match(/started$/gm)?.length).toBe(3);
    for (const addr of addrs) {
      const c = createClient({ addrs: [addr], timeoutMs: 10_000 });
      try {
        expect(await c.get("k")).toBe("v2");
      } finally {
        await c.close();
      }
    }
    const down3 = await kv("cluster", "down", "--data-dir", dir);
    expect([down3.code, down3.stderr]).toEqual([0, ""]);
    for (const n of file2.nodes) expect(isAlive(n.pid)).toBe(false);
  });

  test("up refuses a port held by a running cluster's node for a new cluster", async () => {
    const dir = clusterDir();
    const base = freeBasePort(1);
    const up = await kv("cluster", "up", "1", "--base-port", String(base), "--data-dir", dir, "--detach");
    expect([up.code, up.stderr]).toEqual([0, ""]);
    for (const n of readClusterFile(dir)!.nodes) started.push(n.pid);
    try {
      const other = clusterDir();
      const r = await kv("cluster", "up", "1", "--base-port", String(base), "--data-dir", other, "--detach");
      expect(r.code).toBe(1);
      expect(r.stderr.split("\n")[0]).toBe(`error: cannot start n1: port ${base} (its client port) is in use by another process`);
    } finally {
      const down = await kv("cluster", "down", "--data-dir", dir);
      expect(down.code).toBe(0);
    }
  });
});

describe("kv cluster up in the foreground", () => {
  test("a status view; a node killed is shown down and not restarted; SIGINT stops every node and exits 0", async () => {
    const dir = clusterDir();
    const base = freeBasePort(3);
    const p = Bun.spawn([KV_BIN, "cluster", "up", "3", "--base-port", String(base), "--data-dir", dir], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    started.push(p.pid);
    const killer = setTimeout(() => p.kill("SIGKILL"), 60_000);
    let text = "";
    const pump = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of p.stdout) text += dec.decode(chunk, { stream: true });
    })();
    const stderr = new Response(p.stderr).text();
    const waitFor = async (re: RegExp) => {
      const deadline = Date.now() + 20_000;
      while (!re.test(text) && Date.now() < deadline && p.exitCode === null) await Bun.sleep(20);
      expect(text).toMatch(re);
    };
    try {
      // The up table, then the view (printed when it changes, output not being a terminal).
      await waitFor(/started\n(.|\n)*healthy: 3\/3 voters up, leader \d, max lag \d+ entries \(\d+ ms\)\nleader: node \d \(term \d+\)\nID +ADDRESS/);
      const file = readClusterFile(dir)!;
      for (const n of file.nodes) started.push(n.pid);
      const n3 = file.nodes[2]!;
      process.kill(n3.pid, "SIGKILL");
      await waitFor(new RegExp(`^3 +${n3.addr} +- +voter +- +- +- +- +- +- +\\d+ +down +-$`, "m"));
      expect(text).toMatch(/degraded: 2\/3 voters up \(down: 3\), leader \d/);
      await Bun.sleep(1_500);
      expect(lockPid(n3.dataDir)).toBe(n3.pid); // its stale LOCK: nothing restarted it
      expect(isAlive(n3.pid)).toBe(false);
      p.kill("SIGINT");
      const code = await p.exited;
      await pump;
      expect(await stderr).toBe("");
      expect(code).toBe(0);
      expect(text).toContain("SIGINT: stopping 2 node(s)");
      expect(text).toContain("stopped 2 node(s)");
      for (const n of file.nodes) expect(isAlive(n.pid)).toBe(false);
    } finally {
      clearTimeout(killer);
    }
  });
});

describe("kv cluster from source (bun src/main.ts)", () => {
  test("up 1 --detach runs the nodes as `bun src/main.ts serve`, and down stops them", async () => {
    const dir = clusterDir();
    const base = freeBasePort(1);
    const up = await run([process.execPath, join(ROOT, "src", "main.ts"), "cluster", "up", "1", "--base-port", String(base), "--data-dir", dir, "--detach"]);
    expect([up.code, up.stderr]).toEqual([0, ""]);
    const n1 = readClusterFile(dir)!.nodes[0]!;
    started.push(n1.pid);
    expect(n1.start.slice(0, 3)).toEqual([process.execPath, join(ROOT, "src", "main.ts"), "serve"]);
    const s = await waitStatus(dir, oneLeaderAllUp(1));
    expect(s.leader).toBe(1);
    const down = await kv("cluster", "down", "--data-dir", dir);
    expect([down.code, down.stderr]).toEqual([0, ""]);
    expect(isAlive(n1.pid)).toBe(false);
  });
});
