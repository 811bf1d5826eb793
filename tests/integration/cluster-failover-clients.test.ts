// Real clients against a 3-node cluster of the compiled binary, through a kill -9 of the leader:
// ROLE on each node, CLUSTER SLOTS naming the leader everywhere, redis-cli -c and plain clients
// answered by any node, ioredis's Cluster sending to the leader and finding the new one after the
// kill (its writes succeed again), the old leader back as a replica once restarted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis, { Cluster } from "ioredis";
import { createClient } from "redis";
import { rawConnect, startKv, type KvProcess } from "../helpers/server.ts";
import { tempDirs } from "../helpers/tmp.ts";
import { MEMBER_DOWN_AFTER_MS } from "../../src/server/cluster-commands.ts";

const newDir = tempDirs("kv-cluster-clients-");

/** A free loopback port (bound and released). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

interface Member {
  id: number;
  port: number;
  peer: number;
  dir: string;
  kv: KvProcess | null;
}

const members: Member[] = [1, 2, 3].map((id) => ({ id, port: freePort(), peer: freePort(), dir: newDir(), kv: null }));
const CLUSTER = members.map((m) => `${m.id}=127.0.0.1:${m.port}@${m.peer}`).join(",");

async function start(m: Member): Promise<void> {
  m.kv = await startKv(["--id", String(m.id), "--cluster", CLUSTER], { port: m.port, dataDir: m.dir, timeoutMs: 15_000 });
}

/** `INFO raft` of a node as a map, or null if it does not answer within timeoutMs. */
async function infoRaft(port: number, timeoutMs = 1_000): Promise<Map<string, string> | null> {
  let c;
  try {
    c = await rawConnect(port);
  } catch {
    return null;
  }
  try {
    c.write("INFO raft\r\n");
    const text = await c.waitFor((r) => {
      const m = /^\$(\d+)\r\n/.exec(r);
      return m !== null && r.length >= m[0].length + Number(m[1]) + 2;
    }, timeoutMs);
    const f = new Map<string, string>();
    for (const line of text.split("\r\n")) {
      const i = line.indexOf(":");
      if (i > 0 && line.startsWith("raft_")) f.set(line.slice(0, i), line.slice(i + 1));
    }
    return f;
  } catch {
    return null;
  } finally {
    c.close();
  }
}

/**
 * Waits until every node of `alive` names the same leader, one of them; returns it. Bounded by
 * time and by a count of rounds.
 */
async function agreedLeader(alive: Member[], timeoutMs = 15_000): Promise<Member> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (let round = 0; round < 1_000 && Date.now() < deadline; round++) {
    const infos = await Promise.all(alive.map((m) => infoRaft(m.port)));
    const ids = new Set(infos.map((f) => f?.get("raft_leader_id") ?? "down"));
    last = JSON.stringify(infos.map((f) => (f === null ? null : [f.get("raft_role"), f.get("raft_leader_id"), f.get("raft_term")])));
    if (ids.size === 1) {
      const id = Number([...ids][0]);
      const leader = alive.find((m) => m.id === id);
      if (leader !== undefined && infos[alive.indexOf(leader)]!.get("raft_role") === "leader") return leader;
    }
    await Bun.sleep(50);
  }
  throw new Error(`no agreed leader among ${alive.map((m) => m.id)}: ${last}`);
}

async function redisCli(port: number, args: string[]): Promise<{ out: string; code: number }> {
  const p = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  clearTimeout(killer);
  return { out, code };
}

/** A promise, or an error once ms pass (ioredis's Cluster queues commands while it has no node). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/**
 * Runs `write` until it is acknowledged ("OK"), bounded by count and time; errors on the way are
 * expected while no leader is known (CLUSTERDOWN, TRYAGAIN, UNCERTAIN, a closed connection).
 * Returns "acked", or the last errors.
 */
async function untilAcked(write: () => Promise<unknown>): Promise<string> {
  const t0 = Date.now();
  const errors: string[] = [];
  for (let attempt = 0; attempt < 300 && Date.now() - t0 < 20_000; attempt++) {
    try {
      const r = await within(write(), 5_000);
      if (r === "OK") return "acked";
      errors.push(`reply ${JSON.stringify(r)}`);
    } catch (e) {
      errors.push((e as Error).message);
    }
    await Bun.sleep(50);
  }
  return `not acked; last errors: ${errors.slice(-5).join(" | ")}`;
}

