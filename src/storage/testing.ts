// Test doubles for storage: an I/O layer that records the order of writes, fsyncs and acks, and
// injects failures (ENOSPC on write, EIO on fsync) or slows fsync down. For tests only.
import { ioError, nodeIo, type StorageIo } from "./io.ts";

export type IoOp = "open" | "write" | "datasync" | "fsync" | "fsyncDir" | "truncate" | "unlink" | "rename" | "close" | "preallocate" | "map";
export interface IoEvent {
  op: IoOp | "ack" | string;
  path?: string;
  bytes?: number;
  /** Free-form label (the ack's name). */
  tag?: string;
}

export class RecordingIo implements StorageIo {
  readonly events: IoEvent[] = [];
  /** Every datasync waits this long first (simulates a slow disk, so group commit shows). */
  syncDelayMs = 0;
  /** Awaited by every datasync before it runs (a test holds a chosen file's sync with it). */
  beforeDatasync: ((path: string | undefined) => Promise<void> | void) | null = null;
  private readonly fdPaths = new Map<number, string>();
  private faults: { op: IoOp; code: string; skip: number; pathIncludes: string | undefined }[] = [];

  constructor(private readonly inner: StorageIo = nodeIo) {}

  /** Makes the (skip+1)-th next `op` (optionally only on paths containing `pathIncludes`) throw `code`. */
  failNext(op: IoOp, code: string, opts: { skip?: number; pathIncludes?: string } = {}): void {
    this.faults.push({ op, code, skip: opts.skip ?? 0, pathIncludes: opts.pathIncludes });
  }

  /** Records an event from the test itself (e.g. "ack" when a client would be answered). */
  note(op: string, tag?: string): void {
    this.events.push({ op, tag });
  }

  count(op: string): number {
    return this.events.filter((e) => e.op === op).length;
  }

  private check(op: IoOp, path: string | undefined): void {
    const i = this.faults.findIndex((f) => f.op === op && (f.pathIncludes === undefined || (path ?? "").includes(f.pathIncludes)));
    if (i < 0) return;
    const f = this.faults[i]!;
    if (f.skip > 0) {
      f.skip--;
      return;
    }
    this.faults.splice(i, 1);
    throw ioError(f.code, `injected ${f.code} on ${op} ${path ?? ""}`);
  }

  private opened(path: string, fd: number): number {
    this.fdPaths.set(fd, path);
    this.events.push({ op: "open", path });
    return fd;
  }

  mkdirp(dir: string): string | undefined {
    return this.inner.mkdirp(dir);
  }
  readdir(dir: string): string[] {
    return this.inner.readdir(dir);
  }
  openAppend(path: string): number {
    this.check("open", path);
    return this.opened(path, this.inner.openAppend(path));
  }
  openRead(path: string): number {
    this.check("open", path);
    return this.opened(path, this.inner.openRead(path));
  }
  openReadWrite(path: string): number {
    this.check("open", path);
    return this.opened(path, this.inner.openReadWrite(path));
  }
  async preallocate(path: string, bytes: number): Promise<void> {
    this.check("preallocate", path);
    await this.inner.preallocate(path, bytes);
    this.events.push({ op: "preallocate", path, bytes });
  }
  openWrite(path: string): number {
    this.check("open", path);
    return this.opened(path, this.inner.openWrite(path));
  }
  fileSize(fd: number): number {
    return this.inner.fileSize(fd);
  }
  map(path: string): Uint8Array {
    this.check("map", path);
    const m = this.inner.map(path);
    this.events.push({ op: "map", path, bytes: m.length });
    return m;
  }
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
    return this.inner.read(fd, buf, off, len, pos);
  }
  write(fd: number, buf: Uint8Array, pos?: number): void {
    const path = this.fdPaths.get(fd);
    this.check("write", path);
    this.inner.write(fd, buf, pos);
    this.events.push({ op: "write", path, bytes: buf.length });
  }
  async datasync(fd: number): Promise<void> {
    const path = this.fdPaths.get(fd);
    if (this.syncDelayMs > 0) await new Promise((r) => setTimeout(r, this.syncDelayMs));
    if (this.beforeDatasync !== null) await this.beforeDatasync(path);
    this.check("datasync", path);
    await this.inner.datasync(fd);
    this.events.push({ op: "datasync", path });
  }
  datasyncSync(fd: number): void {
    const path = this.fdPaths.get(fd);
    this.check("datasync", path);
    this.inner.datasyncSync(fd);
    this.events.push({ op: "datasync", path });
  }
  fsyncSync(fd: number): void {
    const path = this.fdPaths.get(fd);
    this.check("fsync", path);
    this.inner.fsyncSync(fd);
    this.events.push({ op: "fsync", path });
  }
  truncate(fd: number, len: number): void {
    const path = this.fdPaths.get(fd);
    this.check("truncate", path);
    this.inner.truncate(fd, len);
    this.events.push({ op: "truncate", path, bytes: len });
  }
  close(fd: number): void {
    this.fdPaths.delete(fd);
    this.inner.close(fd);
  }
  unlink(path: string): void {
    this.check("unlink", path);
    this.inner.unlink(path);
    this.events.push({ op: "unlink", path });
  }
  async unlinkAsync(path: string): Promise<void> {
    this.check("unlink", path);
    await this.inner.unlinkAsync(path);
    this.events.push({ op: "unlink", path });
  }
  rename(from: string, to: string): void {
    this.check("rename", to);
    this.inner.rename(from, to);
    this.events.push({ op: "rename", path: to });
  }
  async fsyncDirAsync(dir: string): Promise<void> {
    this.check("fsyncDir", dir);
    await this.inner.fsyncDirAsync(dir);
    this.events.push({ op: "fsyncDir", path: dir });
  }
  fsyncDir(dir: string): void {
    this.check("fsyncDir", dir);
    this.inner.fsyncDir(dir);
    this.events.push({ op: "fsyncDir", path: dir });
  }
}
