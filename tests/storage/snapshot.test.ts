import { afterEach, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptLogError } from "../../src/errors.ts";
import { openStorage } from "../../src/storage/index.ts";
import { type SnapshotEntry, SnapshotStore, snapshotName } from "../../src/storage/snapshot-store.ts";
import { crc32c } from "../../src/storage/crc32c.ts";
import { RecordingIo } from "../../src/storage/testing.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

function* keyspace(n: number, tag = "v"): Generator<SnapshotEntry> {
  for (let i = 0; i < n; i++) yield [`key:${i}`, `${tag}-${i}`, i % 3 === 0 ? 1_800_000_000_000 + i : undefined];
}

/** Byte-string keys and values, an empty key and value, an expiry past 2^32, a value bigger than one chunk and than the mapped checksum step, then many plain keys. */
function edgeCases(): SnapshotEntry[] {
  const binKey = String.fromCharCode(0, 255, 13, 10, 128);
  const bigValue = "\xff".repeat(3 * 1024 * 1024);
  return [[binKey, "\x00\x01", undefined], ["", "", 0], ["big", bigValue, 2 ** 50], ...keyspace(5000)];
}

test("write then load: header fields, byte-string keys and values, expiries, empty keyspace", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  const entries = edgeCases();
  const meta = new Uint8Array([1, 2, 3]);
  const res = await store.write({ lastIndex: 42, lastTerm: 3, meta }, entries);
  expect(res).toMatchObject({ lastIndex: 42, lastTerm: 3, entryCount: entries.length });
  const loaded = store.loadNewest()!;
  expect(loaded).toMatchObject({ lastIndex: 42, lastTerm: 3, entryCount: entries.length });
  expect([...loaded.meta]).toEqual([1, 2, 3]);
  expect([...loaded.entries()]).toEqual(entries);
  const viaForEach: SnapshotEntry[] = [];
  loaded.forEach((k, v, e) => viaForEach.push([k, v, e]));
  expect(viaForEach).toEqual(entries);

  const empty = SnapshotStore.open(tempDir());
  await empty.write({ lastIndex: 1, lastTerm: 1 }, []);
  expect([...empty.loadNewest()!.entries()]).toEqual([]);
  expect(SnapshotStore.open(tempDir()).loadNewest()).toBeUndefined();
});

test("async iterables work, and the writer yields to the event loop while encoding", async () => {
  const store = SnapshotStore.open(tempDir());
  async function* gen(): AsyncGenerator<SnapshotEntry> {
    yield* keyspace(200_000);
  }
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  const res = await store.write({ lastIndex: 7, lastTerm: 1, yieldEveryMs: 1 }, gen());
  clearInterval(timer);
  expect(res.entryCount).toBe(200_000);
  expect(ticks).toBeGreaterThan(0);
  const back = [...store.loadNewest()!.entries()];
  expect(back.length).toBe(200_000);
  expect(back[199_999]).toEqual(["key:199999", "v-199999", undefined]);
});

test("keeps the newest two snapshots; compactableThrough is the older one's index", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  expect(store.compactableThrough()).toBe(0);
  await store.write({ lastIndex: 10, lastTerm: 1 }, keyspace(10));
  expect(store.compactableThrough()).toBe(0);
  await store.write({ lastIndex: 20, lastTerm: 1 }, keyspace(20));
  await store.write({ lastIndex: 30, lastTerm: 2 }, keyspace(30));
  expect(readdirSync(join(dir, "snap")).sort()).toEqual([snapshotName(20), snapshotName(30)]);
  expect(store.compactableThrough()).toBe(20);
});

test("a corrupt newest snapshot (body bit flip, truncation, bad header) falls back to the previous", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  await store.write({ lastIndex: 10, lastTerm: 1 }, keyspace(100, "old"));
  await store.write({ lastIndex: 20, lastTerm: 1 }, keyspace(100, "new"));
  const newest = join(dir, "snap", snapshotName(20));
  const good = readFileSync(newest);
  const damages: [string, (b: Buffer) => Buffer][] = [
    ["body bit", (b) => ((b[b.length - 10]! ^= 4), b)],
    ["truncated", (b) => b.subarray(0, b.length - 1)],
    ["header index", (b) => ((b[16]! ^= 1), b)],
    ["magic", (b) => ((b[0] = 0), b)],
    ["empty", () => Buffer.alloc(0)],
  ];
  for (const [what, damage] of damages) {
    writeFileSync(newest, damage(Buffer.from(good)));
    expect(() => store.load(newest)).toThrow(CorruptLogError);
    const loaded = store.loadNewest();
    expect([what, loaded?.lastIndex]).toEqual([what, 10]);
    expect([...loaded!.entries()][5]).toEqual(["key:5", "old-5", undefined]);
  }
});

