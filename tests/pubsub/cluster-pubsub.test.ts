// Pub/sub and keyspace notifications in a 3-node process cluster: a message published on any node
// reaches subscribers on every node, in one order (the log's), with ioredis (RESP2), node-redis
// (RESP3) and a raw connection; keyspace notifications are the same on every node. Through a
// kill -9 of the leader: subscribers on the surviving nodes stay subscribed and receive every
// message whose PUBLISH was acknowledged, once, in order.
import { afterAll, expect, test } from "bun:test";
import Redis from "ioredis";
import { createClient } from "redis";
import { ProcCluster } from "../helpers/proc-cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { tempDirs } from "../helpers/tmp.ts";
import { decodeFlat, Stream } from "./_stream.ts";

const tmp = tempDirs("kv-pubsub-cluster-");
afterAll(() => ProcCluster.stopAll());

/** Publishes `msg` on node `id`; true once acknowledged (false: refused or outcome unknown; never retried). */
async function publish(cluster: ProcCluster, id: number, msg: string): Promise<boolean> {
  const r = await cluster.command(id, ["PUBLISH", "ch", msg], 3000);
  return r !== null && r.startsWith(":");
}

test("publish on any node, receive on every node; keyspace events agree; through a leader kill", async () => {
  const cluster = await ProcCluster.start({ dir: tmp(), nodes: 3 });
  const clients: { quit(): Promise<unknown> }[] = [];
  try {
    const leader = await cluster.waitLeader(15_000);
    for (const id of [1, 2, 3]) expect(await cluster.command(id, ["CONFIG", "SET", "notify-keyspace-events", "KEA"])).toBe("+OK\r\n");
    const got = new Map<number, string[]>([[1, []], [2, []], [3, []]]);
    // Node 1: ioredis (RESP2 subscribed mode).
    const io = new Redis({ port: cluster.node(1).port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await io.connect();
    clients.push(io);
    io.on("message", (_ch: string, m: string) => got.get(1)!.push(m));
    io.on("pmessage", (_p: string, ch: string, m: string) => got.get(1)!.push(`${ch} ${m}`));
    await io.subscribe("ch");
    await io.psubscribe("__keyspace@0__:*");
    // Node 2: node-redis, RESP3 (push frames on the connection that also sends commands).
    const nr = createClient({ socket: { port: cluster.node(2).port, host: "127.0.0.1", reconnectStrategy: false }, RESP: 3 });
    nr.on("error", () => {});
    await nr.connect();
    clients.push({ quit: () => nr.quit().catch(() => {}) });
    await nr.subscribe("ch", (m: string) => got.get(2)!.push(m));
    await nr.pSubscribe("__keyspace@0__:*", (m: string, ch: string) => got.get(2)!.push(`${ch} ${m}`));
    expect(await nr.get("missing")).toBeNull(); // an ordinary reply among the pushes
    // Node 3: a raw RESP2 connection.
    const raw = await Stream.open(cluster.node(3).port);
    raw.send(["SUBSCRIBE", "ch"], ["PSUBSCRIBE", "__keyspace@0__:*"]);
    await raw.settle(2, 20);
    const rawMessages = () =>
      raw.frames
        .map((f) => decodeFlat(f))
        .filter((v): v is (string | number | null)[] => typeof v !== "string")
        .map((v) => (v[0] === "message" ? String(v[2]) : v[0] === "pmessage" ? `${v[2]} ${v[3]}` : null))
        .filter((x): x is string => x !== null);

    // Publishes and writes on every node, the followers' forwarded to the leader.
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const id = (i % 3) + 1;
      const m = `m${i}`;
      if (i % 5 === 4) {
        expect(await cluster.command(id, ["SET", `k${i}`, "v", "PX", "100000"])).toBe("+OK\r\n");
        sent.push(`__keyspace@0__:k${i} set`, `__keyspace@0__:k${i} expire`);
      } else {
        expect(await publish(cluster, id, m)).toBe(true);
        sent.push(m);
      }
    }
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000 && (got.get(1)!.length < sent.length || got.get(2)!.length < sent.length || rawMessages().length < sent.length)) await Bun.sleep(20);
    expect(got.get(1)).toEqual(sent);
    expect(got.get(2)).toEqual(sent);
    expect(rawMessages()).toEqual(sent);

    // kill -9 of the leader while publishing on the others: acknowledged messages reach every
    // surviving subscriber once and in order; unacknowledged ones (outcome unknown) at most once.
    const survivors = [1, 2, 3].filter((id) => id !== leader);
    const acked: string[] = [];
    const unknown: string[] = [];
    await cluster.kill(leader);
    const deadline = Date.now() + 20_000;
    for (let i = 0; (acked.length < 20 || i < 40) && Date.now() < deadline && i < 400; i++) {
      const m = `f${i}`;
      if (await publish(cluster, survivors[i % 2]!, m)) acked.push(m);
      else unknown.push(m);
      await Bun.sleep(10);
    }
    expect(acked.length).toBeGreaterThanOrEqual(20);
    const seen = (id: number) => (id === 3 ? rawMessages() : got.get(id)!).filter((m) => m.startsWith("f"));
    const t1 = Date.now();
    while (Date.now() - t1 < 10_000 && survivors.some((id) => acked.some((m) => !seen(id).includes(m)))) await Bun.sleep(20);
    for (const id of survivors) {
      const s = seen(id);
      expect(new Set(s).size).toBe(s.length); // once
      expect(s.filter((m) => acked.includes(m))).toEqual(acked); // every acknowledged one, in order
      for (const m of s) expect(acked.includes(m) || unknown.includes(m)).toBe(true);
      // One order on every survivor, unacknowledged ones included.
      expect(s).toEqual(seen(survivors[0]!));
    }
    raw.close();
  } finally {
    for (const c of clients) await c.quit().catch(() => {});
    await cluster.stop();
  }
}, 120_000);

