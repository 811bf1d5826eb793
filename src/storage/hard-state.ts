// Raft's HardState (term, vote, commit) in one small checksummed file, replaced atomically.
//
// <dataDir>/hardstate: [magic "KVHS"][u32 version][u64 term][u64 vote][u64 commit][u32 crc32c of the rest]
// Saved by temp file -> fsync -> rename -> fsync dir, so a crash leaves the old or the new state.
// Term and vote must be durable before a vote or an append is answered; commit may lag (it is
// recomputed from the leader), so callers need not save on every commit change.
import { join } from "node:path";
import { CorruptLogError } from "../errors.ts";
import { crc32c } from "./crc32c.ts";
import { StorageIoError } from "./errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { openDataDir } from "./wal.ts";

export interface HardState {
  term: number;
  /** Node id voted for in `term`, 0 for none. */
  vote: number;
  commit: number;
}

const FILE = "hardstate";
const BYTES = 36;
const MAGIC = 0x5348564b; // "KVHS" little-endian
const VERSION = 1;
const TWO_32 = 2 ** 32;

export function encodeHardState(hs: HardState): Uint8Array {
  const b = new Uint8Array(BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, VERSION, true);
  let o = 8;
  for (const n of [hs.term, hs.vote, hs.commit]) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`hard state field must be a non-negative safe integer, got ${n}`);
    dv.setUint32(o, n % TWO_32, true);
    dv.setUint32(o + 4, Math.floor(n / TWO_32), true);
    o += 8;
  }
  dv.setUint32(32, crc32c(b, 0, 32), true);
  return b;
}

export function decodeHardState(b: Uint8Array, path = FILE): HardState {
  const bad = (why: string) => new CorruptLogError(`${path}: ${why}. Restore this node's data dir from a replica or backup.`, path, 0);
  if (b.length !== BYTES) throw bad(`is ${b.length} bytes, expected ${BYTES}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw bad("bad magic");
  if (dv.getUint32(4, true) !== VERSION) throw bad(`version ${dv.getUint32(4, true)}, this kv reads ${VERSION}`);
  if (dv.getUint32(32, true) !== crc32c(b, 0, 32)) throw bad("checksum mismatch");
  const u64 = (o: number) => dv.getUint32(o + 4, true) * TWO_32 + dv.getUint32(o, true);
  return { term: u64(8), vote: u64(16), commit: u64(24) };
}

export class HardStateStore {
  private readonly path: string;
  constructor(
    private readonly dataDir: string,
    private readonly io: StorageIo = nodeIo,
  ) {
    openDataDir(io, dataDir);
    this.path = join(dataDir, FILE);
  }

  /** The saved state, or {0, 0, 0} for a new node. Throws CorruptLogError on a damaged file. */
  load(): HardState {
    let fd: number;
    try {
      fd = this.io.openRead(this.path);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return { term: 0, vote: 0, commit: 0 };
      throw e;
    }
    try {
      const size = this.io.fileSize(fd);
      const b = new Uint8Array(size);
      this.io.read(fd, b, 0, size, 0);
      return decodeHardState(b, this.path);
    } finally {
      this.io.close(fd);
    }
  }

  /** Durably replaces the state (blocking: a few fsyncs; term/vote change rarely). */
  save(hs: HardState): void {
    const tmp = `${this.path}.tmp`;
    const bytes = encodeHardState(hs);
    try {
      const fd = this.io.openWrite(tmp);
      try {
        this.io.write(fd, bytes, 0);
        this.io.fsyncSync(fd);
      } finally {
        this.io.close(fd);
      }
      this.io.rename(tmp, this.path);
      this.io.fsyncDir(this.dataDir);
    } catch (e) {
      throw new StorageIoError("write", this.path, e);
    }
  }
}