test("a crash mid-write leaves only a temp file, removed at open; the old snapshot stays", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  await store.write({ lastIndex: 5, lastTerm: 1 }, keyspace(10));
  function* boom(): Generator<SnapshotEntry> {
    yield ["a", "b", undefined];
    throw new Error("iterator failed");
  }
  await expect(store.write({ lastIndex: 9, lastTerm: 1 }, boom())).rejects.toThrow("iterator failed");
  expect(readdirSync(join(dir, "snap"))).toEqual([snapshotName(5)]);
  writeFileSync(join(dir, "snap", `${snapshotName(9)}.tmp`), "partial");
  SnapshotStore.open(dir);
  expect(readdirSync(join(dir, "snap"))).toEqual([snapshotName(5)]);
});

test("openStorage: snapshot + log replay, compaction through the previous snapshot, fallback after corruption", async () => {
  const dir = tempDir();
  let s = await openStorage({ dataDir: dir, segmentBytesMax: 300 });
  expect(s.snapshot).toBeUndefined();
  expect(s.replayFrom).toBe(1);
  const state = new Map<string, string>();
  for (let i = 1; i <= 60; i++) {
    await s.wal.append([rec(i, 1, `set k${i % 10} ${i}`)]);
    state.set(`k${i % 10}`, String(i));
    if (i === 20 || i === 40) {
      await s.snapshots.write({ lastIndex: i, lastTerm: 1 }, [...state].map(([k, v]) => [k, v, undefined] as SnapshotEntry));
      await s.wal.deleteThrough(s.snapshots.compactableThrough());
    }
  }
  expect(s.wal.firstIndex()).toBeGreaterThan(1);
  expect(s.wal.firstIndex()).toBeLessThanOrEqual(21); // kept since the previous snapshot (20)
  await s.close();

  const replay = (o: typeof s) => {
    const m = new Map<string, string>();
    for (const [k, v] of o.snapshot?.entries() ?? []) m.set(k, v);
    for (const r of o.wal.replay(o.replayFrom)) {
      const [, k, v] = new TextDecoder().decode(r.payload).split(" ");
      m.set(k!, v!);
    }
    return m;
  };
  s = await openStorage({ dataDir: dir, segmentBytesMax: 300 });
  expect(s.snapshot?.lastIndex).toBe(40);
  expect(s.replayFrom).toBe(41);
  expect(replay(s)).toEqual(state);
  await s.close();

  // Corrupt the newest snapshot: the previous one plus the longer log give the same state.
  const newest = join(dir, "snap", snapshotName(40));
  const b = readFileSync(newest);
  b[b.length - 1]! ^= 1;
  writeFileSync(newest, b);
  s = await openStorage({ dataDir: dir, segmentBytesMax: 300 });
  expect(s.snapshot?.lastIndex).toBe(20);
  expect(s.replayFrom).toBe(21);
  expect(replay(s)).toEqual(state);
  await s.close();
});

test("openStorage: a log that ends before the snapshot is reset to continue after it", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir });
  await wal.append([rec(1), rec(2)]);
  await wal.close();
  await SnapshotStore.open(dir).write({ lastIndex: 50, lastTerm: 4 }, [["k", "v", undefined]]);
  const s = await openStorage({ dataDir: dir });
  expect([s.wal.firstIndex(), s.wal.lastIndex(), s.replayFrom]).toEqual([51, 50, 51]);
  await s.wal.append([rec(51, 4)]);
  await s.close();
});

