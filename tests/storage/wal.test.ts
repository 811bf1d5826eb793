import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { AssertionError } from "../../src/errors.ts";
import { recordBytes } from "../../src/storage/codec.ts";
import { StorageIoError, WalFailedError } from "../../src/storage/errors.ts";
import { RecordingIo } from "../../src/storage/testing.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, recs, tempDir, text, walFiles } from "./helpers.ts";

afterEach(cleanupTempDirs);

/**
 * For every "ack" event (tag = record index, records rec(1..n) appended in order): find the write that
 * carried that record's bytes and check a datasync was recorded after that write and before the ack.
 */
function expectAckedAfterCoveringSync(io: RecordingIo, n: number): void {
  const ends: number[] = [];
  let total = 0;
  for (let i = 1; i <= n; i++) ends[i] = total += recordBytes(rec(i));
  let written = 0;
  const writeIdxFor: number[] = [];
  io.events.forEach((e, k) => {
    if (e.op !== "write") return;
    const before = written;
    written += e.bytes!;
    for (let i = 1; i <= n; i++) if (ends[i]! > before && ends[i]! <= written) writeIdxFor[i] = k;
  });
  let acks = 0;
  io.events.forEach((e, k) => {
    if (e.op !== "ack") return;
    acks++;
    const i = Number(e.tag);
    const w = writeIdxFor[i];
    expect(w).toBeDefined();
    const syncBetween = io.events.slice(w! + 1, k).some((x) => x.op === "datasync");
    expect([i, syncBetween]).toEqual([i, true]);
  });
  expect(acks).toBe(n);
}

test("append, read back, reopen: same records", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir });
  expect([wal.firstIndex(), wal.lastIndex()]).toEqual([1, 0]);
  await wal.append(recs(1, 3));
  await wal.append([rec(4, 2, "four")]);
  expect(wal.lastIndex()).toBe(4);
  expect(wal.term(4)).toBe(2);
  expect(wal.term(0)).toBe(0);
  expect(wal.entries(2, 5).map(text)).toEqual([...recs(2, 3).map(text), "four"]);
  await wal.close();

  const again = await Wal.open({ dataDir: dir });
  expect(again.recovery).toMatchObject({ segments: 1, records: 4, firstIndex: 1, lastIndex: 4, truncated: undefined });
  expect([again.term(4), again.term(3), again.term(0)]).toEqual([2, 1, 0]);
  expect(() => again.append([rec(5, 1)])).toThrow(AssertionError); // term below the recovered last term
  const all = [...again.replay(1)];
  expect(all.map((r) => r.index)).toEqual([1, 2, 3, 4]);
  expect(all[3]).toMatchObject({ index: 4, term: 2, timestampMs: 1_700_000_000_004 });
  await again.append([rec(5, 2)]);
  expect(again.entries(5, 6).map(text)).toEqual(["cmd-5"]);
  await again.close();
});

test("appends must continue the log: wrong index or a lower term is a caller bug", async () => {
  const wal = await Wal.open({ dataDir: tempDir() });
  await wal.append([rec(1, 2)]);
  expect(() => wal.append([rec(3, 2)])).toThrow(AssertionError);
  expect(() => wal.append([rec(2, 1)])).toThrow(AssertionError);
  await wal.close();
});

test("segments roll at segmentBytesMax, are named by first index, and reads span them", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 500 });
  for (let i = 1; i <= 40; i++) await wal.append([rec(i, 1, "v".repeat(50))]);
  const files = walFiles(dir);
  expect(files.length).toBeGreaterThan(4);
  expect(files[0]).toBe("00000000000000000001.seg");
  for (const f of files) expect(Bun.file(join(dir, "wal", f)).size).toBeLessThanOrEqual(500);
  expect(wal.entries(1, 41).map((r) => r.index)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  expect(wal.entries(1, 41, 120).length).toBe(2); // maxBytes of payload (at least one record)
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 500 });
  expect(again.recovery.segments).toBe(files.length);
  expect([...again.replay(17)].map((r) => r.index)).toEqual(Array.from({ length: 24 }, (_, i) => i + 17));
  await again.close();
});

