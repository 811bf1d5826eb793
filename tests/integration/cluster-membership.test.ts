// Membership with the compiled ./kv: `kv cluster up 3`, then `kv cluster add` twice (3 -> 4 -> 5)
// while a client writes (no error, no lost write), `kv cluster transfer`, a restart of node 1 with
// its original argv (whose --cluster names only the first three: the others' addresses come from
// raft-members.json, which followed the log), a promotion refused while the learner is behind, the
// removal of a follower (it stops serving and says why) and of the leader (it steps down, the rest
// elect, writes go on), and a removed node refusing to start again on its data.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { type Member, parseMembers } from "../../src/cli/cluster-members.ts";
import { isAlive, lockPid } from "../../src/cli/cluster-proc.ts";
import { createClient, ServerError } from "../../src/client/index.ts";
import { KV_BIN } from "../helpers/server.ts";
import { ProcCluster } from "../helpers/proc-cluster.ts";
import { tempDirs } from "../helpers/tmp.ts";
import { clusterCliHarness, freeBasePort, setWriter, until } from "../helpers/cluster-cli.ts";

const tempDir = tempDirs("kv-membership-proxy-");
afterAll(() => ProcCluster.stopAll());

const { started, clusterDir, kv } = clusterCliHarness("kv-membership-it-");

/** One call to one node (no retries elsewhere). */
async function ask(addr: string, argv: string[]): Promise<unknown> {
  const c = createClient({ addrs: addr, timeoutMs: 10_000, readRetriesMax: 0 });
  try {
    return await c.command(argv);
  } finally {
    c.destroy();
  }
}

async function members(addr: string): Promise<Member[]> {
  return parseMembers((await ask(addr, ["RAFT.MEMBERS"])) as never);
}

/** Every acknowledged write of `w` reads back on `addr`. */
async function expectAllThere(addr: string, prefix: string, acked: readonly number[]): Promise<void> {
  const c = createClient({ addrs: addr, timeoutMs: 10_000 });
  try {
    for (let at = 0; at < acked.length; at += 500) {
      const batch = acked.slice(at, at + 500);
      const got = await c.mget(batch.map((i) => `${prefix}:${i}`));
      expect(got).toEqual(batch.map(String));
    }
  } finally {
    c.destroy();
  }
}

