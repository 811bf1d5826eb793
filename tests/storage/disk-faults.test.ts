// Real disk faults: a read-only file system and a full one. As root (where permission bits do not
// bind), a private mount namespace (unshare -m) gets a tmpfs that is read-only or tiny; the mounts
// vanish with the child. As a normal user, chmod makes the dir unwritable; without mount rights the
// full-disk case (and, for root, the read-only case) runs with injected errors instead.
import { afterEach, expect, test } from "bun:test";
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { DataDirError, StorageIoError, WalFailedError } from "../../src/storage/errors.ts";
import { nodeIo, writeAll, ZERO_WRITES_MAX, ZeroByteWriteError } from "../../src/storage/io.ts";
import { RecordingIo } from "../../src/storage/testing.ts";
import { Wal } from "../../src/storage/wal.ts";
import { cleanupTempDirs, rec, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

const isRoot = process.getuid?.() === 0;
/** Root with the right to make a private mount namespace (not the case in an unprivileged container). */
const canMount =
  isRoot && Bun.spawnSync(["sh", "-c", 'd=$(mktemp -d) && unshare -m --propagation private mount -t tmpfs -o size=64k tmpfs "$d"; r=$?; rmdir "$d"; exit $r']).exitCode === 0;
const child = join(import.meta.dir, "fixtures", "disk-child.ts");

function inNamespace(mountSetup: string, mode: string, dir: string): Record<string, any> {
  const script = `set -e; ${mountSetup}; exec "${process.execPath}" "${child}" ${mode} "${dir}/data"`;
  const r = Bun.spawnSync(["unshare", "-m", "--propagation", "private", "sh", "-c", script], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`child failed (${r.exitCode}): ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString().trim().split("\n").pop()!);
}

test("read-only data dir: open fails with a DataDirError saying what to fix", async () => {
  const dir = tempDir();
  if (canMount) {
    // The WAL holds data written earlier; the fs is then remounted read-only.
    const res = inNamespace(
      `mount -t tmpfs -o size=4m tmpfs "${dir}"; mkdir -p "${dir}/data/wal"; mount -o remount,ro "${dir}"`,
      "readonly",
      dir,
    );
    expect(res.error?.name).toBe("DataDirError");
    expect(res.error.message).toContain("EROFS");
    expect(res.error.message).toContain("read-only");
  } else if (isRoot) {
    // Root without mount rights: permission bits do not bind, so inject the error the kernel gives.
    const io = new RecordingIo();
    io.failNext("open", "EROFS");
    const err = await Wal.open({ dataDir: join(dir, "data"), io }).catch((e) => e);
    expect(err).toBeInstanceOf(DataDirError);
    expect(err.message).toContain("read-only");
  } else {
    mkdirSync(join(dir, "data", "wal"), { recursive: true });
    chmodSync(join(dir, "data", "wal"), 0o500);
    try {
      const err = await Wal.open({ dataDir: join(dir, "data") }).catch((e) => e);
      expect(err).toBeInstanceOf(DataDirError);
      expect(err.message).toContain("EACCES");
    } finally {
      chmodSync(join(dir, "data", "wal"), 0o700);
    }
  }
});

test("full disk: the failing append gets ENOSPC, later ones are refused, every acknowledged record survives", async () => {
  if (canMount) {
    const dir = tempDir();
    const res = inNamespace(`mount -t tmpfs -o size=256k tmpfs "${dir}"; mkdir -p "${dir}/data"`, "full", dir);
    expect(res.error).toMatchObject({ name: "StorageIoError", code: "ENOSPC" });
    expect(res.after).toMatchObject({ isFailed: true });
    expect(res.acked).toBeGreaterThan(100);
    expect(res.reopenedLastIndex).toBe(res.acked);
    expect(res.replayOk).toBe(true);
  } else {
    const io = new RecordingIo();
    const d = tempDir();
    const wal = await Wal.open({ dataDir: d, io });
    await wal.append([rec(1)]);
    io.failNext("write", "ENOSPC");
    const failed = await wal.append([rec(2)]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(failed).toBeInstanceOf(StorageIoError);
    expect(failed).toMatchObject({ code: "ENOSPC" });
    await expect(wal.append([rec(2)])).rejects.toBeInstanceOf(WalFailedError);
    await wal.close();
    const again = await Wal.open({ dataDir: d });
    expect(again.lastIndex()).toBe(1);
    await again.close();
  }
});

test("a write(2) that keeps returning 0 bytes fails with a typed error naming the file, instead of looping forever", async () => {
  // Unit: progress with some zero returns in between is fine; a run of zeros is not.
  const sink: number[] = [];
  let calls = 0;
  const flaky = (_fd: number, buf: Uint8Array, off: number, len: number) => {
    calls++;
    if (calls % 3 === 0) return 0;
    const n = Math.min(len, 2);
    sink.push(...buf.subarray(off, off + n));
    return n;
  };
  writeAll(3, new Uint8Array([1, 2, 3, 4, 5, 6, 7]), 0, flaky);
  expect(sink).toEqual([1, 2, 3, 4, 5, 6, 7]);
  // The WAL over a file layer whose write(2) stops making progress after a few bytes.
  let zeroCalls = 0;
  const stuck = (_fd: number, _buf: Uint8Array, _off: number, len: number) => {
    if (len > 100) return 5;
    if (++zeroCalls > 10_000) throw new Error("write kept looping on 0-byte writes");
    return 0;
  };
  const d = tempDir();
  const wal = await Wal.open({ dataDir: d, io: { ...nodeIo, write: (fd, buf, pos) => writeAll(fd, buf, pos, stuck) } });
  const err = await wal.append([rec(1, 1, "x".repeat(200))]).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(StorageIoError);
  expect((err as StorageIoError).path).toBe(join(d, "wal", "00000000000000000001.seg"));
  expect((err as StorageIoError).cause).toBeInstanceOf(ZeroByteWriteError);
  expect((err as Error).message).toContain(`returned 0 bytes ${ZERO_WRITES_MAX} times in a row`);
  expect(zeroCalls).toBe(ZERO_WRITES_MAX);
  await expect(wal.append([rec(1)])).rejects.toBeInstanceOf(WalFailedError);
  await wal.close();
});
