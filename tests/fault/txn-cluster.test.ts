// Optimistic locking through a leader kill, on a 3-node cluster of ./kv processes: clients on every
// node increment one counter with WATCH/GET/MULTI/SET/EXEC retry loops while the leader is killed
// (kill -9) and later restarted. Each transaction also sets a marker key of its own, so its fate
// can be read afterwards: an EXEC answered with its array applied (marker present); one answered
// with the null reply did not (marker absent); one whose outcome is unknown (-UNCERTAIN, another
// error, a connection lost) is counted by reading its marker once the cluster has settled. The
// counter must equal the number of transactions applied: no lost update, no double apply.
// Bounded by a count of attempts per client and by time. TXN_CLUSTER_SECONDS runs longer.
import { afterAll, expect, test } from "bun:test";
import { ProcCluster } from "../helpers/proc-cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tmp = tempDirs("kv-txn-cluster-");
afterAll(() => ProcCluster.stopAll());

const SECONDS = Number(process.env.TXN_CLUSTER_SECONDS ?? 12);
const CLIENTS = 6;
// Attempts per client at most: the loop ends at this count or at the deadline, whichever comes first.
const ATTEMPTS_MAX = 250 * SECONDS;
const KEY = "txn:counter";

type Fate = "applied" | "aborted" | "unknown";

test(`${CLIENTS} clients incrementing one counter with WATCH retries through a leader kill: counter = transactions applied`, async () => {
  // Snapshots every 64 KiB of log: the restarted node restores one (revisions, deletion floor) and
  // catches up while transactions watched before it apply.
  const cluster = await ProcCluster.start({ dir: tmp(), nodes: 3, extraArgs: ["--snapshot-log-bytes", "64kb"] });
  try {
    const first = await cluster.waitLeader(15_000);
    expect(await cluster.command(first, ["SET", KEY, "0"], 5_000)).toBe("+OK\r\n");
    const deadline = Date.now() + SECONDS * 1_000;
    const fates = new Map<string, Fate>();
    let stop = false;

    const client = async (n: number): Promise<void> => {
      let conn: RawResp | null = null;
      let nodeIx = n % 3;
      for (let attempt = 0; attempt < ATTEMPTS_MAX && !stop && Date.now() < deadline; attempt++) {
        try {
          if (conn === null) {
            const id = (nodeIx % 3) + 1;
            if (cluster.node(id).state !== "up") {
              nodeIx++;
              await Bun.sleep(20);
              continue;
            }
            conn = await RawResp.connect(cluster.node(id).port);
          }
          // Churn: a key with a short TTL, so expirations (and the deletion floor) move under the load.
          if (attempt % 8 === 0) await conn.call([["SET", `txn:churn:${n}`, "x", "PX", "20"]], 5_000);
          const [w, v] = await conn.call([["WATCH", KEY], ["GET", KEY]], 5_000);
          if (w !== "+OK\r\n" || !v!.startsWith("$")) throw new Error(`WATCH/GET answered ${w} ${v}`);
          const value = Number(v!.split("\r\n")[1]);
          const marker = `txn:done:${n}:${attempt}`;
          fates.set(marker, "unknown"); // until its reply says otherwise
          const replies = await conn.call([["MULTI"], ["SET", KEY, String(value + 1)], ["SET", marker, "1"], ["EXEC"]], 8_000);
          const exec = replies[3]!;
          if (exec === "*2\r\n+OK\r\n+OK\r\n") fates.set(marker, "applied");
          else if (exec === "*-1\r\n") fates.set(marker, "aborted");
          else if (exec.startsWith("-")) {
            // -UNCERTAIN (or a refusal before logging, e.g. no leader yet): read the marker later.
            await Bun.sleep(50);
          } else throw new Error(`EXEC answered ${JSON.stringify(exec)}`);
        } catch {
          // Connection lost (its node killed) or a timeout: try another node.
          conn?.close();
          conn = null;
          nodeIx++;
          await Bun.sleep(50);
        }
      }
      conn?.close();
    };

    const nemesis = async (): Promise<void> => {
      await Bun.sleep(Math.min(3_000, (SECONDS * 1000) / 4));
      const leader = await cluster.waitLeader(10_000);
      await cluster.kill(leader);
      await Bun.sleep(Math.min(3_000, (SECONDS * 1000) / 4));
      await cluster.restart(leader);
    };

    await Promise.all([...Array.from({ length: CLIENTS }, (_, n) => client(n)), nemesis()]);
    stop = true;

    // Settled: a leader, every node up; read each marker's fate and the counter through the leader.
    const leader = await cluster.waitLeader(15_000);
    const c = await RawResp.connect(cluster.node(leader).port);
    try {
      const markers = [...fates.keys()];
      const exists = await c.call(markers.map((m) => ["EXISTS", m]), 20_000);
      let applied = 0;
      let resolved = 0;
      for (let i = 0; i < markers.length; i++) {
        const present = exists[i] === ":1\r\n";
        const fate = fates.get(markers[i]!)!;
        if (fate === "applied") expect(present, `${markers[i]} answered applied`).toBe(true);
        if (fate === "aborted") expect(present, `${markers[i]} answered aborted`).toBe(false);
        if (fate === "unknown") resolved++;
        if (present) applied++;
      }
      const [counter] = await c.call([["GET", KEY]], 5_000);
      console.log(`transactions: ${markers.length} tried, ${applied} applied, ${resolved} of unknown fate read back`);
      expect(counter).toBe(`$${String(applied).length}\r\n${applied}\r\n`);
      expect(applied).toBeGreaterThan(0);
      expect([...fates.values()].some((f) => f === "aborted")).toBe(true); // the clients contended
      // Every member decided every transaction alike: once each has applied up to the leader's
      // last write, each holds the same counter and the same keys.
      expect(await c.call([["SET", "txn:end", "1"]])).toEqual(["+OK\r\n"]);
      const end = (await c.call([["KV.LASTINDEX"]]))[0]!.slice(1, -2);
      for (const id of [1, 2, 3]) {
        const m = await RawResp.connect(cluster.node(id).port);
        try {
          const [waited, value, size] = await m.call([["KV.WAITINDEX", end, "10000"], ["KV.READ", "STALE", "GET", KEY], ["KV.READ", "STALE", "KEYS", "txn:done:*"]], 15_000);
          expect(waited, `node ${id}`).toStartWith(":");
          expect(value, `node ${id}`).toBe(counter);
          expect(size!.slice(0, size!.indexOf("\r\n")), `node ${id}`).toBe(`*${applied}`);
        } finally {
          m.close();
        }
      }
    } finally {
      c.close();
    }
    expect(cluster.unexpectedExits.map((e) => `node ${e.id} exited (${e.code ?? e.signal}):\n${e.log}`)).toEqual([]);
  } finally {
    await cluster.stop();
  }
}, 120_000);