describe("membership with the compiled binary", () => {
  test("grow 3 -> 4 -> 5 under writes, transfer, restart with the original argv; promote refused while behind; remove a follower and the leader", async () => {
    expect(existsSync(KV_BIN)).toBe(true);
    const dir = clusterDir();
    const base = freeBasePort(6);
    const addr = (id: number) => `127.0.0.1:${base + id - 1}`;

    // Small snapshots: the log is compacted before the new nodes join, so they catch up from a snapshot.
    const up = await kv("cluster", "up", "3", "--base-port", String(base), "--data-dir", dir, "--detach", "--snapshot-log-bytes", "8kb");
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    for (const n of readClusterFile(dir)!.nodes) started.push(n.pid);

    // ---- grow under writes: no error, no lost write
    const w1 = setWriter([addr(1), addr(2), addr(3)], "grow", { retryUncertain: false, maxWrites: 40_000, maxMs: 40_000 });
    await until("first writes", 20_000, async () => (w1.acked.length >= 400 ? true : undefined));
    for (const id of [4, 5]) {
      const r = await kv("cluster", "add", "--data-dir", dir);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`added node ${id} as a learner`);
      expect(r.stdout).toContain(`node ${id} is a voter: ${id} voters, 0 learners`);
      const n = readClusterFile(dir)!.nodes.find((x) => x.id === id)!;
      started.push(n.pid);
      expect([n.addr, n.peer]).toEqual([addr(id), `127.0.0.1:${base + id - 1 + 10_000}`]);
      expect(n.start).toContain("--join");
    }
    const before = w1.acked.length;
    await until("writes after the growth", 10_000, async () => (w1.acked.length >= before + 20 ? true : undefined));
    await w1.stop();
    expect(w1.errors).toEqual([]);
    // Every member, on every member: the new ones' addresses came through the log.
    for (const id of [1, 3, 5]) {
      const ms = await members(addr(id));
      expect(ms.map((m) => [m.id, m.addr, m.peer, m.voter])).toEqual([1, 2, 3, 4, 5].map((i) => [i, addr(i), `127.0.0.1:${base + i - 1 + 10_000}`, true]));
    }
    await expectAllThere(addr(5), "grow", w1.acked);
    await expectAllThere(addr(4), "grow", w1.acked);
    for (const id of [4, 5]) expect(readFileSync(join(dir, `n${id}`, "kv.log"), "utf8")).toMatch(/installed the leader's snapshot at index \d+/);

    // ---- transfer to a named node
    const t = await kv("cluster", "transfer", "5", "--data-dir", dir);
    expect(t.stderr).toBe("");
    expect(t.stdout).toContain("node 5 leads");
    expect((await members(addr(2))).filter((m) => m.leader).map((m) => m.id)).toEqual([5]);
    expect(((await ask(addr(5), ["ROLE"])) as unknown[])[0]).toBe("master");

    // ---- restart node 1 with its original argv (--cluster names nodes 1-3 only)
    const n1 = readClusterFile(dir)!.nodes[0]!;
    expect(n1.start.join(" ")).toContain(`--cluster 1=${addr(1)},2=${addr(2)},3=${addr(3)} `);
    const pid1 = lockPid(n1.dataDir)!;
    process.kill(pid1, "SIGTERM");
    await until("node 1 stopped", 15_000, async () => (isAlive(pid1) ? undefined : true));
    const fd = openSync(n1.log, "a");
    const p1 = Bun.spawn(n1.start, { cwd: n1.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true });
    closeSync(fd);
    p1.unref();
    started.push(p1.pid);
    await until("node 1 answers", 10_000, async () => ((await ask(addr(1), ["PING"])) === "PONG" ? true : undefined));
    expect(await ask(addr(1), ["RAFT.TRANSFER", "1"])).toBe("OK");
    // As the leader, node 1 replicates to nodes 4 and 5: it knows their peer addresses.
    expect(await ask(addr(1), ["SET", "after-restart", "1"])).toBe("OK");
    const ms1 = await until("node 1 replicating to 4 and 5", 10_000, async () => {
      const ms = await members(addr(1));
      return ms.every((m) => m.match > 0) && ms.find((m) => m.id === 1)!.leader ? ms : undefined;
    });
    expect(ms1.map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);
    expect(JSON.parse(readFileSync(join(n1.dataDir, "raft-members.json"), "utf8")).members.map((m: { id: number }) => m.id)).toEqual([1, 2, 3, 4, 5]);

    // ---- promote refused while the learner is behind (node 6 is added but never started)
    expect(await ask(addr(2), ["RAFT.ADD", "6", addr(6), `127.0.0.1:${base + 5 + 10_000}`])).toBe("OK");
    let refused: unknown;
    try {
      await ask(addr(3), ["RAFT.PROMOTE", "6"]);
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(ServerError);
    expect((refused as ServerError).prefix).toBe("NOTREADY");
    expect((refused as ServerError).message).toMatch(/^NOTREADY node 6 is \d+ entries behind: its log matches up to index 0 of the leader's commit index \d+/);
    expect((await members(addr(4))).find((m) => m.id === 6)).toMatchObject({ voter: false, match: 0 });
    expect(await ask(addr(4), ["RAFT.REMOVE", "6"])).toBe("OK");
    expect((await members(addr(4))).map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);

    // ---- remove a follower: it stops serving and says why
    expect(await ask(addr(1), ["RAFT.REMOVE", "2"])).toBe("OK");
    const why = await until("node 2 refusing clients", 10_000, async () => {
      try {
        await ask(addr(2), ["GET", "after-restart"]);
      } catch (e) {
        if (e instanceof ServerError && e.prefix === "REMOVED") return e.message;
      }
      return undefined;
    });
    expect(why).toMatch(/^REMOVED node 2 was removed from cluster kv-[0-9a-f]+ at log index \d+: it serves no more/);
    expect(readFileSync(join(dir, "n2", "kv.log"), "utf8")).toMatch(/node 2 was removed from cluster .* at log index \d+: it serves no more/);

    // ---- remove the leader (node 1) while writes go through nodes 3, 4 and 5
    const w2 = setWriter([addr(3), addr(4), addr(5)], "shrink", { retryUncertain: true, maxWrites: 40_000, maxMs: 40_000 });
    await until("writes before the removal", 10_000, async () => (w2.acked.length >= 20 ? true : undefined));
    expect(await ask(addr(1), ["RAFT.REMOVE", "1"])).toBe("OK");
    const leader = await until("a new leader", 10_000, async () => {
      const ms = await members(addr(3));
      const l = ms.find((m) => m.leader);
      return l !== undefined && l.id !== 1 && ms.length === 3 ? l.id : undefined;
    });
    expect([3, 4, 5]).toContain(leader);
    const atRemoval = w2.acked.length;
    await until("writes after the removal", 15_000, async () => (w2.acked.length >= atRemoval + 50 ? true : undefined));
    await w2.stop();
    expect(w2.errors).toEqual([]);
    await expectAllThere(addr(leader === 3 ? 4 : 3), "shrink", w2.acked);
    await until("node 1 refusing clients", 10_000, async () => {
      try {
        await ask(addr(1), ["PING"]);
      } catch (e) {
        if (e instanceof ServerError && e.prefix === "REMOVED") return true;
      }
      return undefined;
    });

    // ---- kv cluster remove: the member goes, its process is stopped, cluster.json forgets it
    const pid5 = readClusterFile(dir)!.nodes.find((n) => n.id === 5)!.pid;
    const rm = await kv("cluster", "remove", "5", "--data-dir", dir);
    expect(rm.stderr).toBe("");
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain("removed node 5 from the cluster");
    expect(isAlive(pid5)).toBe(false);
    expect(readClusterFile(dir)!.nodes.map((n) => n.id)).toEqual([1, 2, 3, 4]);
    expect(readClusterFile(dir)!.removed).toEqual([5]);
    expect((await members(addr(3))).map((m) => [m.id, m.voter])).toEqual([[3, true], [4, true]]);
    expect(await ask(addr(4), ["SET", "after-remove", "1"])).toBe("OK");

    // ---- a removed node does not start again on its data, and says why
    // (Its log is closed once it stopped taking part, so its LOCK no longer names it: the pid `up` recorded.)
    const pid2 = readClusterFile(dir)!.nodes[1]!.pid;
    expect(isAlive(pid2)).toBe(true);
    process.kill(pid2, "SIGTERM");
    await until("node 2 stopped", 15_000, async () => (isAlive(pid2) ? undefined : true));
    const again = Bun.spawnSync(readClusterFile(dir)!.nodes[1]!.start, { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr.toString()).toContain("node 2 was removed from cluster");
  }, 60_000);

  test("a follower cut off while it is removed learns of it from a member, and does not disturb the leader", async () => {
    const cluster = await ProcCluster.start({ dir: tempDir(), nodes: 3 });
    try {
      const leader = await cluster.waitLeader(10_000);
      const f = [1, 2, 3].find((id) => id !== leader)!;
      const port = (id: number) => cluster.node(id).port;
      // Cut off: it never receives the entry that removes it, nor its commit.
      cluster.isolate(f);
      expect(await ask(`127.0.0.1:${port(leader)}`, ["RAFT.REMOVE", String(f)])).toBe("OK");
      const term = (await cluster.info(leader))!.raft_term;
      cluster.heal();
      // The leader no longer sends to it: it learns of its removal by asking a member (KV.PEER -> REMOVED).
      const why = await until("the removed node refusing clients", 15_000, async () => {
        try {
          await ask(`127.0.0.1:${port(f)}`, ["GET", "k"]);
        } catch (e) {
          if (e instanceof ServerError && e.prefix === "REMOVED") return e.message;
        }
        return undefined;
      });
      expect(why).toMatch(new RegExp(`^REMOVED node ${f} was removed from cluster \\S+ at log index \\d+`));
      const log = readFileSync(cluster.node(f).logFile, "utf8");
      expect(log).toMatch(/node \d+ says this node was removed/);
      // It disturbed nobody: same leader, same term, and the two members go on.
      const info = (await cluster.info(leader))!;
      expect([info.raft_role, info.raft_term, info.raft_voters]).toEqual(["leader", term, [1, 2, 3].filter((id) => id !== f).join(",")]);
      expect(await ask(`127.0.0.1:${port(leader)}`, ["SET", "k", "v"])).toBe("OK");
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
