// The power-cut twin itself (what survives a cut), and durability bugs it found, as regression tests.
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptLogError } from "../../src/errors.ts";
import { recordBytes } from "../../src/storage/codec.ts";
import { type DiskImage, PowerCutIo } from "../../src/storage/power-cut.ts";
import { SECTOR_BYTES } from "../../src/storage/segment.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, recs, tempDir, walFiles } from "./helpers.ts";

afterEach(cleanupTempDirs);

/** A random source that makes every choice its lowest: no unsynced operation reaches the disk. */
const nothingUnsynced = () => 0;
/** ... its highest: every unsynced operation reaches the disk, none torn. */
const everythingUnsynced = () => 0.999999;

function materialize(image: DiskImage): string {
  const dir = tempDir();
  for (const d of image.dirs) mkdirSync(join(dir, d));
  for (const [path, bytes] of image.files) writeFileSync(join(dir, path), bytes);
  return dir;
}

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

test("twin: only fsynced data and fsynced directory entries survive; an fsync covers what was written before it was called", async () => {
  const root = tempDir();
  const io = new PowerCutIo(root, () => 0);
  io.outOfOrder = false;
  io.mkdirp(join(root, "d"));
  io.fsyncDir(root);
  const fd = io.openAppend(join(root, "d", "f"));
  io.write(fd, new TextEncoder().encode("hello "));
  expect(io.image(nothingUnsynced)).toEqual({ dirs: ["d"], files: new Map() }); // the create is not synced
  io.fsyncDir(join(root, "d"));
  expect(io.image(nothingUnsynced).files).toEqual(new Map([["d/f", new Uint8Array(0)]]));
  const sync = io.datasync(fd); // called now: covers "hello ", not what follows
  io.write(fd, new TextEncoder().encode("world"));
  await sync;
  expect(text(io.image(nothingUnsynced).files.get("d/f"))).toBe("hello ");
  expect(text(io.image(everythingUnsynced).files.get("d/f"))).toBe("hello world");
  // A torn prefix: any length between.
  const seen = new Set<string>();
  let s = 1;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < 300; i++) seen.add(text(io.image(rand).files.get("d/f"))!);
  for (const t of seen) expect("hello world".startsWith(t) && t.startsWith("hello ")).toBe(true);
  expect(seen.size).toBe(6);
  // Out of order (half the images): the size as of one point, the sector's bytes as of another
  // (zeros where that version had none).
  io.outOfOrder = true;
  seen.clear();
  for (let i = 0; i < 300; i++) seen.add(text(io.image(rand).files.get("d/f"))!);
  expect(seen).toContain("hello \0\0\0\0\0");
  for (const t of seen) expect(t === "hello \0\0\0\0\0" || ("hello world".startsWith(t) && t.startsWith("hello "))).toBe(true);
  // A rename not synced: the old name (with its synced content) survives, not the new one.
  io.fsyncSync(fd);
  io.close(fd);
  io.rename(join(root, "d", "f"), join(root, "d", "g"));
  expect([...io.image(nothingUnsynced).files.keys()]).toEqual(["d/f"]);
  expect([...io.image(everythingUnsynced).files.keys()]).toEqual(["d/g"]);
  io.verifyAgainstDisk();
});

test("a fresh data dir: the wal/ and snap/ directories' own entries are fsynced, so an acknowledged append survives a power cut", async () => {
  const dataDir = tempDir();
  const io = new PowerCutIo(dataDir, () => 0);
  const wal = await Wal.open({ dataDir, io });
  await wal.append([rec(1)]);
  const image = io.image(nothingUnsynced);
  await wal.close();
  // Before: mkdir wal/ was never followed by an fsync of the data dir: the cut took wal/ away.
  expect(image.dirs).toContain("wal");
  const again = await Wal.open({ dataDir: materialize(image) });
  expect(again.lastIndex()).toBe(1);
  await again.close();
});

test("a power cut that persisted a later sector before an earlier one: the torn record and the unacknowledged ones after it are cut; a flipped bit there still stops the node", async () => {
  const dataDir = tempDir();
  const wal = await Wal.open({ dataDir, preallocate: false });
  await wal.append(recs(1, 3));
  await wal.append([rec(4, 1, "x".repeat(1500))]);
  await wal.append([rec(5), rec(6)]);
  await wal.close();
  const seg = walFiles(dataDir)[0]!;
  const bytes = readFileSync(join(dataDir, "wal", seg));
  const o4 = recs(1, 3).reduce((n, r) => n + recordBytes(r), 0);
  const o5 = o4 + recordBytes(rec(4, 1, "x".repeat(1500)));
  const sector = Math.ceil(o4 / SECTOR_BYTES) * SECTOR_BYTES;
  expect(sector + SECTOR_BYTES).toBeLessThan(o5);
  const copy = (mutate: (b: Buffer) => void) => {
    const dir = tempDir();
    mkdirSync(join(dir, "wal"));
    const b = Buffer.from(bytes);
    mutate(b);
    writeFileSync(join(dir, "wal", seg), b);
    return dir;
  };
  // A sector inside record 4 never written (zeros); records 5 and 6 after it reached the disk.
  const torn = await Wal.open({ dataDir: copy((b) => b.fill(0, sector, sector + SECTOR_BYTES)), preallocate: false });
  expect(torn.lastIndex()).toBe(3);
  expect(torn.recovery.truncated).toMatchObject({ offset: o4, bytesDropped: bytes.length - o4 });
  await torn.close();
  // One flipped bit in record 4 is damage, not a power cut: kv refuses to start.
  await expect(Wal.open({ dataDir: copy((b) => (b[sector + 10]! ^= 4)), preallocate: false })).rejects.toBeInstanceOf(CorruptLogError);
});