test("on followers: WATCH observes every write acknowledged before it (no false abort), read-only transactions are linearizable", async () => {
  const cluster = await ProcCluster.start({ dir: tmp(), nodes: 3 });
  try {
    const leader = await cluster.waitLeader(15_000);
    const followers = [1, 2, 3].filter((id) => id !== leader);
    const l = await RawResp.connect(cluster.node(leader).port);
    const fs = await Promise.all(followers.map((id) => RawResp.connect(cluster.node(id).port)));
    try {
      for (let i = 0; i < 30; i++) {
        const f = fs[i % fs.length]!;
        expect(await l.call([["SET", "fk", String(i)]])).toEqual(["+OK\r\n"]);
        // Written through the leader, then watched, read and changed in a transaction on a follower.
        const r = await f.call([["WATCH", "fk"], ["GET", "fk"], ["MULTI"], ["SET", "fk", `${i}!`], ["EXEC"]], 10_000);
        expect(r, `round ${i}`).toEqual(["+OK\r\n", `$${String(i).length}\r\n${i}\r\n`, "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"]);
        // A read-only transaction on the other follower sees it.
        const g = fs[(i + 1) % fs.length]!;
        expect(await g.call([["MULTI"], ["GET", "fk"], ["EXISTS", "fk"], ["EXEC"]], 10_000), `round ${i}`).toEqual(["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", `*2\r\n$${String(i).length + 1}\r\n${i}!\r\n:1\r\n`]);
      }
    } finally {
      l.close();
      for (const f of fs) f.close();
    }
  } finally {
    await cluster.stop();
  }
}, 60_000);
