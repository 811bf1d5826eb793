// src/node/backup.ts in process: --force-new-cluster's rewrite of a data dir (the state from the
// snapshot and every log entry, committed or not; one voter; a new cluster id; the others removed),
// and the backup file's checks.
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeConfChange, type Entry } from "../../src/raft/types.ts";
import { RaftLog } from "../../src/storage/raft-log.ts";
import { saveMembers } from "../../src/node/cluster-node.ts";
import { nodeIo } from "../../src/storage/index.ts";
import { decodeSnapshotMeta, encodeCommandEntry } from "../../src/node/kv-payload.ts";
import { BackupError, encodeBackupHeader, forceNewCluster, readBackupHeader } from "../../src/node/backup.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-backup-node-");
const members = [1, 2, 3].map((id) => ({ id, addr: `127.0.0.1:${7000 + id}`, peer: `127.0.0.1:${17000 + id}` }));

/** A member's data dir: 3 bootstrap entries, then SET k<i> for i in 1..n at term 2, the durable commit at `commit`. */
async function memberDir(n: number, commit: number): Promise<string> {
  const dir = tempDir();
  const log_ = await RaftLog.open({ dataDir: dir, fsync: "always" });
  const entries: Entry[] = members.map((m, i) => ({ index: i + 1, term: 1, type: "conf-change", data: encodeConfChange({ type: "add-voter", node: m.id }) }));
  for (let i = 1; i <= n; i++) {
    const argv = i === 2 ? ["SET", `k${i}`, `v${i}`, "PX", "1000000000"] : ["SET", `k${i}`, `v${i}`];
    entries.push({ index: 3 + i, term: 2, type: "normal", data: encodeCommandEntry(argv, 1_700_000_000_000 + i) });
  }
  await log_.persist({ hardState: { term: 2, vote: 1, commit }, entries, snapshot: undefined });
  await log_.close();
  saveMembers(nodeIo, dir, { clusterId: "kv-old", members });
  return dir;
}

describe("--force-new-cluster", () => {
  test("keeps every entry of the log (past the durable commit too), one voter, a new cluster id, the others removed", async () => {
    const dir = await memberDir(10, 9); // commit 9: entries 10..13 (k7..k10) are past it
    const r = await forceNewCluster(dir, 2);
    expect(r).toMatchObject({ previousClusterId: "kv-old", index: 13, term: 2, keys: 10, keptPastCommit: 4, dropped: [1, 3] });
    expect(r.clusterId).not.toBe("kv-old");
    const m = JSON.parse(readFileSync(join(dir, "raft-members.json"), "utf8"));
    expect(m).toEqual({ clusterId: r.clusterId, members: [members[1]], removed: [{ id: 1, index: 13 }, { id: 3, index: 13 }] });

    const log_ = await RaftLog.open({ dataDir: dir, fsync: "always" });
    try {
      expect(log_.initialState().confState).toEqual({ voters: [2], learners: [] });
      expect(log_.initialState().hardState).toEqual({ term: 2, vote: 1, commit: 13 });
      expect(log_.snapshot().meta.index).toBe(13);
      expect(log_.lastIndex()).toBe(13);
      const snap = log_.snapshots.loadNewest()!;
      const keys = new Map<string, unknown>();
      for (const [k, v, e] of snap.entries()) keys.set(k, [v, e]);
      expect(keys.size).toBe(10);
      expect(keys.get("k10")).toEqual(["v10", undefined]);
      expect(keys.get("k2")).toEqual(["v2", 1_700_000_000_002 + 1_000_000_000]);
      expect(decodeSnapshotMeta(snap.meta)).toMatchObject({ appliedMs: 1_700_000_000_010 });
    } finally {
      await log_.close();
    }
  });

  test("refuses a dir of another node or with no cluster", async () => {
    const dir = await memberDir(2, 5);
    await expect(forceNewCluster(dir, 4)).rejects.toThrow("node 4 is not a member of the cluster");
    await expect(forceNewCluster(tempDir(), 1)).rejects.toThrow("holds no cluster");
  });
});

describe("backup file header", () => {
  const h = { clusterId: "kv-x", index: 42, term: 3, members, node: 1, takenAtMs: 1, snapshotBytes: 5, snapshotCrc32: 0 };
  test("reads back; a changed header byte or a wrong length is refused", () => {
    const dir = tempDir();
    const good = Buffer.concat([encodeBackupHeader(h), Buffer.from("12345")]);
    writeFileSync(join(dir, "a"), good);
    expect(readBackupHeader(join(dir, "a")).header).toEqual(h);
    const bad = Buffer.from(good);
    bad[bad.indexOf('"index":42') + 9] = 0x33; // 42 -> 43
    writeFileSync(join(dir, "b"), bad);
    expect(() => readBackupHeader(join(dir, "b"))).toThrow(BackupError);
    expect(() => readBackupHeader(join(dir, "b"))).toThrow("its header's checksum does not match");
    writeFileSync(join(dir, "c"), good.subarray(0, good.length - 1));
    expect(() => readBackupHeader(join(dir, "c"))).toThrow("it holds 4 bytes of snapshot, its header says 5 (truncated?)");
  });
});