test("deleteThrough removes whole segments only, keeps the last, and survives reopen", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300 });
  for (let i = 1; i <= 30; i++) await wal.append([rec(i, 1, "v".repeat(40))]);
  const before = walFiles(dir);
  await wal.deleteThrough(10);
  const first = wal.firstIndex();
  expect(first).toBeGreaterThan(1);
  expect(first).toBeLessThanOrEqual(11); // records <= 10 may remain in a partly covered segment
  expect(walFiles(dir).length).toBeLessThan(before.length);
  expect(wal.entries(first, 31).length).toBe(31 - first);
  await wal.deleteThrough(1000); // never the last segment
  expect(walFiles(dir).length).toBe(1);
  expect(wal.lastIndex()).toBe(30);
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 300 });
  expect(again.lastIndex()).toBe(30);
  expect(again.firstIndex()).toBe(wal.firstIndex());
  await again.close();
});

test("truncateAfter drops a suffix across segments; new appends continue from there", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300 });
  for (let i = 1; i <= 30; i++) await wal.append([rec(i, 1, "v".repeat(40))]);
  await wal.truncateAfter(12);
  expect(wal.lastIndex()).toBe(12);
  await wal.append([rec(13, 2, "new-13"), rec(14, 2, "new-14")]);
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 300 });
  expect(again.lastIndex()).toBe(14);
  expect(again.entries(12, 15).map((r) => [r.index, r.term])).toEqual([[12, 1], [13, 2], [14, 2]]);
  expect(text(again.entries(13, 14)[0]!)).toBe("new-13");
  await again.truncateAfter(0);
  expect([again.firstIndex(), again.lastIndex()]).toEqual([1, 0]);
  await again.close();
});

test("reset restarts the log after a snapshot point", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir });
  await wal.append(recs(1, 5));
  await wal.reset(100, 7);
  expect([wal.firstIndex(), wal.lastIndex(), wal.term(100)]).toEqual([101, 100, 7]);
  expect(walFiles(dir)).toEqual([]);
  await wal.append([rec(101, 7)]);
  expect(walFiles(dir)).toEqual(["00000000000000000101.seg"]);
  await wal.close();
  const again = await Wal.open({ dataDir: dir });
  expect([again.firstIndex(), again.lastIndex()]).toEqual([101, 101]);
  await again.close();
});

test("ack only after the fsync that covers the record (recorded order of write, datasync, ack)", async () => {
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: tempDir(), io });
  io.events.length = 0;
  const acks = [1, 2, 3].map((i) => wal.append([rec(i)]).then(() => io.note("ack", String(i))));
  await Promise.all(acks);
  const ops = io.events.map((e) => e.op);
  const firstAck = ops.indexOf("ack");
  expect(ops.slice(0, firstAck)).toEqual(["open", "fsyncDir", "write", "datasync"]);
  expectAckedAfterCoveringSync(io, 3);
});

test("group commit: appends arriving during an fsync share the next one", async () => {
  const io = new RecordingIo();
  io.syncDelayMs = 20;
  const wal = await Wal.open({ dataDir: tempDir(), io });
  io.events.length = 0;
  const pending: Promise<void>[] = [];
  for (let i = 1; i <= 200; i++) {
    pending.push(wal.append([rec(i)]));
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1)); // spread over several event-loop turns
  }
  await Promise.all(pending);
  const syncs = io.count("datasync");
  expect(syncs).toBeGreaterThanOrEqual(2);
  expect(syncs).toBeLessThan(40); // 200 appends, each sync ~20 ms, appends arrive over ~20+ ms
  expect(wal.stats.records).toBe(200);
  expect(wal.stats.batches).toBe(io.count("write"));
  await wal.close();
});

test("writeNow: the write starts inside append (no extra turn), still waits behind an fsync in flight, and acks after its own fsync", async () => {
  const io = new RecordingIo();
  io.syncDelayMs = 20;
  const wal = await Wal.open({ dataDir: tempDir(), io });
  io.events.length = 0;
  const first = wal.append([rec(1)], true).then(() => io.note("ack", "1"));
  expect(io.count("write")).toBe(1); // written before append returned
  const second = wal.append([rec(2)], true).then(() => io.note("ack", "2"));
  expect(io.count("write")).toBe(1); // an fsync is in flight: it joins the next batch
  await Promise.all([first, second]);
  expect(io.count("write")).toBe(2);
  expectAckedAfterCoveringSync(io, 2);
  expect(wal.stats.records).toBe(2);
  await wal.close();
});

