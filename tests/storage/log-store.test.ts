// The same contract checks against the disk WAL and its in-memory twin.
import { afterEach, expect, test } from "bun:test";
import { AssertionError } from "../../src/errors.ts";
import { StorageIoError, WalFailedError } from "../../src/storage/errors.ts";
import { type LogStore, MemoryLogStore } from "../../src/storage/log-store.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, recs, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

const impls: [string, () => Promise<LogStore>][] = [
  ["MemoryLogStore", async () => new MemoryLogStore()],
  ["Wal", async () => Wal.open({ dataDir: tempDir(), segmentBytesMax: 200 })],
];

for (const [name, make] of impls) {
  test(`${name}: append, term, entries, truncateAfter, deleteThrough, reset`, async () => {
    const s = await make();
    expect([s.firstIndex(), s.lastIndex(), s.term(0)]).toEqual([1, 0, 0]);
    await s.append(recs(1, 5, 1));
    await s.append(recs(6, 10, 2));
    expect(s.term(5)).toBe(1);
    expect(s.term(6)).toBe(2);
    expect(s.term(11)).toBeUndefined();
    expect(s.entries(4, 8).map((r) => r.index)).toEqual([4, 5, 6, 7]);
    expect([...s.replay(8)].map((r) => r.index)).toEqual([8, 9, 10]);
    expect(() => s.append([rec(12)])).toThrow(AssertionError);
    await s.truncateAfter(7);
    expect(s.lastIndex()).toBe(7);
    await s.append([rec(8, 3)]);
    expect(s.term(8)).toBe(3);
    await s.deleteThrough(5);
    expect(s.firstIndex()).toBeLessThanOrEqual(6);
    expect(s.lastIndex()).toBe(8);
    expect(s.entries(6, 9).length).toBe(3);
    await s.reset(20, 5);
    expect([s.firstIndex(), s.lastIndex(), s.term(20)]).toEqual([21, 20, 5]);
    await s.append([rec(21, 5)]);
    await s.sync();
    await s.close();
  });
}

test("MemoryLogStore: an injected failure rejects like the disk WAL", async () => {
  const s = new MemoryLogStore();
  await s.append([rec(1)]);
  s.failNextAppend("ENOSPC");
  await expect(s.append([rec(2)])).rejects.toBeInstanceOf(StorageIoError);
  await expect(s.append([rec(2)])).rejects.toBeInstanceOf(WalFailedError);
  expect(s.lastIndex()).toBe(1);
});
