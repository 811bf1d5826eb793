// A data dir written by kv before keys had revisions (snapshot format 3, meta of the applied time
// alone; made by tests/fixtures/make-cluster-v3.sh) starts with this kv: every key is there; a key
// from the old snapshot has the snapshot's index as its revision, a key written by the log after it
// the index of that entry; WATCH works; the next snapshot is format 4 and a restart keeps every
// revision.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, openSync, readdirSync, readSync, closeSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawResp } from "../helpers/resp-raw.ts";
import { startKv } from "../helpers/server.ts";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "cluster-v3.tar.gz");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fixtureCopy(): string {
  const d = mkdtempSync(join(tmpdir(), "kv-rev-upgrade-"));
  dirs.push(d);
  const r = Bun.spawnSync(["tar", "-xzf", FIXTURE, "-C", d], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`tar: ${r.stderr}`);
  return join(d, "data");
}

/** The newest snapshot file's index and format version. */
function newestSnapshot(dataDir: string): { index: number; version: number } {
  const names = readdirSync(join(dataDir, "snap")).filter((n) => /^\d{20}\.snap$/.test(n)).sort();
  const name = names[names.length - 1]!;
  const fd = openSync(join(dataDir, "snap", name), "r");
  const b = Buffer.alloc(12);
  readSync(fd, b, 0, 12, 0);
  closeSync(fd);
  return { index: Number(name.slice(0, 20)), version: b.readUInt32LE(8) };
}

const int = (r: string | undefined): number => {
  if (r === undefined || !r.startsWith(":")) throw new Error(`not an integer reply: ${JSON.stringify(r)}`);
  return Number(r.slice(1, -2));
};

test("a format 3 data dir: values kept, revisions from the snapshot's index and the log, WATCH works, format 4 after, restart keeps revisions", async () => {
  const dataDir = fixtureCopy();
  const old = newestSnapshot(dataDir);
  expect(old.version).toBe(3);
  const keys = [...Array.from({ length: 25 }, (_, i) => `k${i}`), "far"];
  let node = await startKv([], { dataDir });
  let revs: number[];
  try {
    const c = await RawResp.connect(node.port);
    try {
      const values = await c.call(keys.map((k) => ["GET", k]));
      expect(values).toEqual(keys.map((k, i) => (k === "far" ? "$1\r\nx\r\n" : `$${String(i).length + 1}\r\n${i < 5 ? "w" : "v"}${i}\r\n`)));
      expect(await c.call([["EXISTS", "gone"]])).toEqual([":0\r\n"]);
      revs = (await c.call(keys.map((k) => ["KV.REV", k]))).map(int);
      // k5..k19 and far come from the old snapshot: its index.
      for (const i of [...Array.from({ length: 15 }, (_, j) => j + 5), 25]) expect(revs[i], keys[i]).toBe(old.index);
      // k0..k4 then k20..k24 were written one entry each after it, in that order.
      const logged = [0, 1, 2, 3, 4, 20, 21, 22, 23, 24].map((i) => revs[i]!);
      expect(logged[0]).toBeGreaterThan(old.index);
      for (let j = 1; j < logged.length; j++) expect(logged[j]).toBe(logged[j - 1]! + 1);
      // WATCH works on the old keys (their revision is at most the state's).
      expect(await c.call([["WATCH", "k7"], ["MULTI"], ["SET", "k7", "t"], ["EXEC"]])).toEqual(["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"]);
      revs[7] = int((await c.call([["KV.REV", "k7"]]))[0]);
      expect(revs[7]).toBeGreaterThan(logged[logged.length - 1]!);
      expect(await c.call([["SAVE"]])).toEqual(["+OK\r\n"]);
    } finally {
      c.close();
    }
    expect(newestSnapshot(dataDir).version).toBe(4);
    await node.stop({ keepData: true });
    node = await startKv([], { dataDir });
    const d = await RawResp.connect(node.port);
    try {
      expect((await d.call(keys.map((k) => ["KV.REV", k]))).map(int)).toEqual(revs);
    } finally {
      d.close();
    }
  } finally {
    await node.stop();
  }
}, 60_000);
