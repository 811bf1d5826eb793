// A storage failure in the cluster runtime (ClusterNode over RaftLog), in process with injected
// I/O faults. The only voter of its group keeps serving reads with writes refused (as the old
// single-node log did); a member of a larger group stops (onFatal: the process exits) so that the
// others elect a leader and carry on.
import { afterAll, expect, test } from "bun:test";
import { ClusterError, ClusterNode } from "../../src/node/cluster-node.ts";
import type { Proposal } from "../../src/node/proposal.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { WalFailedError } from "../../src/storage/errors.ts";
import { RecordingIo } from "../../src/storage/testing.ts";
import { reservePorts } from "../helpers/proc-cluster.ts";
import { tempDirs } from "../helpers/tmp.ts";

const newDir = tempDirs("kv-cn-storage-");
const open: ClusterNode<string>[] = [];
afterAll(async () => {
  for (const n of open) await n.close().catch(() => {});
});

interface Outcomes {
  applied: Map<string, string>;
  failed: Map<string, Error>;
  fatal: unknown[];
}

async function openNode(id: number, dataDir: string, io: RecordingIo | undefined, members: { id: number; addr: string; peer: string }[], peerPort?: number): Promise<{ node: ClusterNode<string>; out: Outcomes }> {
  const node = await ClusterNode.open<string>({
    id,
    dataDir,
    fsync: "always",
    segmentBytesMax: 64 * 1024,
    snapshotLogBytes: 1 << 30,
    members,
    clusterId: "test",
    peerListen: peerPort === undefined ? undefined : { host: "127.0.0.1", port: peerPort },
    heartbeatMs: 30,
    electionMs: 300,
    io,
  });
  open.push(node);
  const out: Outcomes = { applied: new Map(), failed: new Map(), fatal: [] };
  const buf = new ReplyBuffer(64);
  node.replyTo = () => {
    buf.reset();
    return buf;
  };
  node.onApplied = (p: Proposal<string>) => out.applied.set(p.owner, Buffer.from(buf.view()).toString());
  node.onFailed = (batch, err) => {
    for (const p of batch) out.failed.set(p.owner, err);
  };
  node.onFatal = (err) => out.fatal.push(err);
  return { node, out };
}