test("the event loop keeps running while an fsync is in flight", async () => {
  const io = new RecordingIo();
  io.syncDelayMs = 50;
  const wal = await Wal.open({ dataDir: tempDir(), io });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  await wal.append([rec(1)]);
  clearInterval(timer);
  expect(ticks).toBeGreaterThan(3);
  await wal.close();
});

test("a failed fsync rejects the batch with a typed error, refuses later appends, and keeps acked data", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: dir, io });
  await wal.append(recs(1, 3));
  io.failNext("datasync", "EIO");
  const failed = wal.append([rec(4)]);
  await expect(failed).rejects.toBeInstanceOf(StorageIoError);
  await failed.catch((e: StorageIoError) => {
    expect(e.op).toBe("fsync");
    expect(e.code).toBe("EIO");
  });
  expect(wal.failure?.code).toBe("EIO");
  expect(wal.lastIndex()).toBe(3); // the unacknowledged record is forgotten
  await expect(wal.append([rec(4)])).rejects.toBeInstanceOf(WalFailedError);
  expect(wal.entries(1, 4).length).toBe(3); // reads still work
  await wal.close();
  const again = await Wal.open({ dataDir: dir });
  expect(again.lastIndex()).toBe(3);
  await again.close();
});

test("a failed write (disk full) rejects everything queued and leaves a clean file", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: dir, io });
  await wal.append(recs(1, 2));
  io.failNext("write", "ENOSPC");
  const a = wal.append([rec(3)]);
  const b = wal.append([rec(4)]);
  await expect(a).rejects.toMatchObject({ name: "StorageIoError", op: "write", code: "ENOSPC" });
  await expect(b).rejects.toBeInstanceOf(StorageIoError);
  await expect(wal.append([rec(3)])).rejects.toBeInstanceOf(WalFailedError);
  await wal.close();
  const again = await Wal.open({ dataDir: dir });
  expect(again.recovery.truncated).toBeUndefined();
  expect(again.lastIndex()).toBe(2);
  await again.close();
});

test("a failed segment creation on roll fails the batch without a gap on disk", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  // No spare file: with one being prepared in the background, the failing open could hit the
  // spare's preparation (which only costs speed) instead of the roll, depending on timing.
  const wal = await Wal.open({ dataDir: dir, io, segmentBytesMax: 200, preallocate: false });
  for (let i = 1; i <= 3; i++) await wal.append([rec(i, 1, "v".repeat(40))]);
  io.failNext("open", "ENOSPC");
  const p = [4, 5, 6, 7].map((i) => wal.append([rec(i, 1, "v".repeat(40))]));
  // The appends that still fit the segment are acknowledged; the batch meant for the new segment
  // fails with the error; appends queued behind it, never written (a batch stops at a segment's
  // end), are refused.
  const results = await Promise.allSettled(p);
  const acked = results.findIndex((r) => r.status === "rejected");
  expect(acked).toBe(1); // 3 records of this size leave room for exactly one more in 200 bytes
  expect((results[acked] as PromiseRejectedResult).reason).toBeInstanceOf(StorageIoError);
  for (const r of results.slice(acked + 1)) {
    expect(r.status).toBe("rejected");
    const e = (r as PromiseRejectedResult).reason;
    expect(e instanceof StorageIoError || e instanceof WalFailedError).toBe(true);
  }
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 200 });
  expect(again.lastIndex()).toBe(3 + acked);
  await again.close();
});

test("fsync modes: everysec and no acknowledge after the write; everysec syncs in the background", async () => {
  for (const mode of ["everysec", "no"] as const) {
    const io = new RecordingIo();
    io.syncDelayMs = 50;
    const wal = await Wal.open({ dataDir: tempDir(), io, fsync: mode, everysecIntervalMs: 20 });
    io.events.length = 0;
    await wal.append([rec(1)]).then(() => io.note("ack"));
    expect(io.events.map((e) => e.op)).toEqual(["open", "fsyncDir", "write", "ack"]);
    if (mode === "everysec") {
      for (let t = 0; t < 200 && io.count("datasync") === 0; t++) await new Promise((r) => setTimeout(r, 10));
      expect(io.count("datasync")).toBeGreaterThanOrEqual(1);
    } else {
      await new Promise((r) => setTimeout(r, 120));
      expect(io.count("datasync")).toBe(0);
    }
    await wal.sync();
    await wal.close();
    expect(existsSync(wal.dir)).toBe(true);
  }
});

