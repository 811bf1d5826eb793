// Durability of the real binary: restarts, kill -9 during pipelined writes from several
// clients (every acknowledged write survives; MSET is all or nothing), torn and corrupt logs,
// snapshots, compaction and a corrupt newest snapshot.
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "../../src/client/index.ts";
import { KV_BIN, rawConnect, startKv } from "../helpers/server.ts";
import { prng } from "../helpers/prng.ts";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "kv-dur-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function client(port: number): Client {
  return createClient({ addrs: [`127.0.0.1:${port}`], timeoutMs: 5000, failFast: true });
}

function walFiles(dir: string): string[] {
  return readdirSync(join(dir, "wal")).filter((f) => f.endsWith(".seg")).sort();
}

describe("restart", () => {
  test("data survives a graceful restart, TTLs keep their absolute deadline", async () => {
    const dataDir = tempDir();
    let kv = await startKv([], { dataDir });
    let c = client(kv.port);
    await c.set("a", "1");
    await c.set("ttl", "x", { ex: 1000 });
    await c.command(["MSET", "m1", "x", "m2", "y"]);
    await c.incrBy("n", 41);
    await c.del("a");
    await c.set("bin", new Uint8Array([0, 13, 10, 255]));
    await c.close();
    expect(await kv.stop({ keepData: true })).toBe(0);

    kv = await startKv([], { dataDir });
    c = client(kv.port);
    expect(await c.get("a")).toBeNull();
    expect(await c.mget(["m1", "m2", "n"])).toEqual(["x", "y", "41"]);
    const ttl = await c.ttl("ttl");
    expect(ttl).toBeGreaterThan(990);
    expect(ttl).toBeLessThanOrEqual(1000);
    expect(Buffer.from((await c.getBuffer("bin"))!)).toEqual(Buffer.from([0, 13, 10, 255]));
    expect(kv.output()).toMatch(/loaded .*: snapshot at index 0 \(0 keys\) \+ 6 log records/);
    await c.close();
    await kv.stop();
  });
});

describe("kill -9 during pipelined writes", () => {
  const rounds = Number(process.env.KV_CRASH_ROUNDS ?? 20);
  const seed = Number(process.env.KV_DUR_SEED ?? Date.now() % 1_000_000);

  test(`${rounds} rounds: every acknowledged write is present with its value; MSET is all or nothing (seed ${seed})`, async () => {
    const rand = prng(seed);
    const dataDir = tempDir();
    const acked = new Map<string, string>(); // key -> value acknowledged
    const msets: { keys: string[]; value: string; acked: boolean }[] = [];
    for (let round = 0; round < rounds; round++) {
      const kv = await startKv(["--snapshot-log-bytes", "64kb", "--wal-segment-bytes", "32kb"], { dataDir });
      // Everything acknowledged before must have survived the previous kill.
      const check = client(kv.port);
      const keys = [...acked.keys()];
      for (let i = 0; i < keys.length; i += 500) {
        const part = keys.slice(i, i + 500);
        const got = await check.mget(part);
        for (let j = 0; j < part.length; j++) {
          if (got[j] !== acked.get(part[j]!)) {
            throw new Error(`seed ${seed} round ${round}: key ${part[j]} = ${got[j]}, acknowledged ${acked.get(part[j]!)}`);
          }
        }
      }
      for (const m of msets) {
        const got = await check.mget(m.keys);
        const all = got.every((v) => v === m.value);
        const none = got.every((v) => v === null);
        if (!(all || (none && !m.acked))) {
          throw new Error(`seed ${seed} round ${round}: MSET ${m.keys.join(",")} partially applied or lost: ${JSON.stringify(got)} (acked ${m.acked})`);
        }
      }
      await check.close();

      // Four writers pipelining SETs and MSETs; kill -9 at a random moment.
      let stop = false;
      const writers = Array.from({ length: 4 }, async (_, w) => {
        const c = client(kv.port);
        let i = 0;
        while (!stop && i < 100_000) {
          const batch: Promise<void>[] = [];
          for (let j = 0; j < 32; j++, i++) {
            const key = `r${round}:w${w}:k${i}`;
            const value = `v${i}:${"x".repeat(i % 40)}`;
            if (i % 10 === 0) {
              const m = { keys: [`${key}:a`, `${key}:b`, `${key}:c`], value, acked: false };
              msets.push(m);
              batch.push(
                c.command(["MSET", m.keys[0]!, value, m.keys[1]!, value, m.keys[2]!, value]).then(
                  () => {
                    m.acked = true;
                  },
                  () => {},
                ),
              );
            } else {
              batch.push(
                c.set(key, value).then(
                  () => {
                    acked.set(key, value);
                  },
                  () => {},
                ),
              );
            }
          }
          await Promise.all(batch);
        }
        c.destroy();
      });
      await Bun.sleep(50 + Math.floor(rand() * 250));
      kv.proc.kill("SIGKILL");
      await kv.proc.exited;
      stop = true;
      await Promise.all(writers);
      await kv.stop({ keepData: true });
    }
    expect(acked.size).toBeGreaterThan(rounds * 50);
    // Snapshots and compaction happened along the way.
    expect(readdirSync(join(dataDir, "snap")).some((f) => f.endsWith(".snap"))).toBe(true);
  }, 240_000);
});