/** ROLE of a node as redis-cli prints it. */
async function role(m: Member): Promise<string> {
  return (await redisCli(m.port, ["--no-raw", "role"])).out;
}

const KEYS = Array.from({ length: 40 }, (_, i) => `fo:${i}:${"y".repeat(i % 5)}`);

describe("a 3-node cluster", () => {
  let leader: Member;

  beforeAll(async () => {
    await Promise.all(members.map(start));
    leader = await agreedLeader(members);
  }, 60_000);

  afterAll(async () => {
    for (const m of members) await m.kv?.stop({ keepData: true });
  });

  test("ROLE: master on the leader with both replicas, slave of the leader elsewhere", async () => {
    const followers = members.filter((m) => m !== leader);
    // Both followers answer heartbeats: the leader lists them with their match index.
    const deadline = Date.now() + 10_000;
    let out = "";
    while (Date.now() < deadline) {
      out = await role(leader);
      if (followers.every((f) => out.includes(`"${f.port}"`))) break;
      await Bun.sleep(50);
    }
    expect(out).toMatch(/^1\) "master"\n2\) \(integer\) \d+\n3\) 1\) 1\) "127\.0\.0\.1"\n      2\) "\d+"\n      3\) "\d+"\n   2\) 1\) "127\.0\.0\.1"\n      2\) "\d+"\n      3\) "\d+"\n$/);
    const ports = [...out.matchAll(/2\) "(\d+)"/g)].map((x) => Number(x[1])).sort();
    expect(ports).toEqual(followers.map((f) => f.port).sort());
    for (const f of followers) {
      expect(await role(f)).toMatch(new RegExp(`^1\\) "slave"\\n2\\) "127\\.0\\.0\\.1"\\n3\\) \\(integer\\) ${leader.port}\\n4\\) "connected"\\n5\\) \\(integer\\) \\d+\\n$`));
    }
  });

  test("CLUSTER SLOTS on every node: all slots on the leader, then the two followers", async () => {
    const myid = (await redisCli(leader.port, ["cluster", "myid"])).out.trim();
    for (const m of members) {
      const out = (await redisCli(m.port, ["--no-raw", "cluster", "slots"])).out;
      expect(out).toStartWith(`1) 1) (integer) 0\n   2) (integer) 16383\n   3) 1) "127.0.0.1"\n      2) (integer) ${leader.port}\n      3) "${myid}"\n      4) (empty array)\n`);
      expect(out.match(/1\) "127\.0\.0\.1"/g)).toHaveLength(3);
      expect((await redisCli(m.port, ["cluster", "info"])).out).toContain("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n");
    }
  });

  test("redis-cli --cluster check and info: every node agrees on the slots, all covered by the leader", async () => {
    const follower = members.find((m) => m !== leader)!;
    const plain = (t: string) => t.replace(/\x1b\[[0-9;]*m/g, "");
    const check = await redisCli(follower.port, ["--cluster", "check", `127.0.0.1:${follower.port}`]);
    expect(check.code).toBe(0);
    const out = plain(check.out);
    expect(out).toContain(`M: ${(await redisCli(leader.port, ["cluster", "myid"])).out.trim()} 127.0.0.1:${leader.port}\n   slots:[0-16383] (16384 slots) master\n   2 additional replica(s)\n`);
    expect(out).toContain("[OK] All nodes agree about slots configuration.");
    expect(out).toContain("[OK] All 16384 slots covered.");
    const info = await redisCli(leader.port, ["--cluster", "info", `127.0.0.1:${leader.port}`]);
    expect(info.code).toBe(0);
    expect(plain(info.out)).toMatch(new RegExp(`^127\\.0\\.0\\.1:${leader.port} \\([0-9a-f]{8}\\.\\.\\.\\) -> \\d+ keys \\| 16384 slots \\| 2 slaves\\.\\n`));
  });

  test("redis-cli -c and without, against every node: writes on one node are read on the others", async () => {
    for (const [i, m] of members.entries()) {
      expect(await redisCli(m.port, ["-c", "set", `cli:${i}`, `v${i}`])).toEqual({ out: "OK\n", code: 0 });
      for (const other of members) expect(await redisCli(other.port, ["-c", "get", `cli:${i}`])).toEqual({ out: `v${i}\n`, code: 0 });
      expect(await redisCli(m.port, ["incr", "cli:n"])).toEqual({ out: `${i + 1}\n`, code: 0 });
    }
  });

  test("ioredis Cluster reading from replicas (READONLY, scaleReads slave): reads run on followers, each the value written or the state before it, until they catch up", async () => {
    const c = new Cluster(
      members.map((m) => ({ host: "127.0.0.1", port: m.port })),
      { lazyConnect: true, scaleReads: "slave" },
    );
    await c.connect();
    try {
      expect(c.nodes("slave").map((n) => n.options.port).sort()).toEqual(members.filter((m) => m !== leader).map((m) => m.port).sort());
      const gets = async (m: Member) => Number(/cmdstat_get:calls=(\d+)/.exec((await redisCli(m.port, ["info", "commandstats"])).out)?.[1] ?? 0);
      const before = await Promise.all(members.map(gets));
      // READONLY reads on a follower are bounded-staleness reads (docs/cluster.md, "Read modes"): a
      // read right after a write may still see the key as it was before (absent), never anything else.
      for (let i = 0; i < 20; i++) {
        expect(await c.set(`ro:${i}`, `v${i}`)).toBe("OK");
        expect([`v${i}`, null]).toContain(await c.get(`ro:${i}`));
      }
      // Every GET ran on a follower: the leader ran none.
      const after = await Promise.all(members.map(gets));
      const ran = after.map((n, i) => n - before[i]!);
      expect(ran[members.indexOf(leader)]).toBe(0);
      expect(ran.reduce((a, b) => a + b, 0)).toBe(20);
      // And the followers catch up: every write is read back from them (bounded).
      for (let i = 0; i < 20; i++) {
        let v: string | null = null;
        for (let tries = 0; tries < 200 && v !== `v${i}`; tries++) {
          v = await c.get(`ro:${i}`);
          if (v !== `v${i}`) await Bun.sleep(10);
        }
        expect(v).toBe(`v${i}`);
      }
    } finally {
      c.disconnect();
    }
  });

  test("node-redis, a plain client against a follower: any node answers", async () => {
    const follower = members.find((m) => m !== leader)!;
    const c = createClient({ url: `redis://127.0.0.1:${follower.port}` });
    await c.connect();
    try {
      expect(await c.set("nr:a", "1")).toBe("OK");
      expect(await c.get("nr:a")).toBe("1");
      expect(await c.incr("nr:n")).toBe(1);
      expect(await c.mGet(["nr:a", "nr:none"])).toEqual(["1", null]);
    } finally {
      await c.close();
    }
  });

  test("after kill -9 of the leader: ioredis Cluster finds the new one; plain ioredis, node-redis and redis-cli on the survivors write again", async () => {
    const c = new Cluster(
      members.map((m) => ({ host: "127.0.0.1", port: m.port })),
      { lazyConnect: true, clusterRetryStrategy: () => 100 },
    );
    c.on("error", () => {}); // connection errors to the killed node while it is down
    await c.connect();
    const [f1, f2] = members.filter((m) => m !== leader) as [Member, Member];
    const io = new Redis({ host: "127.0.0.1", port: f1.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    await io.connect();
    const nr = createClient({ url: `redis://127.0.0.1:${f2.port}` });
    nr.on("error", () => {});
    await nr.connect();
    try {
      expect(c.nodes("master").map((n) => n.options.port)).toEqual([leader.port]);
      for (const k of KEYS) expect(await c.set(k, `before-${k}`)).toBe("OK");

      const old = leader;
      old.kv!.proc.kill("SIGKILL");
      await old.kv!.proc.exited;
      const survivors = members.filter((m) => m !== old);

      // Every client writes again through the connection it had, to a node that survived.
      const cli = async (port: number, args: string[]) => {
        const r = await redisCli(port, args);
        return r.out.trim();
      };
      expect(
        await Promise.all([
          untilAcked(() => c.set("after:cluster", "1")),
          untilAcked(() => io.set("after:io", "1")),
          untilAcked(() => nr.set("after:nr", "1")),
          untilAcked(() => cli(f1.port, ["set", "after:cli", "1"])),
          untilAcked(() => cli(f2.port, ["-c", "set", "after:cli-c", "1"])),
        ]),
      ).toEqual(["acked", "acked", "acked", "acked", "acked"]);
      for (const k of ["after:cluster", "after:io", "after:nr", "after:cli", "after:cli-c"]) {
        expect(await io.get(k)).toBe("1");
        expect(await nr.get(k)).toBe("1");
      }

      leader = await agreedLeader(survivors);
      expect(leader).not.toBe(old);
      for (const k of KEYS) expect(await within(c.get(k), 5_000)).toBe(`before-${k}`);
      for (const k of KEYS) expect(await within(c.set(k, `after-${k}`), 5_000)).toBe("OK");
      // Its topology, refreshed after the failover, names the new leader as the only master.
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && c.nodes("master").map((n) => n.options.port).join() !== String(leader.port)) {
        c.refreshSlotsCache();
        await Bun.sleep(100);
      }
      expect(c.nodes("master").map((n) => n.options.port)).toEqual([leader.port]);

      // ROLE on the survivors: the new leader lists the other survivor; the survivor follows it.
      const other = survivors.find((m) => m !== leader)!;
      expect(await role(other)).toContain(`3) (integer) ${leader.port}\n4) "connected"\n`);
      // The killed node drops out of the new leader's list once not heard from for
      // MEMBER_DOWN_AFTER_MS (its messages as the old leader count as contact).
      let mine = "";
      for (const until = Date.now() + MEMBER_DOWN_AFTER_MS + 5_000; Date.now() < until; await Bun.sleep(100)) {
        mine = await role(leader);
        if (!mine.includes(`2) "${old.port}"`)) break;
      }
      expect(mine).toMatch(new RegExp(`^1\\) "master"\\n2\\) \\(integer\\) \\d+\\n3\\) 1\\) 1\\) "127\\.0\\.0\\.1"\\n      2\\) "${other.port}"\\n      3\\) "\\d+"\\n$`));
      expect((await redisCli(leader.port, ["cluster", "nodes"])).out).toMatch(new RegExp(`127\\.0\\.0\\.1:${old.port}@${old.peer} slave,fail\\? [0-9a-f]{40} 0 \\d+ \\d+ disconnected\\n`));

      // The old leader restarts on its data and follows the new one.
      await start(old);
      expect(await agreedLeader(members)).toBe(leader);
      const deadline2 = Date.now() + 10_000;
      let out = "";
      while (Date.now() < deadline2) {
        out = await role(old);
        if (out.includes(`3) (integer) ${leader.port}\n4) "connected"`)) break;
        await Bun.sleep(50);
      }
      expect(out).toStartWith(`1) "slave"\n2) "127.0.0.1"\n3) (integer) ${leader.port}\n4) "connected"\n`);
      expect(await redisCli(old.port, ["-c", "get", KEYS[0]!])).toEqual({ out: `after-${KEYS[0]!}\n`, code: 0 });
    } finally {
      c.disconnect();
      io.disconnect();
      await nr.close().catch(() => {});
    }
  }, 90_000);

  test("without a quorum the leader steps down: ROLE connect, CLUSTER SLOTS empty, CLUSTER INFO fail", async () => {
    const lone = await agreedLeader(members);
    for (const m of members) {
      if (m === lone) continue;
      m.kv!.proc.kill("SIGKILL");
      await m.kv!.proc.exited;
    }
    // Check-quorum: a leader that hears from no majority for an election timeout steps down.
    let out = "";
    for (const until = Date.now() + 10_000; Date.now() < until; await Bun.sleep(50)) {
      out = await role(lone);
      if (out.startsWith('1) "slave"')) break;
    }
    expect(out).toMatch(/^1\) "slave"\n2\) ""\n3\) \(integer\) 0\n4\) "connect"\n5\) \(integer\) \d+\n$/);
    expect(await redisCli(lone.port, ["--no-raw", "cluster", "slots"])).toEqual({ out: "(empty array)\n", code: 0 });
    expect((await redisCli(lone.port, ["cluster", "info"])).out).toStartWith("cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:0\r\n");
    const repl = (await redisCli(lone.port, ["info", "replication"])).out;
    expect(repl).toContain("role:slave\r\nmaster_host:\r\nmaster_port:0\r\nmaster_link_status:down\r\n");
    const raft = await infoRaft(lone.port);
    expect([raft?.get("raft_leader_id"), raft?.get("raft_leader_addr")]).toEqual(["0", ""]);
    expect((await redisCli(lone.port, ["cluster", "nodes"])).out).not.toContain("master");
  }, 30_000);
});