test("entries can read records that are queued but not yet written", async () => {
  const wal = await Wal.open({ dataDir: tempDir() });
  const p = wal.append(recs(1, 3));
  expect(wal.lastIndex()).toBe(3);
  expect(wal.entries(1, 4).map((r) => r.index)).toEqual([1, 2, 3]);
  expect(wal.term(2)).toBe(1);
  await p;
  await wal.close();
});

test("entries returns the whole range even when it spans many read chunks; maxBytes still limits", async () => {
  const wal = await Wal.open({ dataDir: tempDir(), segmentBytesMax: 64 * 1024 * 1024 });
  const big = "b".repeat(100_000);
  for (let i = 1; i <= 100; i++) await wal.append([rec(i, 1, big)]); // ~10 MB, above the 4 MiB read chunk
  expect(wal.entries(1, 101).length).toBe(100);
  expect(wal.entries(1, 101, 250_000).length).toBe(2);
  expect([...wal.replay(1)].length).toBe(100);
  await wal.close();
});

test("syncsInFlightMax 2: overlapping fsyncs, acks still in log order and each after an fsync that followed its write", async () => {
  const io = new RecordingIo();
  io.syncDelayMs = 5;
  const wal = await Wal.open({ dataDir: tempDir(), io, syncsInFlightMax: 2 });
  io.events.length = 0;
  const order: number[] = [];
  const pending: Promise<void>[] = [];
  for (let i = 1; i <= 60; i++) {
    pending.push(wal.append([rec(i)]).then(() => (order.push(i), io.note("ack", String(i)))));
    if (i % 3 === 0) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(pending);
  expect(order).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  expect(io.count("write")).toBeGreaterThan(1);
  expectAckedAfterCoveringSync(io, 60);
  await wal.close();
  const again = await Wal.open({ dataDir: wal.dir.replace(/\/wal$/, "") });
  expect(again.lastIndex()).toBe(60);
  await again.close();
});

test("syncsInFlightMax 2: a failed fsync rejects the later in-flight batch too (no ack past a failure), as unknown: it is written already", async () => {
  const io = new RecordingIo();
  io.syncDelayMs = 10;
  const wal = await Wal.open({ dataDir: tempDir(), io, syncsInFlightMax: 2 });
  await wal.append([rec(1)]);
  io.failNext("datasync", "EIO");
  const a = wal.append([rec(2)]);
  await new Promise((r) => setImmediate(r));
  const b = wal.append([rec(3)]);
  await new Promise((r) => setImmediate(r));
  const c = wal.append([rec(4)]); // queued behind two fsyncs in flight: never written
  const results = await Promise.allSettled([a, b, c]);
  expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
  const reasons = results.map((r) => (r as PromiseRejectedResult).reason);
  // a failed, b was written and waits for its own fsync (its bytes may survive): both unknown;
  // c never reached the file: refused.
  expect(reasons[0]).toBeInstanceOf(StorageIoError);
  expect(reasons[1]).toBeInstanceOf(StorageIoError);
  expect(reasons[2]).toBeInstanceOf(WalFailedError);
  expect(io.events.filter((e) => e.op === "write" && e.path?.includes("/wal/")).length).toBe(3);
  expect(wal.lastIndex()).toBe(1);
  await wal.close();
});

test("syncsInFlightMax 2: a failure while a later batch's new segment is being fsynced leaves no gap on disk", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  type Held = { path: string | undefined; go: () => void; fail: (e: Error) => void };
  const held: Held[] = [];
  let hold = false;
  io.beforeDatasync = (path) => {
    if (!hold) return;
    return new Promise<void>((go, fail) => held.push({ path, go, fail }));
  };
  const until = async (n: number) => {
    for (let i = 0; i < 500 && held.length < n; i++) await new Promise((r) => setTimeout(r, 2));
    expect(held.length).toBe(n);
  };
  const wal = await Wal.open({ dataDir: dir, io, segmentBytesMax: 300, syncsInFlightMax: 2, preallocate: false });
  await wal.append([rec(1)]);
  hold = true;
  const a = wal.append([rec(2, 1, "a".repeat(40))]); // segment 1; its fsync held
  await until(1);
  // B does not fit in segment 1: segment 1 is first made durable as it stands (an fsync of its
  // own, held, then let go), then B goes to a new segment, whose fsync is held.
  const b = wal.append([rec(3, 1, "b".repeat(40)), rec(4, 1, "c".repeat(200))]);
  await until(2);
  expect(held[1]!.path).toBe(held[0]!.path);
  expect(io.events.filter((e) => e.op === "write").length).toBe(2); // B waits for that fsync
  held[1]!.go();
  await until(3);
  expect(held[2]!.path).not.toBe(held[0]!.path);
  const { ioError } = await import("../../src/storage/io.ts");
  held[0]!.fail(ioError("EIO", "injected")); // A's fsync fails while the new segment's is in flight
  const results = await Promise.allSettled([a, b]);
  expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  held[2]!.go();
  await new Promise((r) => setTimeout(r, 10));
  await wal.close().catch(() => {});
  expect(walFiles(dir).length).toBe(1); // the new segment went with the failed batches
  hold = false;
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 300, preallocate: false });
  expect(again.lastIndex()).toBe(1);
  await again.close();
});

