// Hard-state records (type 4) in the WAL: they take no index, every read and scan passes over
// them (whole reads, windowed and structural scans, mapped replay), hard-state-only appends never
// roll a segment, and truncation drops the ones after the cut.
import { afterEach, expect, test } from "bun:test";
import { decodeHardStatePayload, encodeHardStatePayload, type LogRecord, RecordType } from "../../src/storage/codec.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, tempDir, text, walFiles } from "./helpers.ts";

afterEach(cleanupTempDirs);

function hs(nextIndex: number, term: number, commit: number): LogRecord {
  return { index: nextIndex, term, type: RecordType.HardState, timestampMs: 0, payload: encodeHardStatePayload({ term: term + 1, vote: 2, commit }) };
}

test("entries and hard states interleaved: reads, replay (read and mapped) and reopen see the entries only", async () => {
  const dir = tempDir();
  let wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300, preallocate: false });
  let expectPayloads: string[] = [];
  for (let i = 1; i <= 30; i++) {
    const batch = [rec(i, 1, `value-${i}-${"z".repeat(i % 5)}`)];
    if (i % 3 === 0) batch.push(hs(i + 1, 1, i));
    await wal.append(batch);
    expectPayloads.push(`value-${i}-${"z".repeat(i % 5)}`);
    if (i % 4 === 0) await wal.append([hs(i + 1, 1, i - 1)]); // hard state alone
  }
  const check = (w: Wal) => {
    expect(w.firstIndex()).toBe(1);
    expect(w.lastIndex()).toBe(30);
    expect(w.entries(1, 31).map(text)).toEqual(expectPayloads);
    expect(w.entries(1, 31).every((r) => r.type === RecordType.Command)).toBe(true);
    for (const map of [false, true]) {
      const seen: string[] = [];
      w.replayEach(1, (index, _t, type, _ts, buf, a, b) => {
        expect(type).toBe(RecordType.Command);
        seen.push(`${index}:${buf.latin1Slice(a, b)}`);
      }, { map });
      expect(seen).toEqual(expectPayloads.map((p, i) => `${i + 1}:${p}`));
    }
    expect(decodeHardStatePayload(w.lastHardState()!.payload)).toEqual({ term: 2, vote: 2, commit: 30 });
    expect(w.lastHardState()!.index).toBe(31);
  };
  check(wal);
  expect(walFiles(dir).length).toBeGreaterThan(3);
  await wal.close();
  // Reopened with every segment but the last trusted (structural scan), then checked fully.
  for (const trustThrough of [0, 29]) {
    wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300, preallocate: false, trustThrough });
    check(wal);
    await wal.close();
  }
  // Truncation drops the hard states after the cut; the newest one before it is found on open.
  wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300, preallocate: false });
  await wal.truncateAfter(10);
  expect(wal.lastHardState()).toBeUndefined(); // the newest (after 30) went; the one kept is older
  await wal.close();
  wal = await Wal.open({ dataDir: dir, segmentBytesMax: 300, preallocate: false });
  expect(wal.lastIndex()).toBe(10);
  const h = wal.lastHardState()!;
  expect(h.index).toBeLessThanOrEqual(11);
  expect(decodeHardStatePayload(h.payload)!.commit).toBe(9);
  expectPayloads = expectPayloads.slice(0, 10);
  expect(wal.entries(1, 11).map(text)).toEqual(expectPayloads);
  await wal.close();
});

test("appends of hard states alone never roll a segment, even past its size", async () => {
  const dir = tempDir();
  const wal = await Wal.open({ dataDir: dir, segmentBytesMax: 100, preallocate: false });
  for (let i = 0; i < 5; i++) await wal.append([hs(1, 0, 0)]);
  expect(walFiles(dir)).toEqual(["00000000000000000001.seg"]);
  await wal.append([rec(1, 1, "x".repeat(40))]);
  await wal.append([rec(2, 1, "y".repeat(40))]);
  expect(walFiles(dir)).toEqual(["00000000000000000001.seg", "00000000000000000002.seg"]);
  await wal.close();
  const again = await Wal.open({ dataDir: dir, segmentBytesMax: 100, preallocate: false });
  expect(again.entries(1, 3).map(text)).toEqual(["x".repeat(40), "y".repeat(40)]);
  await again.close();
});
