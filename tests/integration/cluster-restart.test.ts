// `kv cluster restart` with the compiled ./kv under load: a 3-node cluster from `kv cluster up 3
// --detach`, clients of src/client writing (SET of increasing values to a few keys, INCR of a
// counter) and reading throughout the rolling restart. Asserted: no error of any kind reached a
// client (an UNCERTAIN or a connection lost after a write was sent counts: the client library
// surfaces those and never retries them), no acknowledged write lost (each key holds its last
// acknowledged value on every node; the counter equals the acknowledged INCRs), reads never went
// back. Then `kv cluster status`'s verdict: healthy, one node down (degraded), two down (no quorum);
// a restart refused while nodes are down; a node that does not come back within --timeout.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { readClusterFile, writeClusterFile } from "../../src/cli/cluster-layout.ts";
import { isAlive } from "../../src/cli/cluster-proc.ts";
import { type Client, createClient, OutcomeUnknownError } from "../../src/client/index.ts";
import { KV_BIN } from "../helpers/server.ts";
import { clusterCliHarness, upDetached } from "../helpers/cluster-cli.ts";

const harness = clusterCliHarness("kv-restart-it-");
const { started, kv } = harness;

/** What the clients saw. */
interface Tally {
  /** Per key, the last acknowledged value (SETs of one key are sequential). */
  lastSet: Map<string, number>;
  incrs: number;
  reads: number;
  /** Every error, by kind: the test requires none. */
  uncertain: string[];
  errors: string[];
  /** A read that returned an older value than one acknowledged before it was sent. */
  wentBack: string[];
}

const KEYS = ["rk:a", "rk:b", "rk:c"];
const COUNTER = "rk:counter";
/** Bounds of each worker loop: count and time. */
const OPS_MAX = 200_000;
/** KV_RESTART_ROUNDS=N: N rolling restarts in a row under the same load (a longer run; default 1). */
const ROUNDS = Math.max(1, Number(process.env.KV_RESTART_ROUNDS ?? "1") || 1);
const RUN_MS_MAX = 35_000 + (ROUNDS - 1) * 15_000;

function record(t: Tally, what: string, e: unknown): void {
  if (e instanceof OutcomeUnknownError) t.uncertain.push(`${what}: ${e.message}`);
  else t.errors.push(`${what}: ${(e as Error).message}`);
}

/** The workers: one SET writer per key, one INCR writer, one reader per key; each sequential, until stopped. */
function load(addrs: string[]) {
  const t: Tally = { lastSet: new Map(), incrs: 0, reads: 0, uncertain: [], errors: [], wentBack: [] };
  const clients: Client[] = [];
  // Each client's seeds rotated: some are connected to each node when it restarts.
  const client = () => {
    const k = clients.length % addrs.length;
    const c = createClient({ addrs: [...addrs.slice(k), ...addrs.slice(0, k)], timeoutMs: 15_000 });
    clients.push(c);
    return c;
  };
  let stop = false;
  const deadline = Date.now() + RUN_MS_MAX;
  const going = (i: number) => !stop && i < OPS_MAX && Date.now() < deadline;
  const workers: Promise<void>[] = [];
  for (const key of KEYS) {
    const c = client();
    workers.push(
      (async () => {
        for (let i = 1; going(i); i++) {
          try {
            await c.set(key, String(i));
            t.lastSet.set(key, i);
          } catch (e) {
            record(t, `SET ${key} ${i}`, e);
            return;
          }
        }
      })(),
    );
    const r = client();
    workers.push(
      (async () => {
        for (let i = 0; going(i); i++) {
          const floor = t.lastSet.get(key) ?? 0;
          try {
            const v = await r.get(key);
            t.reads++;
            const got = v === null ? 0 : Number(v);
            if (got < floor) t.wentBack.push(`GET ${key}: ${got} after ${floor} was acknowledged`);
          } catch (e) {
            record(t, `GET ${key}`, e);
            return;
          }
        }
      })(),
    );
  }
  const ic = client();
  workers.push(
    (async () => {
      for (let i = 0; going(i); i++) {
        try {
          const n = await ic.incr(COUNTER);
          t.incrs++;
          if (n !== t.incrs) t.errors.push(`INCR ${COUNTER} answered ${n} as acknowledged INCR #${t.incrs}`);
        } catch (e) {
          record(t, `INCR ${COUNTER}`, e);
          return;
        }
      }
    })(),
  );
  return {
    t,
    async stop(): Promise<void> {
      stop = true;
      await Promise.all(workers);
      for (const c of clients) c.destroy();
    },
  };
}

interface StatusJson {
  verdict: string;
  health: string;
  leader: number | null;
  nodes: { id: number; up: boolean; role: string | null; voter: boolean | null; lag: number | null; lagMs: number | null }[];
}

async function status(dir: string): Promise<{ code: number; s: StatusJson }> {
  const r = await kv("cluster", "status", "--data-dir", dir, "--json");
  expect(r.stderr).toBe("");
  return { code: r.code, s: JSON.parse(r.stdout) as StatusJson };
}

/** Polls status until `ok` holds (bounded by 15 s); returns the last. */
async function waitStatus(dir: string, ok: (s: StatusJson) => boolean): Promise<StatusJson> {
  const deadline = Date.now() + 15_000;
  let { s } = await status(dir);
  while (!ok(s) && Date.now() < deadline) {
    await Bun.sleep(100);
    s = (await status(dir)).s;
  }
  return s;
}