describe("damaged logs", () => {
  async function seed(dataDir: string, n: number): Promise<void> {
    const kv = await startKv([], { dataDir });
    const c = client(kv.port);
    for (let i = 0; i < n; i++) await c.set(`k${i}`, `v${i}`);
    await c.close();
    await kv.stop({ keepData: true });
  }

  test("a torn tail (random bytes appended) is truncated with a warning; nothing acknowledged is lost", async () => {
    const dataDir = tempDir();
    await seed(dataDir, 50);
    const seg = join(dataDir, "wal", walFiles(dataDir).at(-1)!);
    appendFileSync(seg, Buffer.from([0x11, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]));
    const kv = await startKv([], { dataDir });
    expect(kv.output()).toMatch(/torn tail .* dropped 11 bytes/);
    const c = client(kv.port);
    expect(await c.get("k49")).toBe("v49");
    expect(await c.dbsize()).toBe(50);
    await c.close();
    await kv.stop();
  });

  test("a torn record in preallocated space: the warning tells the record's bytes from the zeros after them", async () => {
    const dataDir = tempDir();
    await seed(dataDir, 20);
    const seg = join(dataDir, "wal", walFiles(dataDir).at(-1)!);
    appendFileSync(seg, Buffer.concat([Buffer.from([0x11, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), Buffer.alloc(65536)]));
    const kv = await startKv([], { dataDir });
    // The torn record is the one after the last entry kept (the log also holds the group's
    // membership entry and each leader's first entry besides the 20 SETs).
    const last = Number(/loaded .*, last index (\d+),/.exec(kv.output())![1]);
    expect(last).toBeGreaterThanOrEqual(20);
    expect(kv.output()).toMatch(new RegExp(`torn tail .* dropped 11 bytes \\(1 incomplete record, from index ${last + 1}\\) and 65536 zero bytes after them \\(unused preallocated space\\)`));
    const c = client(kv.port);
    expect(await c.dbsize()).toBe(20);
    await c.close();
    await kv.stop();
  });

  test("a flipped bit in a middle record: refuses to start naming file and offset; kv repair cuts there", async () => {
    const dataDir = tempDir();
    await seed(dataDir, 50);
    const seg = join(dataDir, "wal", walFiles(dataDir).at(-1)!);
    const bytes = readFileSync(seg);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = bytes[mid]! ^ 0x04;
    writeFileSync(seg, bytes);

    const p = Bun.spawn([KV_BIN, "serve", "--port", "0", "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    const code = await p.exited;
    const text = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
    expect(code).toBe(2);
    expect(text).toContain(walFiles(dataDir).at(-1)!);
    expect(text).toMatch(/offset \d+/);
    expect(text).toContain(`kv repair --data-dir ${dataDir}`);

    const r = Bun.spawn([KV_BIN, "repair", "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(await r.exited).toBe(0);
    const report = await new Response(r.stdout).text();
    expect(report).toMatch(/dropped \d+ bytes/);

    const kv = await startKv([], { dataDir });
    const c = client(kv.port);
    const n = await c.dbsize();
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(50);
    // What survives is a prefix of the writes.
    for (let i = 0; i < n; i++) expect(await c.get(`k${i}`)).toBe(`v${i}`);
    await c.close();
    await kv.stop();
  });
});

describe("snapshots", () => {
  test("SAVE writes a snapshot, compacts the log, and a restart loads it; BGSAVE, LASTSAVE", async () => {
    const dataDir = tempDir();
    let kv = await startKv(["--wal-segment-bytes", "4kb"], { dataDir });
    let c = client(kv.port);
    for (let i = 0; i < 300; i++) await c.set(`s${i}`, `v${i}`);
    const segsBefore = walFiles(dataDir).length;
    expect(segsBefore).toBeGreaterThan(3);
    expect(await c.command(["SAVE"])).toBe("OK");
    for (let i = 300; i < 400; i++) await c.set(`s${i}`, `v${i}`);
    expect(await c.command(["SAVE"])).toBe("OK");
    // The log is kept back to the previous snapshot only.
    expect(walFiles(dataDir).length).toBeLessThan(segsBefore);
    expect(await c.command(["LASTSAVE"])).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(await c.command(["BGSAVE"])).toBe("Background saving started");
    await c.close();
    expect(await kv.stop({ keepData: true })).toBe(0);

    kv = await startKv([], { dataDir });
    expect(kv.output()).toMatch(/snapshot at index \d+ \(400 keys\)/);
    c = client(kv.port);
    expect(await c.dbsize()).toBe(400);
    expect(await c.get("s399")).toBe("v399");
    await c.close();
    await kv.stop();
  });

  test("a failed BGSAVE is logged with its reason and shown in INFO persistence; the next good one clears it", async () => {
    const dataDir = tempDir();
    const kv = await startKv([], { dataDir });
    const c = client(kv.port);
    const persistence = async () => {
      const text = String(await c.command(["INFO", "persistence"]));
      return Object.fromEntries(text.split("\r\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
    };
    const settled = async () => {
      for (let i = 0; i < 500; i++) {
        const p = await persistence();
        if (p.rdb_bgsave_in_progress === "0") return p;
        await Bun.sleep(10);
      }
      throw new Error("BGSAVE did not end within 5 s");
    };
    for (let i = 0; i < 20; i++) await c.set(`k${i}`, `v${i}`);
    let p = await persistence();
    expect(p).toMatchObject({ rdb_last_bgsave_status: "ok", rdb_changes_since_last_save: "20", rdb_last_bgsave_time_sec: "-1" });
    // The snapshot dir turns into a file: the snapshot's temp file cannot be created (ENOTDIR).
    rmSync(join(dataDir, "snap"), { recursive: true });
    writeFileSync(join(dataDir, "snap"), "not a directory");
    expect(await c.command(["BGSAVE"])).toBe("Background saving started");
    p = await settled();
    expect(p.rdb_last_bgsave_status).toBe("err");
    expect(p.rdb_changes_since_last_save).toBe("20");
    expect(p.kv_last_snapshot_error).toContain("ENOTDIR");
    expect(kv.output()).toMatch(/ERROR.*snapshot at index 20 failed: .*ENOTDIR/i);
    // Fixed: the next BGSAVE succeeds and the status is ok again.
    rmSync(join(dataDir, "snap"));
    mkdirSync(join(dataDir, "snap"));
    expect(await c.command(["BGSAVE"])).toBe("Background saving started");
    p = await settled();
    expect(p).toMatchObject({ rdb_last_bgsave_status: "ok", rdb_changes_since_last_save: "0", rdb_last_bgsave_time_sec: "0" });
    expect(p.kv_last_snapshot_error).toBeUndefined();
    await c.close();
    await kv.stop();
  });

  test("after a restart values are read from the mapped snapshot and log; SAVE copies them and ends the mapping", async () => {
    const dataDir = tempDir();
    const value = (i: number, tag: string) => `${tag}${i}:` + String.fromCharCode(i % 256, 0, 13, 10) + "x".repeat(i % 50);
    const want = new Map<string, string>();
    let kv = await startKv(["--wal-segment-bytes", "16kb"], { dataDir });
    let c = client(kv.port);
    const set = async (k: string, v: string) => {
      await c.set(k, Buffer.from(v, "latin1")); // bytes: the client sends a string as UTF-8
      want.set(k, v);
    };
    for (let i = 0; i < 200; i++) await set(`k${i}`, value(i, "snap"));
    expect(await c.command(["SAVE"])).toBe("OK");
    for (let i = 150; i < 300; i++) await set(`k${i}`, value(i, "log")); // overwrites and new keys, in the log only
    await c.close();
    expect(await kv.stop({ keepData: true })).toBe(0);

    const mapped = async () => /kv_values_mapped:(\d)/.exec(String(await c.command(["INFO", "persistence"])))![1];
    const check = async () => {
      for (const [k, v] of want) expect(Buffer.from((await c.getBuffer(k))!).toString("latin1"), k).toBe(v);
      expect(await c.dbsize()).toBe(want.size);
    };
    kv = await startKv([], { dataDir });
    expect(kv.output()).toMatch(/snapshot at index \d+ \(200 keys\) \+ 150 log records/);
    c = client(kv.port);
    expect(await mapped()).toBe("1");
    await check();
    await c.command(["APPEND", "k10", "+tail"]); // a value from the snapshot file, extended
    want.set("k10", want.get("k10")! + "+tail");
    await set("k250", "replaced"); // a value from the log, replaced
    await check();
    expect(await mapped()).toBe("1");
    expect(await c.command(["SAVE"])).toBe("OK");
    expect(await mapped()).toBe("0");
    await check();
    await c.close();
    expect(await kv.stop({ keepData: true })).toBe(0);

    kv = await startKv([], { dataDir });
    c = client(kv.port);
    await check();
    await c.close();
    await kv.stop();
  });

  test("a corrupt newest snapshot falls back to the previous one plus the log", async () => {
    const dataDir = tempDir();
    let kv = await startKv([], { dataDir });
    let c = client(kv.port);
    for (let i = 0; i < 100; i++) await c.set(`f${i}`, `v${i}`);
    await c.command(["SAVE"]);
    for (let i = 100; i < 200; i++) await c.set(`f${i}`, `v${i}`);
    await c.command(["SAVE"]);
    await c.set("after", "both");
    await c.close();
    await kv.stop({ keepData: true });

    const snaps = readdirSync(join(dataDir, "snap")).filter((f) => f.endsWith(".snap")).sort();
    expect(snaps.length).toBe(2);
    const newest = join(dataDir, "snap", snaps[1]!);
    const b = readFileSync(newest);
    b[b.length - 10] = b[b.length - 10]! ^ 0xff;
    writeFileSync(newest, b);

    kv = await startKv([], { dataDir });
    expect(kv.output()).toMatch(/unusable.*falling back/);
    c = client(kv.port);
    expect(await c.dbsize()).toBe(201);
    expect(await c.get("f150")).toBe("v150");
    expect(await c.get("after")).toBe("both");
    await c.close();
    await kv.stop();
  });
});

describe("data dir problems", () => {
  test("a second server on the same data dir is refused with a clear message", async () => {
    const dataDir = tempDir();
    const kv = await startKv([], { dataDir });
    const p = Bun.spawn([KV_BIN, "serve", "--port", "0", "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(await p.exited).toBe(1);
    const text = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
    expect(text).toContain("in use by another kv process");
    await kv.stop();
  });

  test("a misspelled flag is refused, not ignored: the node does not start with the default", async () => {
    const dataDir = tempDir();
    const p = Bun.spawn([KV_BIN, "serve", "--port", "0", "--data-dir", dataDir, "--fsycn", "no"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(await p.exited).toBe(1);
    const text = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
    expect(text).toContain("unknown option: --fsycn");
    const r = Bun.spawnSync([KV_BIN, "repair", "--data-dir", dataDir, "--force"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(r.exitCode).toBe(1);
    expect(r.stdout.toString() + r.stderr.toString()).toContain("unknown option: --force");
  });

  test("a data dir that is a file is refused with a clear message", async () => {
    const f = join(tempDir(), "not-a-dir");
    writeFileSync(f, "x");
    const p = Bun.spawn([KV_BIN, "serve", "--port", "0", "--data-dir", f], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    expect(await p.exited).toBe(1);
    const text = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
    expect(text).toContain(f);
    expect(statSync(f).isFile()).toBe(true);
  });
});

describe("ordering", () => {
  /** Sends `send` on a new connection, waits for exactly `replies` (and the close, if asked), closes. */
  async function exchange(port: number, send: string, replies: string, closed = false): Promise<void> {
    const c = await rawConnect(port);
    c.write(send);
    await c.waitFor((r, isClosed) => r === replies && (!closed || isClosed));
    c.close();
  }

  test("a read pipelined behind a write on the same connection sees it; replies keep their order", async () => {
    const kv = await startKv();
    await exchange(kv.port, "SET o 1\r\nGET o\r\nINCR o\r\nGET o\r\nPING\r\nDEL o\r\nEXISTS o\r\n", "+OK\r\n$1\r\n1\r\n:2\r\n$1\r\n2\r\n+PONG\r\n:1\r\n:0\r\n");
    await kv.stop();
  });

  test("SAVE pipelined with writes before and after it: replies in order, the server keeps running", async () => {
    const kv = await startKv();
    await exchange(kv.port, "SAVE\r\nSET b 2\r\nGET b\r\n", "+OK\r\n+OK\r\n$1\r\n2\r\n");
    await exchange(kv.port, "SET a 1\r\nSAVE\r\nSET b 3\r\nGET b\r\nSAVE\r\nSAVE\r\nINCR a\r\n", "+OK\r\n+OK\r\n+OK\r\n$1\r\n3\r\n+OK\r\n+OK\r\n:2\r\n");
    await exchange(kv.port, "GET a\r\nGET b\r\n", "$1\r\n2\r\n$1\r\n3\r\n");
    await kv.stop();
  });

  test("QUIT behind a write waiting for its fsync: nothing sent after QUIT runs", async () => {
    const kv = await startKv();
    await exchange(kv.port, "SET a 1\r\nQUIT\r\nSET b 2\r\n*1\r\n$x\r\n", "+OK\r\n+OK\r\n", true);
    await exchange(kv.port, "GET a\r\nEXISTS b\r\n", "$1\r\n1\r\n:0\r\n");
    await kv.stop();
  });
});