/** kv.change records among a stream's frames, as "index event key value". */
function changeLines(s: Stream): string[] {
  return s.frames
    .map((f) => decodeFlat(f))
    .filter((v): v is (string | number | null)[] => typeof v !== "string" && v[0] === "kv.change")
    .map((v) => `${v[2]} ${v[3]} ${v[4]} ${v[5]}`);
}

test("KV.WATCH: every node numbers the changes alike; a watcher moves to another node through a leader kill with FROM and misses nothing", async () => {
  const cluster = await ProcCluster.start({ dir: tmp(), nodes: 3 });
  try {
    const leader = await cluster.waitLeader(15_000);
    const followers = [1, 2, 3].filter((id) => id !== leader);
    const probe = await RawResp.connect(cluster.node(leader).port);
    const [, idx] = await probe.call([["SET", "w:probe", "0"], ["KV.LASTINDEX"]]);
    probe.close();
    const from = Number(idx!.slice(1, -2)) + 1;
    // A reference watcher on each follower, from the same index.
    const refs = await Promise.all(followers.map((id) => Stream.open(cluster.node(id).port)));
    for (const r of refs) r.send(["KV.WATCH", "w:*", "FROM", String(from)]);
    // The moving watcher starts on the leader.
    let mover = await Stream.open(cluster.node(leader).port);
    mover.send(["KV.WATCH", "w:*", "FROM", String(from)]);
    // SETs, and every fourth write a DEL of the key the write before set; returns the SETs acknowledged.
    const writeSome = async (n: number, tag: string, ids: number[]) => {
      let sets = 0;
      for (let i = 0; i < n; i++) {
        const del = i % 4 === 3;
        const r = await cluster.command(ids[i % ids.length]!, del ? ["DEL", `w:${(i - 1) % 5}`] : ["SET", `w:${i % 5}`, `${tag}${i}`], 3000);
        if (!del && r === "+OK\r\n") sets++;
      }
      return sets;
    };
    expect(await writeSome(30, "a", [1, 2, 3])).toBe(23);
    let t0 = Date.now();
    while (Date.now() - t0 < 10_000 && [mover, ...refs].some((s) => changeLines(s).length < 30)) await Bun.sleep(20);
    const got = changeLines(mover);
    expect(got.length).toBe(30);
    for (const r of refs) expect(changeLines(r)).toEqual(got); // the same records, indexes included, on every node
    const last = Number(got.at(-1)!.split(" ")[0]);
    await cluster.kill(leader);
    mover.kill();
    await cluster.waitLeader(20_000, followers);
    // Writes go on without the old leader; the watcher resumes on a follower from the index after its last.
    const acked = await writeSome(30, "b", followers);
    expect(acked).toBeGreaterThan(0);
    mover = await Stream.open(cluster.node(followers[0]!).port);
    mover.send(["KV.WATCH", "w:*", "FROM", String(last + 1)]);
    t0 = Date.now();
    const refAll = () => changeLines(refs[1]!);
    while (Date.now() - t0 < 10_000 && (refAll().length < 30 + acked || changeLines(mover).length < refAll().length - 30)) await Bun.sleep(20);
    const resumed = [...got, ...changeLines(mover)];
    expect(refAll().length).toBeGreaterThanOrEqual(30 + acked);
    expect(resumed).toEqual(refAll());
    expect(changeLines(refs[0]!)).toEqual(refAll());
    for (const s of [mover, ...refs]) s.close();
  } finally {
    await cluster.stop();
  }
}, 120_000);
