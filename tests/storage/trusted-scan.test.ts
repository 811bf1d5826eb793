// Recovery trusts log segments wholly covered by a verified snapshot (structure only, no
// checksums); a fallback to an older snapshot checks them fully again.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CorruptLogError } from "../../src/errors.ts";
import { openStorage, SnapshotStore, Wal } from "../../src/storage/index.ts";
import { cleanupTempDirs, recs, tempDir, walFiles } from "./helpers.ts";

afterAll(cleanupTempDirs);

async function build(dataDir: string): Promise<void> {
  const wal = await Wal.open({ dataDir, fsync: "always", segmentBytesMax: 2048 });
  for (let i = 1; i <= 200; i += 20) await wal.append(recs(i, i + 19));
  await wal.close();
  expect(walFiles(dataDir).length).toBeGreaterThan(3);
}

function flipPayloadBit(path: string): void {
  const b = readFileSync(path);
  b[75] = b[75]! ^ 0x01; // inside the second record's payload (it starts at 40: header 8, index, term, type, time): only the checksum notices
  writeFileSync(path, b);
}

test("damage in a segment covered by the newest valid snapshot does not stop recovery; fallback rechecks it", async () => {
  const dataDir = tempDir();
  await build(dataDir);
  const snaps = SnapshotStore.open(dataDir);
  await snaps.write({ lastIndex: 150, lastTerm: 1 }, [["k", "v", undefined]]);
  flipPayloadBit(join(dataDir, "wal", walFiles(dataDir)[0]!));

  // The covered segment is only walked structurally: recovery succeeds from the snapshot.
  const s = await openStorage({ dataDir });
  expect(s.snapshot?.lastIndex).toBe(150);
  expect(s.wal.lastIndex()).toBe(200);
  // Reading the damaged records still checks their checksums.
  expect(() => [...s.wal.replay(s.wal.firstIndex())]).toThrow();
  await s.close();

  // Without a usable snapshot the same segment is fully verified: the damage is reported.
  const snapFile = readdirSync(join(dataDir, "snap")).find((f) => f.endsWith(".snap"))!;
  const sb = readFileSync(join(dataDir, "snap", snapFile));
  sb[sb.length - 1] = sb[sb.length - 1]! ^ 0xff;
  writeFileSync(join(dataDir, "snap", snapFile), sb);
  let err: unknown;
  try {
    await openStorage({ dataDir });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CorruptLogError);
  expect((err as CorruptLogError).file).toContain(walFiles(dataDir)[0]!);
});

test("structural damage (a broken length) in a covered segment is still found", async () => {
  const dataDir = tempDir();
  await build(dataDir);
  const snaps = SnapshotStore.open(dataDir);
  await snaps.write({ lastIndex: 150, lastTerm: 1 }, [["k", "v", undefined]]);
  const seg = join(dataDir, "wal", walFiles(dataDir)[1]!);
  const b = readFileSync(seg);
  b.writeUInt32LE(7, 0); // impossible record length
  writeFileSync(seg, b);
  await expect(openStorage({ dataDir })).rejects.toBeInstanceOf(CorruptLogError);
});
