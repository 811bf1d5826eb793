// One process per data dir: a LOCK file holding the owner's pid. A lock whose pid is gone (kill -9)
// is taken over; a live owner makes startup fail with a clear message instead of two writers
// interleaving records in the same segment.
//
// LOCK never exists without its pid: the pid is written into a temp file first, which then gets
// the name LOCK with link(2) (fails when the name exists: no replace). Creating LOCK and then
// writing it let a racing process read it empty, judge it stale and take it over. Nothing is
// fsynced: after a power cut no owner is alive, and a LOCK left empty or missing is stale anyway.
import * as fs from "node:fs";
import { join } from "node:path";
import { DataDirError } from "./errors.ts";

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

const LOCK = "LOCK";
const TMP_RE = /^LOCK\.(\d+)\.[0-9a-z]+\.(tmp|stale)$/;
/** Rounds of "taken by someone: look at it, move a stale one aside, try again" before giving up. */
const ATTEMPTS_MAX = 16;

export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, LOCK);
  const tag = `${process.pid}.${Math.random().toString(36).slice(2, 10)}`;
  const tmp = join(dataDir, `LOCK.${tag}.tmp`);
  const aside = join(dataDir, `LOCK.${tag}.stale`);
  let ino: number;
  try {
    const fd = fs.openSync(tmp, "wx");
    try {
      fs.writeSync(fd, `${process.pid}\n`);
      ino = fs.fstatSync(fd).ino;
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new DataDirError(`cannot create ${tmp}: ${(e as Error).message}`, path, e);
  }
  try {
    for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt++) {
      try {
        fs.linkSync(tmp, path);
        removeLeftovers(dataDir);
        return { path, release: () => releaseIfOurs(path, ino) };
      } catch (e) {
        if (codeOf(e) !== "EEXIST") throw new DataDirError(`cannot create ${path}: ${(e as Error).message}`, path, e);
      }
      const held = readHolder(path);
      if (held === undefined) continue; // released meanwhile
      if (held.pid !== undefined && held.pid !== process.pid && isAlive(held.pid)) {
        throw new DataDirError(`data dir ${dataDir} is in use by another kv process (pid ${held.pid}); stop it first or choose another --data-dir`, path);
      }
      // Stale (its process is gone; or no pid: left by an older kv that crashed between creating
      // and writing it), or ours from an earlier open in this process: take it over. Move aside
      // whatever LOCK is now, atomically, and delete it only if it is the file judged stale: a
      // racer may have taken the lock over in between, and its LOCK must stay.
      try {
        fs.renameSync(path, aside);
      } catch (e) {
        if (codeOf(e) === "ENOENT") continue;
        throw new DataDirError(`cannot take over the stale ${path}: ${(e as Error).message}`, path, e);
      }
      if (fs.statSync(aside).ino !== held.ino) {
        // A racer's fresh lock: put it back (link: never over a LOCK made meanwhile).
        try {
          fs.linkSync(aside, path);
        } catch {}
      }
      fs.unlinkSync(aside);
    }
    throw new DataDirError(`could not acquire ${path}: other processes kept taking it`, path);
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {}
  }
}

/** LOCK's owner pid (undefined when it holds none) and inode; undefined when there is no LOCK. */
function readHolder(path: string): { pid: number | undefined; ino: number } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (e) {
    if (codeOf(e) === "ENOENT") return undefined;
    throw new DataDirError(`cannot read ${path}: ${(e as Error).message}`, path, e);
  }
  try {
    const buf = Buffer.alloc(32);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const pid = Number.parseInt(buf.toString("latin1", 0, n), 10);
    return { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, ino: fs.fstatSync(fd).ino };
  } finally {
    fs.closeSync(fd);
  }
}

/** Temp and set-aside files of lock attempts whose process is gone (killed part-way). */
function removeLeftovers(dataDir: string): void {
  for (const name of fs.readdirSync(dataDir)) {
    const m = TMP_RE.exec(name);
    if (m === null || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue;
    try {
      fs.unlinkSync(join(dataDir, name));
    } catch {}
  }
}

function releaseIfOurs(path: string, ino: number): void {
  // Ours only if it is still the inode we linked (a process that judged it stale may have replaced it).
  const held = readHolder(path);
  if (held !== undefined && held.ino === ino && held.pid === process.pid) {
    try {
      fs.unlinkSync(path);
    } catch {}
  }
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: string } | undefined)?.code;
}

function readOr(path: string, fallback: string): string {
  try {
    return fs.readFileSync(path, "latin1");
  } catch {
    return fallback;
  }
}

/** Whether `pid` is a live process (not gone, not a zombie awaiting its parent). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return codeOf(e) === "EPERM";
  }
  // A killed process its parent has not reaped yet still answers signal 0: a zombie holds no files.
  const stat = readOr(`/proc/${pid}/stat`, "");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}