test("openStorage locks the data dir: a live owner is refused, a dead one's lock is taken over", async () => {
  const dir = tempDir();
  // A live process (sleep) owns the dir.
  const sleeper = Bun.spawn(["sleep", "30"]);
  writeFileSync(join(dir, "LOCK"), `${sleeper.pid}\n`);
  const err = await openStorage({ dataDir: dir }).catch((e) => e);
  expect(err?.name).toBe("DataDirError");
  expect(err.message).toContain(`pid ${sleeper.pid}`);
  sleeper.kill(9);
  await sleeper.exited;
  // Its process is gone (as after kill -9): the stale lock is taken over.
  const s = await openStorage({ dataDir: dir });
  expect(readFileSync(join(dir, "LOCK"), "latin1").trim()).toBe(String(process.pid));
  await s.close();
  expect(readdirSync(dir)).not.toContain("LOCK");
});

test("one snapshot write at a time: a second concurrent write is refused", async () => {
  const store = SnapshotStore.open(tempDir());
  const first = store.write({ lastIndex: 1, lastTerm: 1, yieldEveryMs: 0 }, keyspace(50_000));
  expect(store.inProgress).toBe(true);
  await expect(store.write({ lastIndex: 2, lastTerm: 1 }, keyspace(1))).rejects.toThrow("already being written");
  await first;
  expect(store.inProgress).toBe(false);
  await store.write({ lastIndex: 2, lastTerm: 1 }, keyspace(1));
});

test("a kv copy-on-write DbSnapshot feeds the writer directly, while writes go on, and restores exactly", async () => {
  const { Db } = await import("../../src/kv/db.ts");
  const db = new Db();
  for (let i = 0; i < 50_000; i++) db.set(`k${i}`, `v${i}`);
  db.setWithExpire("ttl", "x", 2_000_000_000_000, 0);
  const expected = new Map([...db.entries()].map(([k, v, e]) => [k, [v, e] as const]));
  const store = SnapshotStore.open(tempDir());
  const snap = db.beginSnapshot();
  let writesDuring = 0;
  const timer = setInterval(() => {
    // Writers keep going while the snapshot is written: none of this may appear in it.
    for (let j = 0; j < 200; j++) db.set(`k${(writesDuring * 200 + j) % 50_000}`, "changed");
    db.delete(`k${writesDuring}`);
    db.set(`new${writesDuring}`, "new");
    writesDuring++;
  }, 0);
  try {
    await store.write({ lastIndex: 9, lastTerm: 1, yieldEveryMs: 0.5 }, snap);
  } finally {
    clearInterval(timer);
    snap.close();
  }
  expect(writesDuring).toBeGreaterThan(0);
  const loaded = store.loadNewest()!;
  expect(loaded.entryCount).toBe(expected.size);
  const got = new Map<string, readonly [string, number | bigint | undefined]>();
  loaded.forEach((k, v, e) => got.set(k, [v, e]));
  expect(got).toEqual(expected);
});

test("checkBodyWhileReading: the checksum is checked as the body streams, and a bad body throws at its end", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  await store.write({ lastIndex: 20, lastTerm: 1 }, keyspace(3000, "v"));
  const path = join(dir, "snap", snapshotName(20));
  const good = readFileSync(path);

  const ok = store.load(path, { checkBodyWhileReading: true });
  expect(ok.bodyVerified).toBe(false);
  let n = 0;
  ok.forEach(() => n++);
  expect(n).toBe(3000);
  expect(ok.bodyVerified).toBe(true);

  // A flipped bit in a value: loading the header succeeds; streaming delivers entries, then throws.
  const flipped = Buffer.from(good);
  flipped[flipped.length - 10]! ^= 4;
  writeFileSync(path, flipped);
  const bad = store.load(path, { checkBodyWhileReading: true });
  n = 0;
  expect(() => bad.forEach(() => n++)).toThrow(/body checksum mismatch/);
  expect(n).toBe(3000);
  expect(bad.bodyVerified).toBe(false);
  expect(() => bad.verifyBody()).toThrow(CorruptLogError);
  expect(() => [...store.load(path, { checkBodyWhileReading: true }).entries()]).toThrow(/body checksum mismatch/);
  // Without the option the damage is found before anything is returned, as before.
  expect(() => store.load(path)).toThrow(/body checksum mismatch/);

  // A damaged length field asking for far more than the body holds: a clear error, no huge allocation.
  const long = Buffer.from(good);
  const headerBytes = good.length - [...keyspace(3000, "v")].reduce((s, [k, v]) => s + 9 + k.length + v.length, 0);
  long.writeUInt32LE(0x7fffffff, headerBytes + 1); // the first entry's key length
  writeFileSync(path, long);
  const e = (() => {
    try {
      store.load(path, { checkBodyWhileReading: true }).forEach(() => {});
    } catch (err) {
      return err;
    }
  })();
  expect(e).toBeInstanceOf(CorruptLogError);
  expect((e as CorruptLogError).file).toBe(path);
  expect((e as Error).message).toMatch(/runs past the end of the body/);
});

