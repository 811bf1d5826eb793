// A data dir written by kv before a single node ran as a one-member Raft group (the fixture was
// made with that kv: tests/fixtures/make-single-node-v1.sh) is converted on the first start, once
// and crash-safely; every key and TTL is kept; writes and restarts work after; kv repair works on
// the runtime's log.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "../../src/client/index.ts";
import { KV_BIN, startKv } from "../helpers/server.ts";

const FIXTURE = join(import.meta.dir, "..", "fixtures", "single-node-v1.tar.gz");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh copy of the fixture's data dir. */
function fixtureCopy(): string {
  const d = mkdtempSync(join(tmpdir(), "kv-conv-"));
  dirs.push(d);
  const r = Bun.spawnSync(["tar", "-xzf", FIXTURE, "-C", d], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`tar: ${r.stderr}`);
  return join(d, "data");
}

function client(port: number): Client {
  return createClient({ addrs: [`127.0.0.1:${port}`], timeoutMs: 5000, failFast: true });
}

const FAR = 4102444800000; // 2100-01-01, as the fixture set it

/** Every key the fixture's script left, with its value and TTL. */
async function checkFixtureData(c: Client): Promise<void> {
  for (let i = 0; i < 60; i++) expect(await c.get(`k${i}`)).toBe(i < 10 ? `w${i}` : `v${i}`);
  expect(await c.get("far")).toBe("x");
  expect(await c.command(["PEXPIRETIME", "far"])).toBe(FAR); // from the old snapshot
  expect(await c.get("far2")).toBe("y");
  expect(await c.command(["PEXPIRETIME", "far2"])).toBe(FAR); // from the old log
  expect(await c.get("pexp")).toBe("p");
  expect(await c.command(["PEXPIRETIME", "pexp"])).toBe(FAR + 123);
  expect(await c.command(["PEXPIRETIME", "k0"])).toBe(-1);
  expect(await c.get("short")).toBeNull(); // expired
  expect(await c.get("gone")).toBeNull(); // deleted after the old snapshot
  expect(await c.get("n")).toBe("5");
  expect(Buffer.from((await c.getBuffer("bin"))!)).toEqual(Buffer.from([0x61, 0, 13, 10, 0xff]));
  // k0..k59, far, far2, pexp, n, bin
  expect(await c.dbsize()).toBe(65);
}

test("the first start converts the old format once: every key and TTL is there, writes and restarts work", async () => {
  const dataDir = fixtureCopy();
  expect(existsSync(join(dataDir, "raft-members.json"))).toBe(false);
  let kv = await startKv([], { dataDir });
  expect(kv.output()).toMatch(
    /converted .* from the single-node format: snapshot at index 47 \(\d+ keys\) \+ 36 log records -> a one-member group \(node 1 the only voter\) from a snapshot at index 83 \(65 keys\)\n/,
  );
  expect(existsSync(join(dataDir, "raft-members.json"))).toBe(true);
  let c = client(kv.port);
  await checkFixtureData(c);
  await c.set("new", "after-conversion");
  await c.set("k0", "w0-2");
  await c.close();
  expect(await kv.stop()).toBe(0);

  kv = await startKv([], { dataDir });
  expect(kv.output()).not.toMatch(/converted/);
  c = client(kv.port);
  expect(await c.get("new")).toBe("after-conversion");
  expect(await c.get("k0")).toBe("w0-2");
  await c.set("k0", "w0");
  await c.del("new");
  await checkFixtureData(c);
  // A snapshot in the runtime's format, then one more restart.
  expect(await c.command(["SAVE"])).toBe("OK");
  await c.close();
  expect(await kv.stop()).toBe(0);
  kv = await startKv([], { dataDir });
  c = client(kv.port);
  await checkFixtureData(c);
  await c.close();
  expect(await kv.stop()).toBe(0);
});