test("a segment is durable before any record goes to the next one, in every fsync mode", async () => {
  for (const fsync of ["always", "everysec", "no"] as const) {
    const dir = tempDir();
    const io = new RecordingIo();
    const wal = await Wal.open({ dataDir: dir, io, fsync, segmentBytesMax: 512, preallocate: false, everysecIntervalMs: 60_000 });
    for (let i = 1; i <= 40; i++) await wal.append([rec(i, 1, "r".repeat(60))]);
    await wal.close();
    const segs = walFiles(dir);
    expect(segs.length).toBeGreaterThan(3);
    // Walk the events: the first write to segment n+1 comes after a datasync of segment n that
    // follows segment n's last write.
    for (let n = 0; n + 1 < segs.length; n++) {
      const ev = io.events.filter((e) => e.path?.endsWith(segs[n]!) || e.path?.endsWith(segs[n + 1]!));
      const firstNext = ev.findIndex((e) => e.op === "write" && e.path!.endsWith(segs[n + 1]!));
      const before = ev.slice(0, firstNext).filter((e) => e.path!.endsWith(segs[n]!));
      const lastWrite = before.map((e) => e.op).lastIndexOf("write");
      expect(lastWrite).toBeGreaterThanOrEqual(0);
      expect(before.slice(lastWrite + 1).some((e) => e.op === "datasync")).toBe(true);
    }
  }
});

