// Read modes with the compiled ./kv (docs/cluster.md, "Read modes"): READONLY on a follower answers
// from its own state while it can show it is within --max-staleness of its leader, and -STALE once it
// cannot (leader paused, or the follower cut off: then never a value older than the bound allows);
// READWRITE and `KV.READ LINEARIZABLE` go back to read-index reads; `KV.READ STALE` is the
// per-request form; KV.LASTINDEX and KV.WAITINDEX give read-your-writes on any node.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ProcCluster, parseInfo } from "../helpers/proc-cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { startKv } from "../helpers/server.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-reads-");
afterAll(() => ProcCluster.stopAll());

const MAX_STALENESS_MS = 1000;
const HEARTBEAT_MS = 50;
/** Allowance for what the bound does not cover: the test's polling, loopback and event-loop delays. */
const SLACK_MS = 200;

/** Read-index requests the leader has answered (each linearizable read on a follower sends one per batch). */
async function readIndexCalls(port: number): Promise<number> {
  const c = await RawResp.connect(port);
  try {
    const [r] = await c.call([["INFO", "commandstats"]], 2000);
    return Number(/cmdstat_kv\.readindex:calls=(\d+)/.exec(r!)?.[1] ?? 0);
  } finally {
    c.close();
  }
}

/** The next `n` replies on `c` (sent earlier with send()), bounded by timeoutMs. */
async function collect(c: RawResp, n: number, timeoutMs: number): Promise<string[]> {
  const got: string[] = [];
  const deadline = performance.now() + timeoutMs;
  while (got.length < n && performance.now() < deadline) {
    got.push(...c.received());
    if (got.length < n) await Bun.sleep(10);
  }
  return got;
}

async function one(c: RawResp, cmd: string[], timeoutMs = 5000): Promise<string> {
  const [r] = await c.call([cmd], timeoutMs);
  return r!;
}

