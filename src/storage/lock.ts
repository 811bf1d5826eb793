// One process per data dir: a LOCK file holding the owner's pid. A lock whose pid is gone (kill -9)
// is taken over; a live owner makes startup fail with a clear message instead of two writers
// interleaving records in the same segment.
import * as fs from "node:fs";
import { join } from "node:path";
import { DataDirError } from "./errors.ts";

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, "LOCK");
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(path, "wx");
      fs.writeSync(fd, `${process.pid}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      return { path, release: () => releaseIfOurs(path) };
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw new DataDirError(`cannot create ${path}: ${(e as Error).message}`, path, e);
    }
    const owner = Number.parseInt(readOr(path, ""), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new DataDirError(`data dir ${dataDir} is in use by another kv process (pid ${owner}); stop it first or choose another --data-dir`, path);
    }
    // Stale (its process is gone), or ours from an earlier open in this process: take it over.
    try {
      fs.unlinkSync(path);
    } catch {}
  }
  throw new DataDirError(`could not acquire ${path}`, path);
}

function releaseIfOurs(path: string): void {
  if (Number.parseInt(readOr(path, ""), 10) === process.pid) {
    try {
      fs.unlinkSync(path);
    } catch {}
  }
}

function readOr(path: string, fallback: string): string {
  try {
    return fs.readFileSync(path, "latin1");
  } catch {
    return fallback;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
  // A killed process its parent has not reaped yet still answers signal 0: a zombie holds no files.
  const stat = readOr(`/proc/${pid}/stat`, "");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}
