// InstallSnapshot between real processes: a node killed while ~20 MB is written comes back behind the
// leader's compacted log, catches up from the leader's snapshot file streamed in chunks (its log says
// so), holds every key, and the leader kept acknowledging a writer's writes during the transfer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";

const KEYS = Number(process.env.SNAP_KEYS ?? 20_000);
const VALUE = "v".repeat(1000);
const key = (i: number) => `key:${String(i).padStart(6, "0")}`;
const value = (i: number) => `${i}:${VALUE}`.slice(0, 1000);

async function callUntil(port: number, argv: string[], timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const c = await RawResp.connect(port);
    try {
      last = (await c.call([argv], 10_000))[0]!;
    } finally {
      c.close();
    }
    if (!/^-(CLUSTERDOWN|TRYAGAIN)/.test(last)) return last;
    await Bun.sleep(50);
  }
  throw new Error(`still refused after ${timeoutMs} ms: ${last}`);
}

function info(text: string, field: string): number {
  const m = new RegExp(`^${field}:(\\d+)`, "m").exec(text);
  if (m === null) throw new Error(`no ${field} in INFO`);
  return Number(m[1]);
}

describe("a node behind the compacted log", () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await startCluster(3, ["--snapshot-log-bytes", "64kb", "--wal-segment-bytes", "16kb"]);
  });
  afterAll(async () => {
    await c?.stopAll();
  });

  test(`catches up from the leader's snapshot streamed in chunks (${KEYS} keys of 1 KB) while a writer keeps writing`, async () => {
    const lead = await c.leader();
    expect(await callUntil(c.nodes[lead - 1]!.port, ["SET", "hello", "1"])).toBe("+OK\r\n");
    const behind = c.nodes.find((n) => n.id !== lead)!;
    await c.stop(behind.id, "SIGKILL");

    // ~20 MB through the leader while the node is down: the others snapshot and compact many times.
    const leader = await RawResp.connect(c.nodes[lead - 1]!.port);
    try {
      for (let i = 0; i < KEYS; i += 500) {
        const batch: string[][] = [];
        for (let j = i; j < Math.min(KEYS, i + 500); j++) batch.push(["SET", key(j), value(j)]);
        expect(new Set(await leader.call(batch, 30_000))).toEqual(new Set(["+OK\r\n"]));
      }
    } finally {
      leader.close();
    }

    // A writer on the leader, one write at a time, throughout the restart and the transfer.
    const phaseOf = (): "before" | "during" | "after" => {
      const out = behind.proc?.output() ?? "";
      if (/installed the leader's snapshot/.test(out)) return "after";
      return /receiving the snapshot at index/.test(out) ? "during" : "before";
    };
    const acked: Record<"before" | "during" | "after", number[]> = { before: [], during: [], after: [] };
    const errors: string[] = [];
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      const w = await RawResp.connect(c.nodes[lead - 1]!.port);
      try {
        const deadline = Date.now() + 120_000;
        for (let i = 0; i < 1_000_000 && !stop && Date.now() < deadline; i++) {
          const t0 = performance.now();
          const r = (await w.call([["SET", `w:${i % 1000}`, String(i)]], 10_000))[0]!;
          const ms = performance.now() - t0;
          if (r !== "+OK\r\n") errors.push(r);
          else {
            acked[phaseOf()].push(ms);
            writes = i + 1;
          }
        }
      } finally {
        w.close();
      }
    })();
    await Bun.sleep(300);

    const t0 = Date.now();
    await c.start(behind.id);
    // Caught up: its applied index reaches what the leader had committed once it was back.
    const target = info(await callUntil(c.nodes[lead - 1]!.port, ["INFO", "raft"]), "raft_commit_index");
    const deadline = Date.now() + 60_000;
    let applied = 0;
    while (Date.now() < deadline) {
      applied = info(await callUntil(behind.port, ["INFO", "raft"]), "raft_applied_index");
      if (applied >= target) break;
      await Bun.sleep(50);
    }
    const catchUpMs = Date.now() - t0;
    await Bun.sleep(200);
    stop = true;
    await writer;

    if (process.env.DEBUG_SNAP) {
      console.log(c.nodes[lead - 1]!.proc!.output().split("\n").filter((l) => /snapshot|peer/.test(l)).slice(-30).join("\n"));
      console.log("-----");
      console.log(behind.proc!.output());
    }
    expect(applied).toBeGreaterThanOrEqual(target);
    // Its log says it took the leader's snapshot streamed from the leader, and the leader's that it was installed.
    const out = behind.proc!.output();
    expect(out).toMatch(new RegExp(`receiving the snapshot at index \\d+ \\(\\d+ bytes\\) from peer ${lead}`));
    expect(out).toMatch(new RegExp(`received the snapshot at index \\d+ \\(\\d+ bytes\\) from peer ${lead}: durable`));
    expect(out).toMatch(/installed the leader's snapshot at index \d+ \(\d+ keys\)/);
    const leaderOut = c.nodes[lead - 1]!.proc!.output();
    expect(leaderOut).toMatch(new RegExp(`peer ${behind.id} installed the snapshot at index \\d+ \\(\\d+ bytes in \\d+ ms\\)`));
    const sentBytes = Number(/sending the snapshot at index \d+ \((\d+) bytes\)/.exec(leaderOut)![1]);
    expect(sentBytes).toBeGreaterThan(KEYS * 1000);

    // The writer saw no error, and the leader acknowledged its writes while the snapshot was streamed.
    expect(errors).toEqual([]);
    expect(acked.during.length).toBeGreaterThan(0);
    expect(acked.after.length).toBeGreaterThan(0);

    // Every key is on the node that was behind (linearizable reads there), and its keyspace equals the leader's.
    const back = await RawResp.connect(behind.port);
    try {
      for (let i = 0; i < KEYS; i += 1000) {
        const cmds: string[][] = [];
        for (let j = i; j < Math.min(KEYS, i + 1000); j++) cmds.push(["GET", key(j)]);
        const got = await back.call(cmds, 30_000);
        for (let j = i; j < Math.min(KEYS, i + 1000); j++) expect(got[j - i]).toBe(`$1000\r\n${value(j)}\r\n`);
      }
      const [dbsize] = await back.call([["DBSIZE"]]);
      expect(dbsize).toBe((await callUntil(c.nodes[lead - 1]!.port, ["DBSIZE"])));
      expect(dbsize).toBe(`:${KEYS + 1 + Math.min(1000, writes)}\r\n`);
    } finally {
      back.close();
    }
    const pct = (xs: number[], p: number) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!);
    const fmt = (xs: number[]) => `${xs.length} writes, p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
    console.log(`caught up ${KEYS} keys (${sentBytes} bytes of snapshot) in ${catchUpMs} ms; leader writes before: ${fmt(acked.before)}; during the transfer: ${fmt(acked.during)}; after: ${fmt(acked.after)}`);
  }, 180_000);

  test("a transfer cut off by the follower's death leaves only a temp file, deleted at restart; the next transfer starts over", async () => {
    const lead = await c.leader();
    const behind = c.nodes.find((n) => n.id !== lead)!;
    await c.stop(behind.id, "SIGKILL");
    // Enough writes for the leader to snapshot twice more: the node is behind its compacted log again.
    const w = await RawResp.connect(c.nodes[lead - 1]!.port);
    try {
      for (let i = 0; i < 300; i += 50) {
        const batch: string[][] = [];
        for (let j = i; j < i + 50; j++) batch.push(["SET", `cut:${j}`, VALUE]);
        expect(new Set(await w.call(batch, 30_000))).toEqual(new Set(["+OK\r\n"]));
      }
    } finally {
      w.close();
    }
    const leaderOut = () => c.nodes[lead - 1]!.proc!.output();
    const sendsBefore = (leaderOut().match(/sending the snapshot at index/g) ?? []).length;
    const proc = await c.start(behind.id);
    // Frozen as soon as the transfer begins, then killed: the leader's connection to it is cut mid-transfer.
    const deadline = Date.now() + 30_000;
    while (!/receiving the snapshot at index/.test(proc.output()) && Date.now() < deadline) await Bun.sleep(1);
    proc.proc.kill("SIGSTOP");
    const m = /receiving the snapshot at index (\d+) \((\d+) bytes\)/.exec(proc.output());
    expect(m).not.toBeNull();
    const index = Number(m![1]);
    const snapDir = join(behind.dataDir, "snap");
    const name = `${String(index).padStart(20, "0")}.snap`;
    expect(readdirSync(snapDir)).not.toContain(name);
    expect(readdirSync(snapDir).some((f) => f.startsWith(`${name}.`) && f.endsWith(".tmp"))).toBe(true);
    await c.stop(behind.id, "SIGKILL");
    expect(readdirSync(snapDir)).not.toContain(name);
    const cut = new RegExp(`snapshot transfer of index ${index} to peer ${behind.id} ended after \\d+ of ${m![2]} bytes read \\(\\d+ ms\\): connection lost`);
    const until = Date.now() + 15_000;
    while (!cut.test(leaderOut()) && Date.now() < until) await Bun.sleep(20);
    expect(leaderOut()).toMatch(cut);

    // Restarted: the temp file is gone, and a new transfer from the start brings it up to date.
    await c.start(behind.id);
    expect(await callUntil(behind.port, ["GET", "cut:299"], 30_000)).toBe(`$1000\r\n${VALUE}\r\n`);
    expect(await callUntil(behind.port, ["GET", key(KEYS - 1)])).toBe(`$1000\r\n${value(KEYS - 1)}\r\n`);
    expect(behind.proc!.output()).toMatch(/received the snapshot at index \d+ \(\d+ bytes\) from peer \d+: durable/);
    expect((leaderOut().match(/sending the snapshot at index/g) ?? []).length).toBeGreaterThanOrEqual(sendsBefore + 2);
    // (Its own snapshot may be being written: NAME.snap.tmp. A transfer's temp file is NAME.snap.<transfer>.tmp.)
    expect(readdirSync(snapDir).filter((f) => /\.snap\.\d+\.tmp$/.test(f))).toEqual([]);
  }, 120_000);
});