describe("read modes on a 3-node cluster", () => {
  let cluster: ProcCluster;
  let leader: number;
  let f1: number;
  let f2: number;

  beforeAll(async () => {
    cluster = await ProcCluster.start({ dir: tempDir(), heartbeatMs: HEARTBEAT_MS, electionMs: 300, extraArgs: ["--max-staleness", String(MAX_STALENESS_MS)] });
    leader = await cluster.waitLeader();
    [f1, f2] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
  }, 30_000);

  afterAll(() => cluster?.stop());

  test("READONLY on a healthy follower reads locally (no read index), READWRITE and KV.READ LINEARIZABLE ask one, KV.READ STALE does not", async () => {
    const w = await RawResp.connect(cluster.node(leader).port);
    const r = await RawResp.connect(cluster.node(f1).port);
    try {
      expect(await one(w, ["SET", "ro:k", "v1"])).toBe("+OK\r\n");
      expect(await one(r, ["CLIENT", "INFO"])).toContain(" flags=N ");
      expect(await one(r, ["READONLY"])).toBe("+OK\r\n");
      expect(await one(r, ["CLIENT", "INFO"])).toContain(" flags=r ");
      // Served from the follower's own state: the value, once applied there (bounded wait), never an error.
      const deadline = performance.now() + 3000;
      let got = "";
      while (performance.now() < deadline) {
        got = await one(r, ["GET", "ro:k"]);
        expect(["$2\r\nv1\r\n", "$-1\r\n"]).toContain(got);
        if (got === "$2\r\nv1\r\n") break;
        await Bun.sleep(5);
      }
      expect(got).toBe("$2\r\nv1\r\n");

      const before = await readIndexCalls(cluster.node(leader).port);
      for (let i = 0; i < 20; i++) expect(await one(r, ["GET", "ro:k"])).toBe("$2\r\nv1\r\n");
      expect(await one(r, ["KV.READ", "LINEARIZABLE", "GET", "ro:k"])).toBe("$2\r\nv1\r\n");
      const afterLocal = await readIndexCalls(cluster.node(leader).port);
      expect(afterLocal - before).toBe(1); // only the KV.READ LINEARIZABLE

      expect(await one(r, ["READWRITE"])).toBe("+OK\r\n");
      expect(await one(r, ["CLIENT", "INFO"])).toContain(" flags=N ");
      for (let i = 0; i < 5; i++) expect(await one(r, ["GET", "ro:k"])).toBe("$2\r\nv1\r\n");
      const afterBarrier = await readIndexCalls(cluster.node(leader).port);
      expect(afterBarrier - afterLocal).toBe(5); // one read index per (sequential) read
      for (let i = 0; i < 5; i++) expect(await one(r, ["KV.READ", "STALE", "GET", "ro:k"])).toBe("$2\r\nv1\r\n");
      expect(await readIndexCalls(cluster.node(leader).port)).toBe(afterBarrier);
    } finally {
      w.close();
      r.close();
    }
  });

  test("KV.READ and KV.WAITINDEX refuse malformed requests", async () => {
    const c = await RawResp.connect(cluster.node(f1).port);
    try {
      expect(await one(c, ["KV.READ", "SOMETIMES", "GET", "k"])).toBe("-ERR KV.READ mode 'SOMETIMES' is not STALE or LINEARIZABLE\r\n");
      expect(await one(c, ["KV.READ", "STALE", "SET", "k", "v"])).toBe("-ERR KV.READ takes a command that reads the keyspace; 'set' is not one\r\n");
      expect(await one(c, ["KV.READ", "STALE", "NOPE"])).toBe("-ERR KV.READ: unknown command 'NOPE'\r\n");
      expect(await one(c, ["KV.READ", "STALE", "GET"])).toBe("-ERR wrong number of arguments for 'get' command\r\n");
      expect(await one(c, ["KV.WAITINDEX", "-1"])).toBe("-ERR KV.WAITINDEX index '-1' is not a non-negative integer\r\n");
      expect(await one(c, ["KV.WAITINDEX", "1", "600000"])).toBe("-ERR KV.WAITINDEX timeout '600000' is not an integer in 0..60000 (ms)\r\n");
      expect(await one(c, ["KV.WAITINDEX", "1", "2", "3"])).toBe("-ERR syntax error: KV.WAITINDEX <index> [timeout-ms]\r\n");
      expect(await one(c, ["KV.LASTINDEX"])).toBe(":0\r\n"); // no write on this connection yet
    } finally {
      c.close();
    }
  });

  test("read your writes: the index of a write on one node, waited for on another; the wait waits while the index is ahead", async () => {
    const a = await RawResp.connect(cluster.node(f1).port); // a forwarded write
    const l = await RawResp.connect(cluster.node(leader).port);
    const b = await RawResp.connect(cluster.node(f2).port);
    try {
      expect(await a.call([["SET", "ryw:a", "1"], ["KV.LASTINDEX"]])).toEqual(["+OK\r\n", expect.stringMatching(/^:\d+\r\n$/)]);
      const [setL, lastL] = await l.call([["SET", "ryw:l", "2"], ["KV.LASTINDEX"]]);
      expect(setL).toBe("+OK\r\n");
      const il = Number(lastL!.slice(1));
      const [, lastA] = await a.call([["SET", "ryw:a", "3"], ["KV.LASTINDEX"]]);
      const ia = Number(lastA!.slice(1));
      expect(ia).toBeGreaterThan(il); // a later write, forwarded: the leader's index of it
      expect(await one(b, ["READONLY"])).toBe("+OK\r\n");
      const [wait, get] = await b.call([["KV.WAITINDEX", String(ia)], ["GET", "ryw:a"]]);
      expect(Number(wait!.slice(1))).toBeGreaterThanOrEqual(ia);
      expect(get).toBe("$1\r\n3\r\n");

      // An index ahead of the log: the wait waits its timeout, then says so; the read behind it waits too.
      const ahead = ia + 1_000_000;
      const t0 = performance.now();
      const [timedOut, after] = await b.call([["KV.WAITINDEX", String(ahead), "300"], ["GET", "ryw:a"]]);
      const waited = performance.now() - t0;
      expect(timedOut).toMatch(new RegExp(`^-TIMEOUT index ${ahead} was not applied on this node within 300 ms \\(applied index \\d+\\)\\r\\n$`));
      expect(after).toBe("$1\r\n3\r\n");
      expect(waited).toBeGreaterThanOrEqual(290);

      // A follower cut off from the others cannot have a write made after the cut: without the wait it
      // answers its older value (within the bound), with it the read waits until the link is back.
      cluster.isolate(f2);
      const [, lastW] = await l.call([["SET", "ryw:a", "4"], ["KV.LASTINDEX"]]);
      const iw = Number(lastW!.slice(1));
      expect(await one(b, ["GET", "ryw:a"])).toBe("$1\r\n3\r\n");
      const t1 = performance.now();
      b.send([["KV.WAITINDEX", String(iw), "10000"], ["GET", "ryw:a"]]);
      await Bun.sleep(300);
      expect(b.received()).toEqual([]); // still waiting
      cluster.heal();
      const [waitW, getW] = await collect(b, 2, 10_000);
      expect(Number(waitW!.slice(1))).toBeGreaterThanOrEqual(iw);
      expect(getW).toBe("$1\r\n4\r\n");
      expect(performance.now() - t1).toBeGreaterThanOrEqual(300);
    } finally {
      cluster.heal();
      a.close();
      l.close();
      b.close();
    }
  }, 30_000);

  test("a follower cut off from the leader serves READONLY reads within the bound, never older than it allows, then answers -STALE", async () => {
    await cluster.waitLeader(10_000);
    const w = await RawResp.connect(cluster.node(leader).port);
    const r = await RawResp.connect(cluster.node(f1).port);
    const lin = await RawResp.connect(cluster.node(f1).port);
    try {
      expect(await one(r, ["READONLY"])).toBe("+OK\r\n");
      // Acknowledged writes of a counter, with when each was acknowledged.
      const acked: { value: number; at: number }[] = [];
      let writing = true;
      const writer = (async () => {
        for (let i = 1; writing && i <= 100_000; i++) {
          const rep = await one(w, ["SET", "stale:n", String(i)], 10_000);
          if (rep !== "+OK\r\n") throw new Error(`write ${i}: ${rep}`);
          acked.push({ value: i, at: performance.now() });
        }
      })();
      // Healthy, under a stream of writes (the leader's reported commit index is then mostly a little
      // ahead of what the follower has applied): every read is served, none refused.
      let healthyReads = 0;
      for (const t0 = performance.now(); performance.now() - t0 < 400 && healthyReads < 10_000; healthyReads++) {
        expect(await one(r, ["GET", "stale:n"])).toMatch(/^(\$\d+\r\n\d+\r\n|\$-1\r\n)$/);
        await Bun.sleep(1);
      }
      expect(acked.length).toBeGreaterThan(10);

      const reads: { at: number; reply: string }[] = [];
      cluster.isolate(f1);
      const cutAt = performance.now();
      let firstStale = 0;
      for (let i = 0; i < 1000 && performance.now() - cutAt < MAX_STALENESS_MS + 1500; i++) {
        const at = performance.now();
        const reply = await one(r, ["GET", "stale:n"]);
        reads.push({ at, reply });
        if (reply.startsWith("-")) {
          firstStale = performance.now();
          break;
        }
        await Bun.sleep(10);
      }
      writing = false;
      await writer;
      const served = reads.filter((x) => !x.reply.startsWith("-"));
      // No read returned a value older than the bound allows: every write acknowledged more than
      // the bound (plus slack) before the read began is reflected in it.
      const writesAfterCut = acked.filter((a) => a.at > cutAt + 100).length;
      expect(writesAfterCut).toBeGreaterThan(0); // the others kept committing meanwhile
      for (const x of served) {
        const v = Number(x.reply.split("\r\n")[1]);
        const required = acked.filter((a) => a.at < x.at - MAX_STALENESS_MS - SLACK_MS).reduce((m, a) => Math.max(m, a.value), 0);
        expect(v).toBeGreaterThanOrEqual(required);
      }
      expect(firstStale).toBeGreaterThan(0);
      const last = reads[reads.length - 1]!.reply;
      expect(last).toMatch(new RegExp(`^-STALE last heard from the leader \\d+ ms ago \\(max staleness ${MAX_STALENESS_MS} ms\\)\\r\\n$`));
      const heardMs = Number(/(\d+) ms ago/.exec(last)![1]);
      expect(heardMs).toBeGreaterThan(MAX_STALENESS_MS);
      // The error came once the bound passed, within the bound plus the heartbeat before the cut and some slack.
      expect(firstStale - cutAt).toBeLessThanOrEqual(MAX_STALENESS_MS + HEARTBEAT_MS + SLACK_MS);
      // It kept serving while within the bound.
      expect(served.some((x) => x.at - cutAt >= MAX_STALENESS_MS / 2)).toBe(true);
      // Linearizable reads on the cut-off follower are refused, not answered from its state.
      expect(await one(lin, ["GET", "stale:n"], 15_000)).toMatch(/^-CLUSTERDOWN /);
      expect(await one(r, ["KV.READ", "LINEARIZABLE", "GET", "stale:n"], 15_000)).toMatch(/^-CLUSTERDOWN /);
      // Back in touch: served again, and current.
      cluster.heal();
      const deadline = performance.now() + 10_000;
      let reply = "";
      while (performance.now() < deadline) {
        reply = await one(r, ["GET", "stale:n"]);
        if (reply === `$${String(acked.length).length}\r\n${acked.length}\r\n`) break;
        await Bun.sleep(20);
      }
      expect(reply).toBe(`$${String(acked.length).length}\r\n${acked.length}\r\n`);
    } finally {
      cluster.heal();
      w.close();
      r.close();
      lin.close();
    }
  }, 30_000);

  test("with the leader paused (SIGSTOP), READONLY on a follower answers -STALE once the bound has passed", async () => {
    const l = await cluster.waitLeader(10_000);
    const [f, other] = [1, 2, 3].filter((id) => id !== l) as [number, number];
    const r = await RawResp.connect(cluster.node(f).port);
    try {
      expect(await one(r, ["READONLY"])).toBe("+OK\r\n");
      expect(await one(r, ["GET", "stale:n"])).toMatch(/^\$/);
      // The two followers cannot reach each other either: no new leader is elected, so nothing can
      // bring this follower back within the bound.
      cluster.setLink(f, other, { kind: "drop" });
      cluster.pause(l);
      const pausedAt = performance.now();
      let reply = "";
      let at = 0;
      for (let i = 0; i < 1000 && performance.now() - pausedAt < MAX_STALENESS_MS + 1500; i++) {
        reply = await one(r, ["GET", "stale:n"]);
        at = performance.now();
        if (reply.startsWith("-")) break;
        await Bun.sleep(10);
      }
      expect(reply).toMatch(new RegExp(`^-STALE last heard from the leader \\d+ ms ago \\(max staleness ${MAX_STALENESS_MS} ms\\)\\r\\n$`));
      expect(at - pausedAt).toBeLessThanOrEqual(MAX_STALENESS_MS + HEARTBEAT_MS + SLACK_MS);
      expect(at - pausedAt).toBeGreaterThanOrEqual(MAX_STALENESS_MS - HEARTBEAT_MS - SLACK_MS);
    } finally {
      cluster.resume(l);
      cluster.heal();
      r.close();
    }
  }, 30_000);
});