test("the sync before a roll runs off the event loop: writes wait for it, then go to the new segment", async () => {
  // ("always" has synced the old segment already: its roll needs no sync of its own.)
  for (const fsync of ["no", "everysec"] as const) {
    const dir = tempDir();
    const io = new RecordingIo();
    const held: { path: string | undefined; go: () => void; fail: (e: Error) => void }[] = [];
    let hold = false;
    io.beforeDatasync = (path) => (hold ? new Promise<void>((go, fail) => held.push({ path, go, fail })) : undefined);
    const wal = await Wal.open({ dataDir: dir, io, fsync, segmentBytesMax: 400, preallocate: false, everysecIntervalMs: 60_000 });
    for (let i = 1; i <= 4; i++) await wal.append([rec(i, 1, "r".repeat(40))]);
    expect(wal.segmentNames().length).toBe(1);
    hold = true;
    let done = false;
    const p = wal.append([rec(5, 1, "s".repeat(200))]).then(() => (done = true)); // does not fit: a roll
    for (let i = 0; i < 500 && held.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    // The old segment's fsync is running on the threadpool; timers still fire, the append waits.
    expect(held.length).toBe(1);
    expect(held[0]!.path!.endsWith(wal.segmentNames()[0]!)).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    expect(wal.segmentNames().length).toBe(1);
    hold = false;
    held[0]!.go();
    await p;
    expect(wal.segmentNames().length).toBe(2);
    const segs = walFiles(dir);
    const ev = io.events.map((e) => `${e.op} ${e.path?.split("/").pop()}`);
    expect(ev.lastIndexOf(`datasync ${segs[0]}`)).toBeLessThan(ev.indexOf(`write ${segs[1]}`));
    await wal.close();
    const again = await Wal.open({ dataDir: dir, segmentBytesMax: 400, preallocate: false });
    expect([...again.replay(1)].map((r) => r.index)).toEqual([1, 2, 3, 4, 5]);
    await again.close();
  }
});

test("no batch spans a roll, so a roll never syncs on the event loop (big queues, batches straddling a segment's end)", async () => {
  class CountingIo extends RecordingIo {
    inlineSyncs = 0;
    override datasyncSync(fd: number): void {
      this.inlineSyncs++;
      super.datasyncSync(fd);
    }
  }
  const SEG = 64 * 1024;
  const big = (i: number) => rec(i, 1, "x".repeat(0.6 * SEG));
  for (const fsync of ["always", "everysec", "no"] as const) {
    for (const preallocate of [false, true]) {
      const dir = tempDir();
      const io = new CountingIo();
      const wal = await Wal.open({ dataDir: dir, io, fsync, segmentBytesMax: SEG, preallocate, everysecIntervalMs: 60_000 });
      // Appends of 0.6 segment queued together: each batch must stop at the segment's end.
      await Promise.all([1, 2, 3, 4].map((i) => wal.append([big(i)])));
      // A batch whose first append fits and whose second does not.
      await wal.append([rec(5, 1, "y".repeat(0.3 * SEG))]);
      await Promise.all([wal.append([rec(6, 1, "z".repeat(0.3 * SEG))]), wal.append([rec(7, 1, "z".repeat(0.3 * SEG))])]);
      expect(wal.segmentNames().length).toBeGreaterThanOrEqual(5);
      expect(io.inlineSyncs).toBe(0);
      await wal.close();
      const again = await Wal.open({ dataDir: dir, segmentBytesMax: SEG });
      expect([...again.replay(1)].map((r) => r.index)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      await again.close();
    }
  }
});

test("truncateAfter and reset wait for a background fsync in flight instead of deleting or reopening its file", async () => {
  for (const op of ["truncateAfter", "reset"] as const) {
    const dir = tempDir();
    const io = new RecordingIo();
    const held: (() => void)[] = [];
    let hold = false;
    io.beforeDatasync = () => (hold ? new Promise<void>((go) => held.push(go)) : undefined);
    const wal = await Wal.open({ dataDir: dir, io, fsync: "everysec", everysecIntervalMs: 5, segmentBytesMax: 300, preallocate: false });
    for (let i = 1; i <= 8; i++) await wal.append([rec(i, 1, "t".repeat(60))]);
    expect(wal.segmentNames().length).toBeGreaterThan(2);
    hold = true;
    await wal.append([rec(9, 1, "u".repeat(60))]); // the background sync of this one is held
    for (let i = 0; i < 500 && held.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    expect(held.length).toBeGreaterThan(0);
    let done = false;
    const p = (op === "truncateAfter" ? wal.truncateAfter(2) : wal.reset(20, 3)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false); // waiting for the fsync, not deleting its file under it
    hold = false;
    for (const go of held.splice(0)) go();
    await p;
    expect(wal.failure).toBeUndefined();
    expect(wal.lastIndex()).toBe(op === "truncateAfter" ? 2 : 20);
    await wal.close();
  }
});

test("a failed sync before a roll refuses the waiting appends (never written) and leaves no new segment", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: dir, io, fsync: "no", segmentBytesMax: 400, preallocate: false });
  for (let i = 1; i <= 4; i++) await wal.append([rec(i, 1, "r".repeat(40))]);
  io.failNext("datasync", "EIO");
  await expect(wal.append([rec(5, 1, "s".repeat(200))])).rejects.toBeInstanceOf(WalFailedError);
  expect(wal.failure?.code).toBe("EIO");
  await expect(wal.append([rec(5, 1, "t")])).rejects.toBeInstanceOf(WalFailedError);
  await wal.close().catch(() => {});
  expect(walFiles(dir).length).toBe(1);
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 400, preallocate: false });
  expect(again.lastIndex()).toBe(4);
  await again.close();
});

test("everysec: a failed background fsync fails the WAL; later appends are refused", async () => {
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: tempDir(), io, fsync: "everysec", everysecIntervalMs: 10 });
  io.failNext("datasync", "EIO");
  await wal.append([rec(1)]); // acknowledged after write(2), as everysec promises
  for (let i = 0; i < 300 && !wal.failure; i++) await new Promise((r) => setTimeout(r, 10));
  expect(wal.failure?.code).toBe("EIO");
  await expect(wal.append([rec(2)])).rejects.toBeInstanceOf(WalFailedError);
  await wal.close();
});

test("close waits for queued appends and syncs them", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, fsync: "no" });
  const p = wal.append(recs(1, 50));
  await wal.close();
  await p;
  const again = await Wal.open({ dataDir: dir });
  expect(again.lastIndex()).toBe(50);
  await again.close();
});

