// The data dir lock: one process per data dir; a lock left by a process that is gone (exited,
// or killed and not yet reaped) is taken over; nothing in the dir changes before the lock is held.
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDirError } from "../../src/storage/errors.ts";
import { lockDataDir, openStorage } from "../../src/storage/index.ts";
import { cleanupTempDirs, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

/** A process that lives for a few seconds, for a lock owned by someone else. */
function liveProcess() {
  return Bun.spawn(["sleep", "5"], { stdout: "ignore", stderr: "ignore" });
}

function procState(pid: number): string {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "latin1");
    return s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3);
  } catch {
    return "";
  }
}

test("a lock held by a live process is refused; one whose process exited is taken over", async () => {
  const dir = tempDir();
  const other = liveProcess();
  try {
    writeFileSync(join(dir, "LOCK"), `${other.pid}\n`);
    expect(() => lockDataDir(dir)).toThrow(DataDirError);
    expect(() => lockDataDir(dir)).toThrow(`in use by another kv process (pid ${other.pid})`);
  } finally {
    other.kill(9);
    await other.exited;
  }
  const lock = lockDataDir(dir); // other is gone and reaped
  expect(readFileSync(join(dir, "LOCK"), "latin1")).toBe(`${process.pid}\n`);
  lock.release();
  expect(existsSync(join(dir, "LOCK"))).toBe(false);
});

test("a lock whose process was killed but not yet reaped (a zombie) is taken over", async () => {
  const dir = tempDir();
  // sh starts a child that exits shortly after sh has become `sleep 5`, which never reaps it: a
  // zombie. (A child that exited before the exec could be reaped by sh itself.)
  const parent = Bun.spawn(["sh", "-c", "sleep 1 & echo $!; exec sleep 8"], { stdout: "pipe", stderr: "ignore" });
  try {
    const reader = parent.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    const zombie = Number.parseInt(new TextDecoder().decode(first.value), 10);
    expect(zombie).toBeGreaterThan(0);
    for (let i = 0; i < 1000 && procState(zombie) !== "Z"; i++) await Bun.sleep(5);
    expect(procState(zombie)).toBe("Z");
    writeFileSync(join(dir, "LOCK"), `${zombie}\n`);
    const lock = lockDataDir(dir);
    expect(readFileSync(join(dir, "LOCK"), "latin1")).toBe(`${process.pid}\n`);
    lock.release();
  } finally {
    parent.kill(9);
    await parent.exited;
  }
});

test("a second process refused by the lock leaves the running node's snapshot temp file alone", async () => {
  const dir = tempDir();
  mkdirSync(join(dir, "snap"), { recursive: true });
  const tmp = join(dir, "snap", "00000000000000000042.snap.tmp");
  writeFileSync(tmp, "being written");
  const other = liveProcess();
  try {
    writeFileSync(join(dir, "LOCK"), `${other.pid}\n`);
    await expect(openStorage({ dataDir: dir, fsync: "always" })).rejects.toThrow("in use by another kv process");
    expect(existsSync(tmp)).toBe(true);
  } finally {
    other.kill(9);
    await other.exited;
  }
  // Once the dir is free, opening it cleans the leftover up.
  const s = await openStorage({ dataDir: dir, fsync: "always" });
  expect(existsSync(tmp)).toBe(false);
  await s.close();
});

test("processes racing for the lock never hold it at the same time (the pid is in LOCK before its name appears)", async () => {
  const dir = tempDir();
  const child = join(import.meta.dir, "fixtures", "lock-child.ts");
  // Bounded by rounds and by time; 4 racers on the same dir.
  const startAt = String(Date.now() + 500);
  const procs = Array.from({ length: 4 }, () => Bun.spawn([process.execPath, child, dir, "20000", startAt, "2000"], { stdout: "pipe", stderr: "pipe" }));
  const outs = await Promise.all(procs.map(async (p) => [await new Response(p.stdout).text(), await new Response(p.stderr).text(), await p.exited] as const));
  let acquired = 0;
  for (const [out, err, code] of outs) {
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).not.toContain("VIOLATION");
    acquired += Number(/DONE (\d+)/.exec(out)![1]);
  }
  expect(acquired).toBeGreaterThan(0);
  expect(existsSync(join(dir, "LOCK"))).toBe(false);
});

test("an empty LOCK (an older kv killed between creating and writing it) and temp files of dead lockers are cleaned up", async () => {
  const dir = tempDir();
  const gone = Bun.spawn(["true"]);
  await gone.exited;
  writeFileSync(join(dir, "LOCK"), "");
  writeFileSync(join(dir, `LOCK.${gone.pid}.abc123.tmp`), `${gone.pid}\n`);
  const lock = lockDataDir(dir);
  expect(readFileSync(join(dir, "LOCK"), "latin1")).toBe(`${process.pid}\n`);
  expect(readdirSync(dir).sort()).toEqual(["LOCK"]);
  lock.release();
  expect(readdirSync(dir)).toEqual([]);
});