describe("a follower slow to apply (its log fsyncs take 300 ms)", () => {
  const FSYNC_DELAY_MS = 300;
  let c: TestCluster | null = null;
  afterAll(() => c?.stopAll());

  test("READONLY reads there are refused while it trails the leader by more than the bound; KV.WAITINDEX waits for the write", async () => {
    c = await startCluster(3, ["--max-staleness", "100"]);
    const l = await c.leader();
    const x = [1, 2, 3].find((id) => id !== l)!;
    await c.stop(x);
    await c.start(x, { KV_TEST_FSYNC_DELAY_MS: String(FSYNC_DELAY_MS) });
    const w = await RawResp.connect(c.nodes[l - 1]!.port);
    const r = await RawResp.connect(c.nodes[x - 1]!.port);
    try {
      expect(await one(w, ["SET", "slow:k", "old"])).toBe("+OK\r\n");
      expect(await one(r, ["READONLY"])).toBe("+OK\r\n");
      // Caught up once writes pause: served.
      const deadline = performance.now() + 10_000;
      let got = "";
      while (performance.now() < deadline && got !== "$3\r\nold\r\n") {
        got = await one(r, ["GET", "slow:k"]);
        await Bun.sleep(20);
      }
      expect(got).toBe("$3\r\nold\r\n");

      // A stream of writes: the leader commits with the other follower; this one applies each batch
      // 300 ms after it arrives, more than the bound behind what the leader reports.
      let refusedBehind = "";
      for (let i = 0; i < 200 && refusedBehind === ""; i++) {
        expect(await one(w, ["SET", "slow:n", String(i)])).toBe("+OK\r\n");
        const reply = await one(r, ["GET", "slow:k"]);
        if (reply.startsWith("-")) refusedBehind = reply;
        else expect(reply).toBe("$3\r\nold\r\n");
      }
      expect(refusedBehind).toMatch(/^-STALE applied index \d+ is behind the leader's commit index \d+ reported \d+ ms ago \(max staleness 100 ms\)\r\n$/);

      // A write's index, waited for there: the read behind the wait sees it.
      const [set, last] = await w.call([["SET", "slow:k", "new"], ["KV.LASTINDEX"]]);
      expect(set).toBe("+OK\r\n");
      const index = Number(last!.slice(1));
      const t0 = performance.now();
      const [waited, read] = await r.call([["KV.WAITINDEX", String(index)], ["GET", "slow:k"]], 10_000);
      const tookMs = performance.now() - t0;
      expect(Number(waited!.slice(1))).toBeGreaterThanOrEqual(index);
      expect(read).toBe("$3\r\nnew\r\n");
      // It did wait: the write was not applied there when the wait began (a fsync of 300 ms stood between).
      expect(tookMs).toBeGreaterThanOrEqual(FSYNC_DELAY_MS / 3);
    } finally {
      w.close();
      r.close();
    }
  }, 40_000);
});

describe("read modes on a single node", () => {
  test("READONLY reads and the indexes of a one-member group", async () => {
    const kv = await startKv();
    const c = await RawResp.connect(kv.port);
    try {
      expect(await one(c, ["KV.LASTINDEX"])).toBe(":0\r\n");
      expect(await c.call([["SET", "k", "v"], ["KV.LASTINDEX"]])).toEqual(["+OK\r\n", expect.stringMatching(/^:[1-9]\d*\r\n$/)]);
      const index = Number((await one(c, ["KV.LASTINDEX"])).slice(1));
      expect(await c.call([["READONLY"], ["GET", "k"], ["KV.READ", "STALE", "GET", "k"], ["READWRITE"], ["GET", "k"]])).toEqual(["+OK\r\n", "$1\r\nv\r\n", "$1\r\nv\r\n", "+OK\r\n", "$1\r\nv\r\n"]);
      expect(Number((await one(c, ["KV.WAITINDEX", String(index)])).slice(1))).toBeGreaterThanOrEqual(index);
      expect(await one(c, ["KV.WAITINDEX", String(index + 1000), "50"])).toMatch(/^-TIMEOUT /);
      const info = parseInfo(await one(c, ["INFO", "raft"]));
      expect(info.raft_role).toBe("leader");
    } finally {
      c.close();
      await kv.stop();
    }
  });
});