test("preallocation: later segments are renamed-in zero-filled spares, written in place, trimmed when rolled", async () => {
  const dir = tempDir();
  const io = new RecordingIo();
  const wal = await Wal.open({ dataDir: dir, io, segmentBytesMax: 4096 });
  const { readdirSync, statSync } = await import("node:fs");
  for (let i = 1; i <= 200; i++) {
    await wal.append([rec(i, 1, "p".repeat(60))]);
    if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5)); // let the spare get ready
  }
  expect(io.count("preallocate")).toBeGreaterThan(1);
  expect(io.events.some((e) => e.op === "rename" && e.path!.endsWith(".seg"))).toBe(true);
  const segs = walFiles(dir);
  expect(segs.length).toBeGreaterThan(3);
  // Every segment but the last ends exactly at its last record (no zero tails inside the log).
  for (const f of segs.slice(0, -1)) expect(statSync(join(dir, "wal", f)).size).toBeLessThanOrEqual(4096);
  const lastSize = statSync(join(dir, "wal", segs[segs.length - 1]!)).size;
  await wal.close();
  expect(readdirSync(join(dir, "wal")).filter((n) => !n.endsWith(".seg")).length).toBeLessThanOrEqual(1); // at most the spare
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 4096 });
  expect(again.lastIndex()).toBe(200);
  expect([...again.replay(1)].map((r) => r.index)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  expect(again.recovery.truncated).toBeUndefined();
  expect(lastSize).toBeGreaterThan(0);
  await again.close();
  // A spare of another size (segmentBytesMax changed) is removed at open; one of the right size is reused.
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(dir, "wal", "next-segment.prealloc"), new Uint8Array(100));
  const third = await Wal.open({ dataDir: dir, segmentBytesMax: 4096 });
  expect(readdirSync(join(dir, "wal")).filter((n) => !n.endsWith(".seg"))).toEqual([]);
  await third.close();
  // A right-size spare next to a log whose last segment was not preallocated: reused at once.
  const d2 = tempDir();
  const plain = await Wal.open({ dataDir: d2, segmentBytesMax: 4096, preallocate: false });
  await plain.append([rec(1)]);
  await plain.close();
  writeFileSync(join(d2, "wal", "next-segment.prealloc"), new Uint8Array(4096));
  const fourth = await Wal.open({ dataDir: d2, segmentBytesMax: 4096 });
  await fourth.append([rec(2)]);
  expect(fourth.segmentNames()).toEqual(["00000000000000000001.seg", "00000000000000000002.seg"]);
  expect(readdirSync(join(d2, "wal")).sort()).toEqual(["00000000000000000001.seg", "00000000000000000002.seg"]);
  expect(statSync(join(d2, "wal", "00000000000000000002.seg")).size).toBe(4096);
  await fourth.close();
  const fifth = await Wal.open({ dataDir: d2, segmentBytesMax: 4096 });
  expect(fifth.lastIndex()).toBe(2);
  await fifth.close();
});

test("preallocation failure (disk full) only costs speed: segments are created without it", async () => {
  const io = new RecordingIo();
  for (let k = 0; k < 20; k++) io.failNext("preallocate", "ENOSPC");
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, io, segmentBytesMax: 2048 });
  for (let i = 1; i <= 100; i++) {
    await wal.append([rec(i, 1, "p".repeat(60))]);
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  expect(wal.failure).toBeUndefined();
  expect(walFiles(dir).length).toBeGreaterThan(2);
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 2048 });
  expect(again.lastIndex()).toBe(100);
  await again.close();
});

test("preallocation: once a spare is ready, a non-preallocated first segment is left early for it", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 8 * 1024 * 1024 });
  let i = 0;
  for (; i < 12; i++) await wal.append([rec(i + 1, 1, "x".repeat(100_000))]); // 1.2 MB: past the spare threshold
  for (let t = 0; t < 300 && wal.segmentNames().length < 2; t++) {
    await wal.append([rec(++i, 1, "small")]);
    await new Promise((r) => setTimeout(r, 10));
  }
  const names = wal.segmentNames();
  expect(names.length).toBe(2);
  const { statSync } = await import("node:fs");
  expect(statSync(join(dir, "wal", names[1]!)).size).toBe(8 * 1024 * 1024); // the preallocated spare
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 8 * 1024 * 1024 });
  expect(again.lastIndex()).toBe(i);
  expect(again.recovery.zeroTailBytes).toBeGreaterThan(0);
  await again.close();
});