test("mapped(): the same entries as forEach, each value read back through its ref; damage found as forEach finds it", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  const entries = edgeCases();
  await store.write({ lastIndex: 30, lastTerm: 2 }, entries);
  const path = join(dir, "snap", snapshotName(30));

  const loaded = store.load(path, { checkBodyWhileReading: true });
  const m = loaded.mapped()!;
  expect(m).toBeDefined();
  const got: SnapshotEntry[] = [];
  const refs = new Set<number>();
  m.forEach((k, ref, at) => {
    expect(Number.isSafeInteger(ref) && ref >= 0).toBe(true);
    refs.add(ref);
    got.push([k, m.values.value(ref), at]);
  });
  expect(got).toEqual(entries);
  expect(refs.size).toBe(entries.length);
  expect(loaded.bodyVerified).toBe(true);

  // A flipped bit in a value: every entry is passed on, then the checksum mismatch is thrown.
  const good = readFileSync(path);
  const flipped = Buffer.from(good);
  flipped[flipped.length - 10]! ^= 4;
  writeFileSync(path, flipped);
  const bad = store.load(path, { checkBodyWhileReading: true });
  let n = 0;
  expect(() => bad.mapped()!.forEach(() => n++)).toThrow(/body checksum mismatch/);
  expect(n).toBe(entries.length);
  expect(bad.bodyVerified).toBe(false);

  // A length field asking for far more than the body holds: CorruptLogError naming the file.
  const long = Buffer.from(good);
  const headerBytes = good.length - entries.reduce((s, [k, v, at]) => s + 9 + (at === undefined ? 0 : 8) + k.length + v.length, 0);
  long.writeUInt32LE(0x7fffffff, headerBytes + 5); // the first entry's value length
  writeFileSync(path, long);
  const e = (() => {
    try {
      store.load(path, { checkBodyWhileReading: true }).mapped()!.forEach(() => {});
    } catch (err) {
      return err;
    }
  })();
  expect(e).toBeInstanceOf(CorruptLogError);
  expect((e as CorruptLogError).message).toMatch(/runs past the end of the body/);
  expect((e as CorruptLogError).file).toBe(path);
});

test("mapped(): a file that cannot be mapped gives undefined (the caller reads it instead)", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  const store = SnapshotStore.open(dir, io);
  await store.write({ lastIndex: 5, lastTerm: 1 }, keyspace(10));
  io.failNext("map", "ENODEV");
  const loaded = store.loadNewest()!;
  expect(loaded.mapped()).toBeUndefined();
  expect([...loaded.entries()]).toEqual([...keyspace(10)]);
  expect(loaded.mapped()).toBeDefined(); // the fault was one-off
});

