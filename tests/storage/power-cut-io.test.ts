// The power-cut twin itself (what survives a cut), and durability bugs it found, as regression tests.
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type DiskImage, PowerCutIo } from "../../src/storage/power-cut.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, tempDir } from "./helpers.ts";

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
