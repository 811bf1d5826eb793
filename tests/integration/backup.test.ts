// Backup and disaster recovery with the compiled ./kv: `kv backup` of a node taking writes,
// `kv restore` into a new dir and `kv serve` on it (every write acknowledged before the backup
// command is there with its TTL, nothing after the backup's index), damaged backups refused; and a
// 3-node cluster that loses two nodes for good, its survivor restarted with --force-new-cluster
// (it serves every acknowledged write, reads and writes), grown again with `kv cluster add`, and
// not disturbed by an old member coming back.
import { describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { parseMembers } from "../../src/cli/cluster-members.ts";
import { isAlive, lockPid } from "../../src/cli/cluster-proc.ts";
import { createClient } from "../../src/client/index.ts";
import { KV_BIN } from "../helpers/server.ts";
import { parseInfo, reservePorts } from "../helpers/proc-cluster.ts";
import { clusterCliHarness, freeBasePort, setWriter, until } from "../helpers/cluster-cli.ts";

const { started, clusterDir, tempRoot, kv } = clusterCliHarness("kv-backup-it-");

/** Starts `kv serve` (its output to `log`); resolves once it answers PING. */
async function serve(argv: string[], log: string, addr: string): Promise<number> {
  const fd = openSync(log, "a");
  const p = Bun.spawn([KV_BIN, "serve", ...argv], { stdin: "ignore", stdout: fd, stderr: fd, env: { ...process.env, NO_COLOR: "1" } });
  closeSync(fd);
  started.push(p.pid);
  await until(`${addr} answers`, 15_000, async () => ((await ask(addr, ["PING"])) === "PONG" ? true : undefined));
  return p.pid;
}

async function ask(addr: string, argv: string[]): Promise<unknown> {
  const c = createClient({ addrs: addr, timeoutMs: 10_000, readRetriesMax: 0 });
  try {
    return await c.command(argv);
  } finally {
    c.destroy();
  }
}

async function info(addr: string): Promise<Record<string, string>> {
  return parseInfo(String(await ask(addr, ["INFO", "raft"])));
}

const ttlOf = (i: number) => 10_000 + (i % 1000);

/** Every acknowledged write reads back on `addr` with its value and a TTL it may have spent at most `spentS` of. */
async function expectAllThere(addr: string, prefix: string, acked: readonly number[], spentS: number): Promise<void> {
  const c = createClient({ addrs: addr, timeoutMs: 10_000 });
  try {
    for (let at = 0; at < acked.length; at += 500) {
      const batch = acked.slice(at, at + 500);
      expect(await c.mget(batch.map((i) => `${prefix}:${i}`))).toEqual(batch.map(String));
    }
    for (let at = 0; at < acked.length; at += Math.max(1, Math.floor(acked.length / 50))) {
      const i = acked[at]!;
      const ttl = Number(await c.command(["TTL", `${prefix}:${i}`]));
      expect(ttl).toBeLessThanOrEqual(ttlOf(i));
      expect(ttl).toBeGreaterThanOrEqual(ttlOf(i) - spentS);
    }
  } finally {
    c.destroy();
  }
}

describe("backup and restore", () => {
  test("a backup taken during writes restores every write acknowledged before it, with its TTL, and nothing after its index; damaged backups are refused", async () => {
    expect(existsSync(KV_BIN)).toBe(true);
    const root = tempRoot();
    const t0 = Date.now();
    const ports = reservePorts(2);
    const [p1, p2] = ports.ports as [number, number];
    ports.release();
    const a1 = `127.0.0.1:${p1}`;
    const a2 = `127.0.0.1:${p2}`;
    await serve(["--port", String(p1), "--data-dir", join(root, "src"), "--snapshot-log-bytes", "64kb"], join(root, "src.log"), a1);
    expect(await ask(a1, ["SET", "persistent", "p"])).toBe("OK");
    expect(await ask(a1, ["SET", "gone-before", "x"])).toBe("OK");
    expect(await ask(a1, ["DEL", "gone-before"])).toBe(1);
    // The writes' log indexes follow the applied index now: one entry per SET, nothing else in between.
    const base = Number((await info(a1)).raft_applied_index);
    const revPersistent = await ask(a1, ["KV.REV", "persistent"]);
    expect(revPersistent).toBeGreaterThan(0);

    const w = setWriter([a1], "w", { retryUncertain: true, ttl: ttlOf, maxWrites: 20_000, maxMs: 30_000 });
    await until("writes before the backup", 20_000, async () => (w.acked.length >= 300 ? true : undefined));
    const ackedBefore = w.acked.length;
    const file = join(root, "b.kvb");
    const b = await kv("backup", "--addr", a1, file);
    const ackedAfter = w.acked.length;
    await until("writes after the backup", 20_000, async () => (w.acked.length >= ackedAfter + 100 ? true : undefined));
    await w.stop();
    expect(w.errors).toEqual([]);
    expect(b.stderr).toBe("");
    expect(b.code).toBe(0);
    const m = /backup of cluster (\S+) at index (\d+) \(term (\d+)\) from node 1: (\d+) bytes/.exec(b.stdout);
    expect(m).not.toBeNull();
    const index = Number(m![2]);
    expect(existsSync(`${file}.partial`)).toBe(false);

    // ---- restore into a new dir and serve it
    const dir = join(root, "restored");
    const r = await kv("restore", file, "--data-dir", dir, "--port", String(p2));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`at index ${index} (term ${m![3]}) into ${dir} as node 1 of new cluster`);
    const newId = JSON.parse(readFileSync(join(dir, "raft-members.json"), "utf8")).clusterId as string;
    expect(newId).not.toBe(m![1]);
    await serve(["--port", String(p2), "--data-dir", dir], join(root, "restored.log"), a2);
    const i2 = await info(a2);
    expect(i2.raft_cluster_id).toBe(newId);
    // The restored node starts at the backup's index: its first entry (the new leader's) comes next.
    expect(Number(i2.raft_applied_index)).toBe(index + 1);
    expect(i2.raft_voters).toBe("1");
    // Every write acknowledged before `kv backup` started is there, with its TTL.
    await expectAllThere(a2, "w", w.acked.slice(0, ackedBefore), Math.ceil((Date.now() - t0) / 1000) + 1);
    // The writes restored are exactly those up to the backup's index: w:0 .. w:(index - base - 1).
    const restored = index - base;
    expect(restored).toBeGreaterThanOrEqual(ackedBefore);
    // One write at a time: the snapshot came before the backup command ended, with at most one write in flight.
    expect(restored).toBeLessThanOrEqual(ackedAfter + 1);
    const keys = ((await ask(a2, ["KEYS", "w:*"])) as string[]).map((k) => Number(k.slice(2))).sort((x, y) => x - y);
    expect(keys).toEqual(Array.from({ length: restored }, (_, i) => i));
    expect(await ask(a2, ["GET", "persistent"])).toBe("p");
    expect(await ask(a2, ["TTL", "persistent"])).toBe(-1);
    expect(await ask(a2, ["EXISTS", "gone-before"])).toBe(0);
    expect(await ask(a2, ["DBSIZE"])).toBe(restored + 1);
    // Revisions come through the backup: each key's is the index of the SET that wrote it.
    expect(await ask(a2, ["KV.REV", "persistent"])).toBe(revPersistent);
    expect(await ask(a2, ["KV.REV", "w:0"])).toBe(base + 1);
    expect(await ask(a2, ["KV.REV", `w:${restored - 1}`])).toBe(index);
    // It takes writes.
    expect(await ask(a2, ["SET", "after-restore", "1"])).toBe("OK");
    expect(await ask(a2, ["GET", "after-restore"])).toBe("1");

    // ---- refused: a dir that is not empty
    const again = await kv("restore", file, "--data-dir", dir);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("is not empty: kv restore seeds a new node's data dir only");

    // ---- refused: damaged backups; the dir is left as it was (absent, or empty)
    const bytes = readFileSync(file);
    const damaged: [string, Buffer, string][] = [];
    const body = Buffer.from(bytes);
    body[bytes.length - 100] = body[bytes.length - 100]! ^ 0x20;
    damaged.push(["body", body, "is damaged: its snapshot's checksum does not match"]);
    const head = Buffer.from(bytes);
    const at = head.indexOf('"index":') + 8;
    head[at] = head[at] === 0x39 ? 0x38 : head[at]! + 1;
    damaged.push(["header", head, "is damaged: its header's checksum does not match"]);
    damaged.push(["truncated", bytes.subarray(0, bytes.length - 4096), "is damaged: it holds"]);
    damaged.push(["not a backup", Buffer.from("hello\n"), "is not a kv backup"]);
    for (const [name, content, message] of damaged) {
      const f = join(root, `damaged-${name.replace(/ /g, "-")}.kvb`);
      writeFileSync(f, content);
      const d = join(root, `from-${name.replace(/ /g, "-")}`);
      const res = await kv("restore", f, "--data-dir", d);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain(`kv restore: ${f} ${message}`);
      expect(existsSync(d)).toBe(false);
    }
    const empty = join(root, "empty");
    mkdirSync(empty);
    const res = await kv("restore", join(root, "damaged-body.kvb"), "--data-dir", empty);
    expect(res.code).toBe(2);
    expect(readdirSync(empty)).toEqual([]);
  }, 60_000);
});

