// The file-system calls storage makes, behind a small interface so tests can record their order
// and inject failures (ENOSPC, EIO). nodeIo is the real thing: node:fs maps 1:1 onto syscalls.
import * as fs from "node:fs";

export interface StorageIo {
  /** mkdir -p; returns the first directory it created (undefined when dir existed), as fs.mkdirSync does. */
  mkdirp(dir: string): string | undefined;
  /** Names (not paths) in dir. */
  readdir(dir: string): string[];
  /** O_RDWR|O_CREAT|O_APPEND: every write goes to the end, positional reads work. */
  openAppend(path: string): number;
  openRead(path: string): number;
  /** O_RDWR without O_APPEND, for preallocated files written at explicit offsets. */
  openReadWrite(path: string): number;
  /**
   * Creates `path` holding `bytes` zero bytes, written for real (not a sparse hole) and fsynced, off
   * the event loop. Writing into such a file and fdatasync-ing it needs no metadata update.
   */
  preallocate(path: string, bytes: number): Promise<void>;
  /** O_WRONLY|O_CREAT|O_TRUNC, for temp files written front to back. */
  openWrite(path: string): number;
  fileSize(fd: number): number;
  /**
   * The whole file mapped read-only into memory (private: never written back), valid for as
   * long as the returned array is referenced. Throws when the file cannot be mapped; callers
   * then read it instead. The file must not shrink while mapped (reading a page past its end
   * kills the process with SIGBUS), so only immutable files (snapshots) are mapped.
   */
  map(path: string): Uint8Array;
  /** Positional read; returns bytes read (short only at end of file). */
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  /**
   * Writes all of buf (loops over short writes). At `pos` if given, else at the fd's offset.
   * On an O_APPEND fd Linux appends whatever `pos` says.
   */
  write(fd: number, buf: Uint8Array, pos?: number): void;
  /** fdatasync on the threadpool: the event loop keeps running while the disk works. */
  datasync(fd: number): Promise<void>;
  datasyncSync(fd: number): void;
  /** fsync (data and metadata), blocking. */
  fsyncSync(fd: number): void;
  truncate(fd: number, len: number): void;
  close(fd: number): void;
  unlink(path: string): void;
  /** unlink on the threadpool: deleting a large file can take milliseconds (old snapshots). */
  unlinkAsync(path: string): Promise<void>;
  rename(from: string, to: string): void;
  /** fsync a directory so a create, rename or delete in it survives a crash. */
  fsyncDir(dir: string): void;
  /** The same on the threadpool (snapshot writes, which must not stall the event loop). */
  fsyncDirAsync(dir: string): Promise<void>;
}

export const nodeIo: StorageIo = {
  mkdirp(dir) {
    return fs.mkdirSync(dir, { recursive: true });
  },
  readdir(dir) {
    return fs.readdirSync(dir);
  },
  openAppend(path) {
    return fs.openSync(path, "a+");
  },
  openRead(path) {
    return fs.openSync(path, "r");
  },
  openReadWrite(path) {
    return fs.openSync(path, "r+");
  },
  async preallocate(path, bytes) {
    const fh = await fs.promises.open(path, "w");
    try {
      const zeros = new Uint8Array(Math.min(bytes, 1024 * 1024));
      for (let pos = 0; pos < bytes; pos += zeros.length) {
        await fh.write(zeros, 0, Math.min(zeros.length, bytes - pos), pos);
      }
      await fh.datasync();
    } finally {
      await fh.close();
    }
  },
  openWrite(path) {
    return fs.openSync(path, "w");
  },
  fileSize(fd) {
    return fs.fstatSync(fd).size;
  },
  map(path) {
    return Bun.mmap(path, { shared: false });
  },
  read(fd, buf, off, len, pos) {
    let done = 0;
    while (done < len) {
      const n = fs.readSync(fd, buf, off + done, len - done, pos + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  },
  write(fd, buf, pos) {
    writeAll(fd, buf, pos, fs.writeSync);
  },
  datasync(fd) {
    return new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  },
  datasyncSync(fd) {
    fs.fdatasyncSync(fd);
  },
  fsyncSync(fd) {
    fs.fsyncSync(fd);
  },
  truncate(fd, len) {
    fs.ftruncateSync(fd, len);
  },
  close(fd) {
    fs.closeSync(fd);
  },
  unlink(path) {
    fs.unlinkSync(path);
  },
  unlinkAsync(path) {
    return fs.promises.unlink(path);
  },
  rename(from, to) {
    fs.renameSync(from, to);
  },
  fsyncDir(dir) {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  async fsyncDirAsync(dir) {
    const fh = await fs.promises.open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

/**
 * write(2) returning 0 for a non-empty buffer makes no progress, and nothing says the next call
 * will: past this many in a row the write fails (a loop without progress would hang the writer).
 */
export const ZERO_WRITES_MAX = 8;

/** write(2) kept returning 0 bytes. The caller wraps it with the file's path (StorageIoError). */
export class ZeroByteWriteError extends Error {
  override name = "ZeroByteWriteError";
  constructor(
    readonly fd: number,
    readonly offset: number | undefined,
    readonly remaining: number,
  ) {
    super(`write(2) returned 0 bytes ${ZERO_WRITES_MAX} times in a row with ${remaining} bytes left to write${offset === undefined ? "" : ` at offset ${offset}`}`);
  }
}

/** Writes all of buf with `writeOnce` (one write(2)), looping over short writes. */
export function writeAll(
  fd: number,
  buf: Uint8Array,
  pos: number | undefined,
  writeOnce: (fd: number, buf: Uint8Array, off: number, len: number, pos: number | null) => number,
): void {
  let done = 0;
  let zeros = 0;
  while (done < buf.length) {
    const n = writeOnce(fd, buf, done, buf.length - done, pos === undefined ? null : pos + done);
    if (n === 0) {
      if (++zeros >= ZERO_WRITES_MAX) throw new ZeroByteWriteError(fd, pos === undefined ? undefined : pos + done, buf.length - done);
      continue;
    }
    zeros = 0;
    done += n;
  }
}

/** An Error with a Node-style errno code, as fs throws. */
export function ioError(code: string, message = code): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}