test("killed after the new snapshot is written and before the membership file: the next start converts again, nothing lost", async () => {
  const dataDir = fixtureCopy();
  const p = Bun.spawn([KV_BIN, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dataDir], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", KV_TEST_KILL_IN_CONVERSION: "1" },
  });
  expect(await p.exited).not.toBe(0);
  expect(p.signalCode).toBe("SIGKILL");
  expect(existsSync(join(dataDir, "raft-members.json"))).toBe(false);
  // The runtime's snapshot is there, next to the old one.
  expect(readdirSync(join(dataDir, "snap")).filter((f) => f.endsWith(".snap")).sort()).toEqual(["00000000000000000047.snap", "00000000000000000083.snap"]);

  const kv = await startKv([], { dataDir });
  expect(kv.output()).toMatch(/converted .* at index 83 \(65 keys\); that snapshot was written by an interrupted conversion/);
  const c = client(kv.port);
  await checkFixtureData(c);
  await c.set("after", "1");
  await c.close();
  expect(await kv.stop()).toBe(0);
  const again = await startKv([], { dataDir });
  const c2 = client(again.port);
  expect(await c2.get("after")).toBe("1");
  await c2.del("after");
  await checkFixtureData(c2);
  await c2.close();
  expect(await again.stop()).toBe(0);
});

test("an old data dir given to a node of a larger group is refused with the way to convert it; nothing changes", async () => {
  const dataDir = fixtureCopy();
  const before = readdirSync(join(dataDir, "snap")).sort();
  const p = Bun.spawnSync([KV_BIN, "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dataDir, "--id", "1", "--cluster", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  expect(p.exitCode).not.toBe(0);
  expect(p.stdout.toString() + p.stderr.toString()).toContain(`holds the data of a single node written by an older kv: start it once without --cluster (kv serve --data-dir ${dataDir})`);
  expect(existsSync(join(dataDir, "raft-members.json"))).toBe(false);
  expect(readdirSync(join(dataDir, "snap")).sort()).toEqual(before);
});

test("kv repair on the runtime's log: a flipped bit in the last segment is cut there and the node starts on what is left", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "kv-conv-"));
  dirs.push(dataDir);
  let kv = await startKv(["--wal-segment-bytes", "4kb"], { dataDir });
  let c = client(kv.port);
  for (let i = 0; i < 200; i++) await c.set(`r${i}`, `v${i}`);
  await c.close();
  expect(await kv.stop()).toBe(0);
  const segs = readdirSync(join(dataDir, "wal")).filter((f) => f.endsWith(".seg")).sort();
  expect(segs.length).toBeGreaterThan(2);
  const last = join(dataDir, "wal", segs.at(-1)!);
  const bytes = readFileSync(last);
  bytes[40] = bytes[40]! ^ 0x10; // inside the first record of the last segment
  writeFileSync(last, bytes);

  const refused = Bun.spawnSync([KV_BIN, "serve", "--port", "0", "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  expect(refused.exitCode).toBe(2);
  const r = Bun.spawnSync([KV_BIN, "repair", "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  expect({ code: r.exitCode, err: r.stderr.toString() }).toEqual({ code: 0, err: "" });
  expect(r.stdout.toString()).toMatch(new RegExp(`wal/${segs.at(-1)!}: .* at offset \\d+ \\(index \\d+\\): truncated`));
  expect(r.stdout.toString()).toMatch(/repaired: the log now ends at index \d+/);

  kv = await startKv([], { dataDir });
  c = client(kv.port);
  const n = await c.dbsize();
  expect(n).toBeGreaterThan(0);
  expect(n).toBeLessThan(200);
  for (let i = 0; i < n; i++) expect(await c.get(`r${i}`)).toBe(`v${i}`); // a prefix of the writes
  await c.set("after-repair", "1");
  await c.close();
  expect(await kv.stop()).toBe(0);
  kv = await startKv([], { dataDir });
  c = client(kv.port);
  expect(await c.get("after-repair")).toBe("1");
  expect(await c.dbsize()).toBe(n + 1);
  await c.close();
  expect(await kv.stop()).toBe(0);
});