describe("disaster recovery", () => {
  test("a 3-node cluster loses two nodes for good; the third, restarted with --force-new-cluster, serves every acknowledged write and grows again", async () => {
    const dir = clusterDir();

    const base = freeBasePort(4);
    const addr = (id: number) => `127.0.0.1:${base + id - 1}`;
    const t0 = Date.now();
    const up = await kv("cluster", "up", "3", "--base-port", String(base), "--data-dir", dir, "--detach");
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    for (const n of readClusterFile(dir)!.nodes) started.push(n.pid);
    const oldId = readClusterFile(dir)!.clusterId;

    const w = setWriter([addr(1), addr(2), addr(3)], "d", { retryUncertain: true, ttl: ttlOf, maxWrites: 20_000, maxMs: 30_000 });
    await until("writes", 20_000, async () => (w.acked.length >= 500 ? true : undefined));
    await w.stop();
    expect(w.errors).toEqual([]);

    // The survivor is a follower: the leader (its data gone) and the other follower are lost.
    const leader = Number((await info(addr(1))).raft_leader_id);
    const survivor = leader === 1 ? 2 : 1;
    const file = readClusterFile(dir)!;
    for (const n of file.nodes) {
      const pid = lockPid(n.dataDir)!;
      process.kill(pid, "SIGKILL");
      await until(`${n.name} killed`, 5_000, async () => (isAlive(pid) ? undefined : true));
      if (n.id === leader) rmSync(n.dataDir, { recursive: true, force: true });
    }
    const sn = file.nodes.find((n) => n.id === survivor)!;

    // Restarted with its usual argv and --force-new-cluster.
    const fd = openSync(sn.log, "a");
    const p = Bun.spawn([...sn.start, "--force-new-cluster"], { cwd: sn.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true });
    closeSync(fd);
    p.unref();
    started.push(p.pid);
    await until("the survivor answers", 15_000, async () => ((await ask(addr(survivor), ["PING"])) === "PONG" ? true : undefined));
    const log = readFileSync(sn.log, "utf8");
    expect(log).toMatch(new RegExp(`--force-new-cluster: node ${survivor} left cluster ${oldId} and is now the only member of new cluster (\\S+), at log index \\d+`));
    const members = JSON.parse(readFileSync(join(sn.dataDir, "raft-members.json"), "utf8")) as { clusterId: string; members: { id: number }[]; removed: { id: number }[] };
    expect(members.clusterId).not.toBe(oldId);
    expect(members.members.map((m) => m.id)).toEqual([survivor]);
    expect(members.removed.map((r) => r.id).sort()).toEqual([1, 2, 3].filter((i) => i !== survivor));
    await until("the survivor leads", 10_000, async () => ((await info(addr(survivor))).raft_role === "leader" ? true : undefined));
    expect(parseMembers((await ask(addr(survivor), ["RAFT.MEMBERS"])) as never).map((m) => [m.id, m.voter])).toEqual([[survivor, true]]);
    await expectAllThere(addr(survivor), "d", w.acked, Math.ceil((Date.now() - t0) / 1000) + 1);
    expect(await ask(addr(survivor), ["SET", "after-force", "1"])).toBe("OK");

    // Grown again: node 4 joins the new cluster and gets everything.
    const add = await kv("cluster", "add", "--data-dir", dir);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.stdout).toContain(`the cluster's id is now ${members.clusterId}`);
    expect(add.stdout).toContain("node 4 is a voter: 2 voters, 0 learners");
    started.push(readClusterFile(dir)!.nodes.find((n) => n.id === 4)!.pid);
    await expectAllThere(addr(4), "d", w.acked, Math.ceil((Date.now() - t0) / 1000) + 1);
    expect(await ask(addr(4), ["GET", "after-force"])).toBe("1");

    // An old member coming back with its old data cannot join or disturb the new cluster.
    const lost = file.nodes.find((n) => n.id !== survivor && n.id !== leader)!;
    const ofd = openSync(lost.log, "a");
    const old = Bun.spawn(lost.start, { cwd: lost.cwd, stdin: "ignore", stdout: ofd, stderr: ofd, detached: true });
    closeSync(ofd);
    old.unref();
    started.push(old.pid);
    // It dials the survivor with the old cluster id and is refused at the handshake.
    await until("the old member refused", 10_000, async () =>
      readFileSync(sn.log, "utf8").includes(`peer ${lost.id} is of cluster "${oldId}", this node of "${members.clusterId}"`) ? true : undefined,
    );
    expect(await ask(addr(survivor), ["SET", "with-old-back", "1"])).toBe("OK");
    expect((await info(addr(survivor))).raft_role).toBe("leader");
    expect(parseMembers((await ask(addr(survivor), ["RAFT.MEMBERS"])) as never).map((m) => m.id).sort()).toEqual([survivor, 4].sort());
    expect(await ask(addr(4), ["GET", "with-old-back"])).toBe("1");
  }, 60_000);
});