/** A data dir whose log (1000-byte segments) holds records 1-300 over terms 1-4 and a last record bigger than a segment. */
async function manySegments(): Promise<string> {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 1000 });
  for (let i = 1; i <= 300; i += 30) await wal.append(recs(i, i + 29, 1 + Math.floor(i / 100)));
  await wal.append([{ ...rec(301, 4), payload: new Uint8Array(10_000).fill(7) }]);
  await wal.close();
  return dir;
}

test("replayEach passes exactly what replay() yields, across segments and from any index, and rechecks checksums", async () => {
  const { readFileSync, writeFileSync } = await import("node:fs");
  const dir = await manySegments();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 1000 });
  expect(walFiles(dir).length).toBeGreaterThan(3);
  for (const from of [1, 2, 29, 150, 300, 301, 302]) {
    const expected = [...again.replay(from)].map((r) => [r.index, r.term, r.type, r.timestampMs, Buffer.from(r.payload).toString("latin1")]);
    const got: unknown[] = [];
    const n = again.replayEach(from, (index, term, type, ts, buf, s, e) => got.push([index, term, type, ts, buf.latin1Slice(s, e)]));
    expect(got).toEqual(expected);
    expect(n).toBe(expected.length);
  }
  await again.close();
  // Damage after open: replayEach refuses the record, as entries() does.
  const reopened = await Wal.open({ dataDir: dir, segmentBytesMax: 1000 });
  const seg = join(dir, "wal", walFiles(dir)[1]!);
  const b = readFileSync(seg);
  b[40] = b[40]! ^ 1;
  writeFileSync(seg, b);
  expect(() => reopened.replayEach(1, () => {})).toThrow(/no longer reads back intact/);
  await reopened.close();
});

test("replayEach with map: the same records from mapped segments, payloads valid after the call; unmappable segments are read", async () => {
  const { readFileSync, writeFileSync } = await import("node:fs");
  const dir = await manySegments();
  const io = new RecordingIo();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 1000, io });
  const segments = walFiles(dir).length;
  expect(segments).toBeGreaterThan(3);
  for (const from of [1, 29, 150, 300]) {
    const expected = [...again.replay(from)].map((r) => [r.index, r.term, r.type, r.timestampMs, Buffer.from(r.payload).toString("latin1")]);
    const kept: [number, number, number, number, Buffer, number, number][] = [];
    const flags = new Set<boolean>();
    const maps = io.count("map");
    const n = again.replayEach(from, (index, term, type, ts, buf, s, e, mapped) => {
      flags.add(mapped);
      kept.push([index, term, type, ts, buf, s, e]);
    }, { map: true });
    expect(n).toBe(expected.length);
    expect([...flags]).toEqual([true]);
    expect(io.count("map") - maps).toBe(new Set(kept.map((k) => k[4])).size); // one mapping per segment
    // Read only now, after every call returned: the mapped payloads are still the records.
    expect(kept.map(([i, t, ty, ts, b, s, e]) => [i, t, ty, ts, b.latin1Slice(s, e)])).toEqual(expected);
  }
  // A segment that cannot be mapped is read (mapped = false) and gives the same records.
  io.failNext("map", "ENODEV");
  const viaRead: unknown[] = [];
  const flags: boolean[] = [];
  again.replayEach(1, (index, _t, _ty, _ts, buf, s, e, mapped) => {
    flags.push(mapped);
    viaRead.push([index, buf.latin1Slice(s, e)]);
  }, { map: true });
  expect(viaRead).toEqual([...again.replay(1)].map((r) => [r.index, Buffer.from(r.payload).toString("latin1")]));
  expect(flags[0]).toBe(false);
  expect(flags.at(-1)).toBe(true);
  await again.close();

  // A record whose index changed after open is refused from the mapping too.
  const reopened = await Wal.open({ dataDir: dir, segmentBytesMax: 1000 });
  const seg = join(dir, "wal", walFiles(dir)[1]!);
  const b = readFileSync(seg);
  b[8] = b[8]! ^ 1; // the first record's index
  writeFileSync(seg, b);
  expect(() => reopened.replayEach(1, () => {}, { map: true })).toThrow(/no longer reads back intact/);
  await reopened.close();
});