test("format versions: 4 (revisions) is written; 3 (membership), 2 and 1 (CRC-32C body) are still read, also mapped and damaged; others are refused", async () => {
  const { crc32 } = await import("node:zlib");
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  const entries = [...keyspace(2000)];
  const meta = new TextEncoder().encode("1700000000000");
  await store.write({ lastIndex: 9, lastTerm: 1, meta, membership: { voters: [1, 2, 3], learners: [7] } }, entries);
  const path = join(dir, "snap", snapshotName(9));
  const v3 = readFileSync(path);
  expect(v3.readUInt32LE(8)).toBe(4); // the version the file carries, not the constant's value
  const loaded3 = store.load(path);
  expect(loaded3.membership).toEqual({ voters: [1, 2, 3], learners: [7] });
  expect(loaded3.meta).toEqual(meta);
  expect([...loaded3.entries()]).toEqual(entries);
  // The same file as version 3 wrote it (entries without revisions are laid out alike): read, members and all.
  const asV3 = Buffer.from(v3);
  asV3.writeUInt32LE(3, 8);
  const hb = asV3.readUInt32LE(12);
  asV3.writeUInt32LE(crc32c(asV3, 0, hb - 4), hb - 4);
  writeFileSync(path, asV3);
  const old3 = store.load(path);
  expect(old3.membership).toEqual({ voters: [1, 2, 3], learners: [7] });
  expect([...old3.entries()]).toEqual(entries);
  writeFileSync(path, v3);

  // The same snapshot as version 2 wrote it: no member fields, the meta right after metaBytes.
  const metaAt = 64 + 8 * 4;
  const body = v3.subarray(v3.readUInt32LE(12));
  const headerBytes = 60 + meta.length;
  const asVersion = (v: number, bodyCrc: number) => {
    const b = Buffer.alloc(headerBytes + body.length);
    v3.copy(b, 0, 0, 56);
    b.writeUInt32LE(v, 8);
    b.writeUInt32LE(headerBytes, 12);
    b.writeUInt32LE(bodyCrc, 48);
    b.set(meta, 56);
    b.writeUInt32LE(crc32c(b, 0, headerBytes - 4), headerBytes - 4);
    b.set(body, headerBytes);
    return b;
  };
  expect(v3.subarray(metaAt, metaAt + meta.length)).toEqual(Buffer.from(meta));
  writeFileSync(path, asVersion(2, crc32(body)));
  const loaded2 = store.load(path);
  expect(loaded2.membership).toBeUndefined(); // unknown, not empty
  expect(loaded2.meta).toEqual(meta);
  expect([...loaded2.entries()]).toEqual(entries);

  const v1 = asVersion(1, crc32c(body, 0, body.length));
  writeFileSync(path, v1);
  expect([...store.load(path).entries()]).toEqual(entries);
  const viaMap: SnapshotEntry[] = [];
  const m = store.load(path, { checkBodyWhileReading: true }).mapped()!;
  m.forEach((k, ref, at) => viaMap.push([k, m.values.value(ref), at]));
  expect(viaMap).toEqual(entries);
  // A version 1 body checked with its own checksum: damage is found.
  v1[v1.length - 5]! ^= 1;
  writeFileSync(path, v1);
  expect(() => store.load(path)).toThrow(/body checksum mismatch/);
  // A version 1 header with a CRC-32 body checksum is wrong, and so found.
  writeFileSync(path, asVersion(1, crc32(body)));
  expect(() => store.load(path)).toThrow(/body checksum mismatch/);
  writeFileSync(path, asVersion(5, crc32(body)));
  expect(() => store.load(path)).toThrow(/format version 5, this kv reads 1 to 4/);
});

test("a damaged membership field in a version 3 header is an error, never read as empty or 0", async () => {
  const dir = tempDir();
  const store = SnapshotStore.open(dir);
  await store.write({ lastIndex: 5, lastTerm: 2, membership: { voters: [1, 2, 3], learners: [] } }, keyspace(10));
  const path = join(dir, "snap", snapshotName(5));
  const good = readFileSync(path);
  const headerBytes = good.readUInt32LE(12);
  const withCrc = (b: Buffer) => {
    b.writeUInt32LE(crc32c(b, 0, headerBytes - 4), headerBytes - 4);
    return b;
  };
  const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
    ["a flipped bit in a voter id", (b) => ((b[64 + 8]! ^= 4), b), /header checksum mismatch/],
    ["a damaged voter count", (b) => (b.writeUInt32LE(2, 56), b), /bad header length|header checksum/],
    ["a huge member count", (b) => (b.writeUInt32LE(0xfffffff0, 60), b), /member counts/],
    ["a zero id under a good checksum", (b) => withCrc((b.writeUInt32LE(0, 64), b)), /member id at offset 64 is not a positive integer/],
    ["a duplicate id under a good checksum", (b) => withCrc((b.writeUInt32LE(1, 72), b)), /member 1 is listed twice/],
  ];
  for (const [what, damage, why] of cases) {
    writeFileSync(path, damage(Buffer.from(good)));
    let err: unknown;
    try {
      store.load(path);
    } catch (e) {
      err = e;
    }
    expect(err, what).toBeInstanceOf(CorruptLogError);
    expect((err as Error).message, what).toMatch(why);
  }
  writeFileSync(path, good);
  expect(store.load(path).membership).toEqual({ voters: [1, 2, 3], learners: [] });
});