async function until(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

const get = (node: ClusterNode<string>, key: string): string | null => {
  const out = new ReplyBuffer(64);
  node.fsm.read(["GET", key], Date.now(), out);
  const text = Buffer.from(out.view()).toString();
  return text.startsWith("$-1") ? null : text.split("\r\n")[1]!;
};

test("the only voter: a failed log write answers the writes in flight UNCERTAIN, refuses later ones (WalFailedError), keeps reads; a restart has every acknowledged write", async () => {
  const dir = newDir();
  const io = new RecordingIo();
  const self = [{ id: 1, addr: "127.0.0.1:1", peer: "127.0.0.1:2" }];
  const { node, out } = await openNode(1, dir, io, self);
  node.start();
  expect(await node.whenServing(5_000)).toBe(true);
  for (let i = 0; i < 20; i++) node.propose(["SET", `a${i}`, `v${i}`], Date.now(), `a${i}`);
  await until("the first writes", () => out.applied.size === 20);
  // Idle first: the commit index a tick writes alone is written, so the next log write is the batch's.
  await until("the commit index written", () => !node.node.persistInFlight && node.node.status().commit === node.applied);
  await Bun.sleep(100);

  io.failNext("write", "ENOSPC", { pathIncludes: "wal" });
  for (let i = 0; i < 10; i++) node.propose(["SET", `b${i}`, `w${i}`], Date.now(), `b${i}`);
  await until("the failed batch", () => out.failed.size === 10);
  expect(out.fatal).toEqual([]);
  expect(node.storageFailed?.code).toBe("ENOSPC");
  for (const err of out.failed.values()) {
    expect(err).toBeInstanceOf(ClusterError);
    expect((err as ClusterError).reply).toMatch(/^UNCERTAIN write outcome unknown: the log write failed \(.*ENOSPC/);
  }
  // Later writes are refused outright: never logged.
  node.propose(["SET", "c", "x"], Date.now(), "c");
  await until("the refused write", () => out.failed.has("c"));
  expect(out.failed.get("c")).toBeInstanceOf(WalFailedError);
  expect(out.applied.has("c")).toBe(false);
  // Reads are served locally, from the state applied before the failure.
  expect(node.readsLocal()).toBe(true);
  await node.readBarrier();
  for (let i = 0; i < 20; i++) expect(get(node, `a${i}`)).toBe(`v${i}`);
  for (let i = 0; i < 10; i++) expect(get(node, `b${i}`)).toBeNull();
  await expect(node.snapshot()).rejects.toThrow(/cannot be written since an earlier failure/);
  await node.close();

  const again = await openNode(1, dir, undefined, self);
  again.node.start();
  expect(await again.node.whenServing(5_000)).toBe(true);
  for (let i = 0; i < 20; i++) expect(get(again.node, `a${i}`)).toBe(`v${i}`);
  expect(get(again.node, "c")).toBeNull();
  again.node.propose(["SET", "d", "after"], Date.now(), "d");
  await until("a write after the restart", () => again.out.applied.has("d"));
  await again.node.close();
});

test("a member of a three-node group whose log write fails stops (onFatal); the other two elect a leader and keep writing", async () => {
  const { ports, release } = reservePorts(3);
  const members = [1, 2, 3].map((id, i) => ({ id, addr: `127.0.0.1:${id}`, peer: `127.0.0.1:${ports[i]}` }));
  release();
  const ios = [new RecordingIo(), new RecordingIo(), new RecordingIo()];
  const nodes = await Promise.all(members.map((m, i) => openNode(m.id, newDir(), ios[i], members, ports[i])));
  for (const n of nodes) n.node.start();
  await until("a leader", () => nodes.some((n) => n.node.isLeader()));
  const li = nodes.findIndex((n) => n.node.isLeader());
  const leader = nodes[li]!;
  leader.node.propose(["SET", "k1", "v1"], Date.now(), "k1");
  await until("k1 applied", () => leader.out.applied.has("k1"));

  ios[li]!.failNext("write", "EIO", { pathIncludes: "wal" });
  leader.node.propose(["SET", "k2", "v2"], Date.now(), "k2");
  await until("the leader to stop", () => leader.out.fatal.length > 0);
  expect(String(leader.out.fatal[0])).toMatch(/EIO/);
  expect(leader.node.storageFailed?.code).toBe("EIO");
  // Logged before the failure (its outcome unknown), or refused unlogged when a write of the hard
  // state alone failed first.
  const k2 = leader.out.failed.get("k2");
  expect(k2 instanceof WalFailedError || (k2 instanceof ClusterError && /^UNCERTAIN /.test(k2.reply))).toBe(true);
  await leader.node.close(); // as the process exiting

  const rest = nodes.filter((_, i) => i !== li);
  for (const n of rest) expect(n.out.fatal).toEqual([]);
  await until("a new leader", () => rest.some((n) => n.node.isLeader()), 10_000);
  const next = rest.find((n) => n.node.isLeader())!;
  next.node.propose(["SET", "k3", "v3"], Date.now(), "k3");
  await until("k3 applied", () => next.out.applied.has("k3"));
  expect(get(next.node, "k1")).toBe("v1");
  for (const n of rest) await n.node.close();
}, 30_000);

test("a restart keeps values in the files it applies (the snapshot's, and plain SETs of the log up to the durable commit); reads and the next snapshot copy them", async () => {
  const dir = newDir();
  const self = [{ id: 1, addr: "127.0.0.1:1", peer: "127.0.0.1:2" }];
  const value = (i: number, tag: string) => `${tag}${i}:` + String.fromCharCode(i % 256, 0, 13, 10) + "x".repeat(i % 40);
  const want = new Map<string, string>();
  const first = await openNode(1, dir, undefined, self);
  first.node.start();
  expect(await first.node.whenServing(5_000)).toBe(true);
  const write = async (n: ClusterNode<string>, out: Outcomes, argv: string[]) => {
    const tag = `${argv.join(" ")}#${out.applied.size}`;
    n.propose(argv, Date.now(), tag);
    await until(tag, () => out.applied.has(tag));
  };
  for (let i = 0; i < 50; i++) {
    await write(first.node, first.out, ["SET", `k${i}`, value(i, "snap")]);
    want.set(`k${i}`, value(i, "snap"));
  }
  await first.node.snapshot();
  for (let i = 40; i < 80; i++) {
    await write(first.node, first.out, ["SET", `k${i}`, value(i, "log")]); // 30 new keys, 10 overwritten
    want.set(`k${i}`, value(i, "log"));
  }
  await write(first.node, first.out, ["SET", "ttl", "t", "PX", "100000000"]); // not a plain SET: applied as usual
  want.set("ttl", "t");
  await write(first.node, first.out, ["APPEND", "k0", "+"]);
  want.set("k0", want.get("k0")! + "+");
  await first.node.close();

  const again = await openNode(1, dir, undefined, self);
  const db = again.node.fsm.db;
  again.node.start();
  expect(await again.node.whenServing(5_000)).toBe(true);
  expect(again.node.recovery.snapshotEntries).toBe(50);
  expect(db.hasLazyValues()).toBe(true);
  // By reference: 39 snapshot values not overwritten (k0 was appended to, k40..k49 overwritten)
  // plus the 40 plain SETs of the log.
  expect(db.lazyRefCount()).toBe(39 + 40);
  for (const [k, v] of want) {
    const out = new ReplyBuffer(64);
    again.node.fsm.read(["GET", k], Date.now(), out);
    expect(Buffer.from(out.view()).toString("latin1")).toBe(`$${Buffer.byteLength(v, "latin1")}\r\n${v}\r\n`);
  }
  expect(db.lazyRefCount()).toBe(0); // every value read is a string now
  await write(again.node, again.out, ["SET", "after", "1"]);
  await again.node.snapshot();
  expect(db.hasLazyValues()).toBe(false);
  await again.node.close();
});