describe("kv cluster restart with the compiled binary", () => {
  test("a rolling restart under writes and reads: no error, no lost write; then status: healthy, degraded, no quorum", async () => {
    expect(existsSync(KV_BIN)).toBe(true);
    const { dir, addrs } = await upDetached(harness, 3);
    const before = readClusterFile(dir)!;
    const healthy = await waitStatus(dir, (s) => s.health === "healthy");
    expect(healthy.verdict).toMatch(/^healthy: 3\/3 voters up, leader \d, max lag \d+ entries/);
    let leaderBefore = healthy.leader!;

    const w = load(addrs);
    const warm = Date.now() + 10_000;
    while (w.t.incrs < 100 && Date.now() < warm) await Bun.sleep(20);
    const incrsBefore = w.t.incrs;

    let prev = before;
    let after = before;
    for (let round = 0; round < ROUNDS; round++) {
      const r = await kv("cluster", "restart", "--data-dir", dir, "--timeout", "20");
      after = readClusterFile(dir)!;
      for (const n of after.nodes) started.push(n.pid);
      if (process.env.KV_TEST_VERBOSE) console.log(r.stdout, JSON.stringify({ incrs: w.t.incrs, reads: w.t.reads, uncertain: w.t.uncertain.length, errors: w.t.errors.length }));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      // The leader went last, after handing leadership away; every node came back with a new process.
      const lines = r.stdout.split("\n");
      const backOrder = lines.flatMap((l) => /^n(\d): back \(pid \d+\)/.exec(l)?.[1] ?? []).map(Number);
      expect(backOrder.length).toBe(3);
      expect(backOrder[2]).toBe(leaderBefore);
      expect(r.stdout).toMatch(new RegExp(`^n${leaderBefore}: leader; handed leadership to node \\d`, "m"));
      for (const n of after.nodes) {
        const old = prev.nodes.find((x) => x.id === n.id)!;
        expect(n.pid).not.toBe(old.pid);
        expect(isAlive(old.pid)).toBe(false);
        expect(isAlive(n.pid)).toBe(true);
      }
      prev = after;
      leaderBefore = Number(/; leader (\d+) \(term/.exec(r.stdout)?.[1]);
    }

    // Writes went on after the restart, then stop.
    const incrsAfterRestart = w.t.incrs;
    const more = Date.now() + 10_000;
    while (w.t.incrs < incrsAfterRestart + 50 && Date.now() < more) await Bun.sleep(20);
    await w.stop();
    expect(w.t.uncertain).toEqual([]);
    expect(w.t.errors).toEqual([]);
    expect(w.t.wentBack).toEqual([]);
    expect(w.t.incrs).toBeGreaterThan(incrsBefore);
    expect(w.t.incrs).toBeGreaterThan(incrsAfterRestart);
    expect(w.t.reads).toBeGreaterThan(0);

    // No lost write, on every node (reads are linearizable on each).
    for (const addr of addrs) {
      const c = createClient({ addrs: addr, timeoutMs: 10_000 });
      try {
        for (const key of KEYS) expect([key, await c.get(key)]).toEqual([key, String(w.t.lastSet.get(key))]);
        expect(await c.get(COUNTER)).toBe(String(w.t.incrs));
      } finally {
        c.destroy();
      }
    }

    // The verdict: healthy; one voter down: degraded; two down: no quorum (exit code 2).
    const h = await waitStatus(dir, (s) => s.health === "healthy" && s.nodes.every((n) => n.lag === 0));
    expect(h.verdict).toBe(`healthy: 3/3 voters up, leader ${h.leader}, max lag 0 entries (0 ms)`);
    expect(h.nodes.map((n) => [n.up, n.voter, n.lagMs])).toEqual([
      [true, true, 0],
      [true, true, 0],
      [true, true, 0],
    ]);
    const followers = after.nodes.filter((n) => n.id !== h.leader);
    process.kill(followers[0]!.pid, "SIGKILL");
    const d = await waitStatus(dir, (s) => s.health === "degraded");
    expect(d.verdict).toBe(`degraded: 2/3 voters up (down: ${followers[0]!.id}), leader ${h.leader}, max lag 0 entries (0 ms)`);
    process.kill(followers[1]!.pid, "SIGKILL");
    const down = await waitStatus(dir, (s) => s.health === "down");
    expect(down.verdict).toBe(`down: no quorum: 1/3 voters up, 2 needed (down: ${followers.map((n) => n.id).join(", ")})`);
    expect((await status(dir)).code).toBe(2);

    // A restart of a degraded cluster is refused before anything is stopped.
    const refused = await kv("cluster", "restart", "--data-dir", dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`not every node is up: ${followers.map((n) => `${n.name} (not running)`).join(", ")}`);
    expect(isAlive(after.nodes.find((n) => n.id === h.leader)!.pid)).toBe(true);

    // A node that does not come back within --timeout: a non-zero exit naming it; the next are left alone.
    const again = await kv("cluster", "up", "--data-dir", dir, "--detach");
    expect(again.code).toBe(0);
    for (const n of readClusterFile(dir)!.nodes) started.push(n.pid);
    await waitStatus(dir, (s) => s.health === "healthy");
    const file = readClusterFile(dir)!;
    const leaderNow = (await status(dir)).s.leader;
    const first = file.nodes.find((n) => n.id !== leaderNow)!;
    first.start = ["sleep", "30"];
    writeClusterFile(dir, file);
    const stuck = await kv("cluster", "restart", "--data-dir", dir, "--timeout", "2");
    for (const n of readClusterFile(dir)!.nodes) started.push(n.pid);
    expect(stuck.code).toBe(1);
    expect(stuck.stderr).toContain(`${first.name} did not come back within 2 s of its restart: it does not answer`);
    expect(stuck.stdout).not.toContain(": back (pid");
    const stop = await kv("cluster", "down", "--data-dir", dir);
    expect(stop.code).toBe(0);
  }, 60_000 + (ROUNDS - 1) * 15_000);
});
