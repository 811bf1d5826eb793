// Real disk faults: a read-only file system and a full one. As root (where permission bits do not
// bind), a private mount namespace (unshare -m) gets a tmpfs that is read-only or tiny; the mounts
// vanish with the child. As a normal user, chmod makes the dir unwritable; without mount rights the
// full-disk case (and, for root, the read-only case) runs with injected errors instead.
import { afterEach, expect, test } from "bun:test";
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { DataDirError, StorageIoError, WalFailedError } from "../../src/storage/errors.ts";
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
