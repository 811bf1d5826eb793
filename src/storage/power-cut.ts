// A storage twin that models the disk under a power cut. For tests only.
//
// The real files under the root dir play the page cache: every call goes to them (reads see what
// was written, as after write(2)). Beside them the twin keeps, per file and per directory, what an
// fsync has made durable and the operations since: writes and truncations of a file (made durable
// by fdatasync/fsync of it), and creates, renames and unlinks in a directory (made durable by an
// fsync of the directory). image() returns what a power cut at this moment could leave: the
// durable state plus, for each file and each directory, a random prefix of the operations not yet
// synced (operations reach the disk in order here), the last write in that prefix torn at a
// random byte. An fsync covers what was written before it was called, not what is written while it runs.
//
// Syncs do not call the real fsync (the twin decides what is durable) and complete after a few
// turns of the event loop chosen by the seeded random source, so writes pile up into group
// commits, and a run with a seed takes the same path again.
import { basename, dirname, join, relative } from "node:path";
import { assert } from "../errors.ts";
import { nodeIo, type StorageIo } from "./io.ts";
import { SECTOR_BYTES } from "./segment.ts";

type FileOp = { seq: number; kind: "write"; off: number; data: Uint8Array } | { seq: number; kind: "truncate"; len: number };
type DirOp = { seq: number; kind: "link"; name: string; node: Node } | { seq: number; kind: "unlink"; name: string } | { seq: number; kind: "rename"; from: string; to: string };

interface FileNode {
  type: "file";
  id: number;
  /** Content as the page cache has it. */
  cur: Uint8Array;
  /** Content an fsync made durable. */
  durable: Uint8Array;
  pending: FileOp[];
}

interface DirNode {
  type: "dir";
  id: number;
  cur: Map<string, Node>;
  durable: Map<string, Node>;
  pending: DirOp[];
}

type Node = FileNode | DirNode;

/** What a power cut left: directories (relative paths, parents first) and files with their bytes. */
export interface DiskImage {
  dirs: string[];
  files: Map<string, Uint8Array>;
}

/** Where the twin stands when it calls onPoint. */
export interface PowerCutPoint {
  /** "sync": right after an fsync (of a file or a directory) completed; else the operation just done. */
  kind: "sync" | "write" | "truncate" | "create" | "rename" | "unlink";
  path: string;
  /** Syncs completed so far (this one included). */
  syncs: number;
}

export class PowerCutIo implements StorageIo {
  /** Called after every sync and every change (the test decides where to cut). */
  onPoint: ((p: PowerCutPoint) => void) | null = null;
  /** Syncs completed so far. */
  syncs = 0;
  private readonly root: DirNode;
  private readonly fds = new Map<number, { node: FileNode | undefined; append: boolean; path: string }>();
  /**
   * Unsynced data may also reach the disk out of order: each 512-byte sector independently as of
   * any point since the last sync, and the file's size as of another (the page cache writes pages
   * back in any order, and a disk with a volatile cache persists them in any order). Else writes
   * reach the disk in the order made.
   */
  outOfOrder = true;
  private nextId = 1;
  private seq = 0;

  constructor(
    readonly rootDir: string,
    private readonly rand: () => number,
    private readonly inner: StorageIo = nodeIo,
  ) {
    // What is on disk already (a data dir a recovery left) counts as durable.
    this.root = this.adopt(rootDir);
  }

  private adopt(dir: string): DirNode {
    const d: DirNode = { type: "dir", id: this.nextId++, cur: new Map(), durable: new Map(), pending: [] };
    for (const name of this.inner.readdir(dir)) {
      const path = join(dir, name);
      let node: Node;
      try {
        this.inner.readdir(path);
        node = this.adopt(path);
      } catch {
        const bytes = readAll(this.inner, path);
        node = { type: "file", id: this.nextId++, cur: bytes, durable: bytes.slice(), pending: [] };
      }
      d.cur.set(name, node);
      d.durable.set(name, node);
    }
    return d;
  }

  // ------------------------------------------------------------------ model

  private rel(path: string): string[] {
    const r = relative(this.rootDir, path);
    assert(!r.startsWith(".."), `${path} is outside the twin's root ${this.rootDir}`);
    return r === "" ? [] : r.split("/");
  }

  private lookup(path: string): Node | undefined {
    let node: Node = this.root;
    for (const part of this.rel(path)) {
      if (node.type !== "dir") return undefined;
      const next = node.cur.get(part);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  private dirOf(path: string): DirNode {
    const d = this.lookup(dirname(path));
    assert(d !== undefined && d.type === "dir", `no directory for ${path} in the model`);
    return d;
  }

  private fileAt(path: string): FileNode | undefined {
    const n = this.lookup(path);
    if (n === undefined) return undefined;
    assert(n.type === "file", `${path} is a directory`);
    return n;
  }

  private create(path: string): FileNode {
    const d = this.dirOf(path);
    const node: FileNode = { type: "file", id: this.nextId++, cur: new Uint8Array(0), durable: new Uint8Array(0), pending: [] };
    d.cur.set(basename(path), node);
    d.pending.push({ seq: ++this.seq, kind: "link", name: basename(path), node });
    this.point("create", path);
    return node;
  }

  private fileOp(node: FileNode, op: FileOp): void {
    node.pending.push(op);
    node.cur = applyFileOp(node.cur, op, Infinity);
  }

  private point(kind: PowerCutPoint["kind"], path: string): void {
    this.onPoint?.({ kind, path, syncs: this.syncs });
  }

  /** Makes what was pending at `upTo` durable (an fsync called when the sequence stood there). */
  private syncFile(node: FileNode | undefined, upTo: number, path: string): void {
    if (node !== undefined) {
      while (node.pending.length > 0 && node.pending[0]!.seq <= upTo) node.durable = applyFileOp(node.durable, node.pending.shift()!, Infinity);
    }
    this.syncs++;
    this.point("sync", path);
  }

  private syncDirNode(d: DirNode, upTo: number, path: string): void {
    while (d.pending.length > 0 && d.pending[0]!.seq <= upTo) applyDirOp(d.durable, d.pending.shift()!);
    this.syncs++;
    this.point("sync", path);
  }

  /** A few turns of the event loop (seeded), as a sync on the threadpool would take. */
  private async later(): Promise<void> {
    const turns = Math.floor(this.rand() * 4);
    for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** What a power cut now could leave on disk: random (from `rand`) within what the model allows. */
  image(rand: () => number): DiskImage {
    const out: DiskImage = { dirs: [], files: new Map() };
    const contents = new Map<FileNode, Uint8Array>();
    const walk = (d: DirNode, rel: string) => {
      const entries = new Map(d.durable);
      for (const op of d.pending.slice(0, prefixLength(d.pending.length, rand))) applyDirOp(entries, op);
      for (const [name, node] of entries) {
        const r = rel === "" ? name : `${rel}/${name}`;
        if (node.type === "dir") {
          out.dirs.push(r);
          walk(node, r);
        } else {
          let bytes = contents.get(node);
          if (bytes === undefined) {
            bytes = this.outOfOrder && rand() < 0.5 ? sectorsInAnyOrder(node, rand) : inOrder(node, rand);
            contents.set(node, bytes);
          }
          out.files.set(r, bytes);
        }
      }
    };
    walk(this.root, "");
    return out;
  }

  /** Throws unless every file the model tracks has the content the real file has (checks the twin). */
  verifyAgainstDisk(): void {
    const walk = (d: DirNode, path: string) => {
      const names = new Set(this.inner.readdir(path));
      for (const [name, node] of d.cur) {
        const p = join(path, name);
        assert(names.has(name), `twin: ${p} is in the model but not on disk`);
        if (node.type === "dir") walk(node, p);
        else {
          const real = readAll(this.inner, p);
          assert(Buffer.from(real).equals(Buffer.from(node.cur)), `twin: ${p} differs from the model (${real.length} bytes on disk, ${node.cur.length} in the model)`);
        }
      }
    };
    walk(this.root, this.rootDir);
  }

  // ------------------------------------------------------------------ StorageIo

  mkdirp(dir: string): string | undefined {
    const first = this.inner.mkdirp(dir);
    let d = this.root;
    let path = this.rootDir;
    for (const part of this.rel(dir)) {
      path = join(path, part);
      let next = d.cur.get(part);
      if (next === undefined) {
        next = { type: "dir", id: this.nextId++, cur: new Map(), durable: new Map(), pending: [] };
        d.cur.set(part, next);
        d.pending.push({ seq: ++this.seq, kind: "link", name: part, node: next });
        this.point("create", path);
      }
      assert(next.type === "dir", `${path} is a file`);
      d = next;
    }
    return first;
  }
  readdir(dir: string): string[] {
    return this.inner.readdir(dir);
  }
  openAppend(path: string): number {
    const fd = this.inner.openAppend(path);
    this.fds.set(fd, { node: this.fileAt(path) ?? this.create(path), append: true, path });
    return fd;
  }
  openRead(path: string): number {
    const fd = this.inner.openRead(path);
    this.fds.set(fd, { node: this.fileAt(path), append: false, path });
    return fd;
  }
  openReadWrite(path: string): number {
    const fd = this.inner.openReadWrite(path);
    this.fds.set(fd, { node: this.fileAt(path), append: false, path });
    return fd;
  }
  async preallocate(path: string, bytes: number): Promise<void> {
    // As nodeIo's: the file created (or truncated), filled with zeros and fdatasynced; its name
    // not synced.
    const fd = this.openWrite(path);
    try {
      this.write(fd, new Uint8Array(bytes), 0);
      const node = this.fds.get(fd)!.node!;
      const upTo = this.seq;
      await this.later();
      this.syncFile(node, upTo, path);
    } finally {
      this.close(fd);
    }
  }
  openWrite(path: string): number {
    const existing = this.fileAt(path);
    const fd = this.inner.openWrite(path);
    let node = existing;
    if (node === undefined) node = this.create(path);
    else if (node.cur.length > 0) {
      this.fileOp(node, { seq: ++this.seq, kind: "truncate", len: 0 });
      this.point("truncate", path);
    }
    this.fds.set(fd, { node, append: false, path });
    return fd;
  }
  fileSize(fd: number): number {
    return this.inner.fileSize(fd);
  }
  map(path: string): Uint8Array {
    return this.inner.map(path);
  }
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
    return this.inner.read(fd, buf, off, len, pos);
  }
  write(fd: number, buf: Uint8Array, pos?: number): void {
    const f = this.fds.get(fd);
    assert(f?.node !== undefined, "write to an fd the twin does not track");
    const off = f.append ? f.node.cur.length : pos;
    assert(off !== undefined, "the twin needs a position for writes to a file not opened for append");
    this.inner.write(fd, buf, pos);
    this.fileOp(f.node, { seq: ++this.seq, kind: "write", off, data: buf.slice() });
    this.point("write", f.path);
  }
  async datasync(fd: number): Promise<void> {
    const f = this.fds.get(fd);
    const upTo = this.seq;
    await this.later();
    this.syncFile(f?.node, upTo, f?.path ?? "");
  }
  datasyncSync(fd: number): void {
    const f = this.fds.get(fd);
    this.syncFile(f?.node, this.seq, f?.path ?? "");
  }
  fsyncSync(fd: number): void {
    this.datasyncSync(fd);
  }
  truncate(fd: number, len: number): void {
    const f = this.fds.get(fd);
    assert(f?.node !== undefined, "truncate of an fd the twin does not track");
    this.inner.truncate(fd, len);
    this.fileOp(f.node, { seq: ++this.seq, kind: "truncate", len });
    this.point("truncate", f.path);
  }
  close(fd: number): void {
    this.fds.delete(fd);
    this.inner.close(fd);
  }
  unlink(path: string): void {
    this.inner.unlink(path);
    const d = this.dirOf(path);
    if (d.cur.delete(basename(path))) d.pending.push({ seq: ++this.seq, kind: "unlink", name: basename(path) });
    this.point("unlink", path);
  }
  async unlinkAsync(path: string): Promise<void> {
    await this.later();
    this.unlink(path);
  }
  rename(from: string, to: string): void {
    assert(dirname(from) === dirname(to), "the twin models renames within one directory");
    this.inner.rename(from, to);
    const d = this.dirOf(from);
    const node = d.cur.get(basename(from));
    assert(node !== undefined, `rename of ${from}, which the twin does not track`);
    d.cur.delete(basename(from));
    d.cur.set(basename(to), node);
    d.pending.push({ seq: ++this.seq, kind: "rename", from: basename(from), to: basename(to) });
    this.point("rename", to);
  }
  fsyncDir(dir: string): void {
    const d = this.lookup(dir);
    assert(d !== undefined && d.type === "dir", `fsyncDir of ${dir}, which the twin does not track`);
    this.syncDirNode(d, this.seq, dir);
  }
  async fsyncDirAsync(dir: string): Promise<void> {
    const d = this.lookup(dir);
    assert(d !== undefined && d.type === "dir", `fsyncDir of ${dir}, which the twin does not track`);
    const upTo = this.seq;
    await this.later();
    this.syncDirNode(d, upTo, dir);
  }
}

/** The durable content plus a prefix of the writes since, the last one torn at any byte. */
function inOrder(node: FileNode, rand: () => number): Uint8Array {
  let bytes = node.durable;
  const n = prefixLength(node.pending.length, rand);
  for (let i = 0; i < n; i++) {
    const op = node.pending[i]!;
    const keep = i === n - 1 && op.kind === "write" && rand() < 0.5 ? Math.floor(rand() * (op.data.length + 1)) : Infinity;
    bytes = applyFileOp(bytes, op, keep);
  }
  return bytes;
}

/** Each sector as of a random point since the last sync (zeros where that version had none), the size as of another. */
function sectorsInAnyOrder(node: FileNode, rand: () => number): Uint8Array {
  const versions = [node.durable];
  for (const op of node.pending) versions.push(applyFileOp(versions[versions.length - 1]!, op, Infinity));
  const size = versions[prefixLength(node.pending.length, rand)]!.length;
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += SECTOR_BYTES) {
    const v = versions[prefixLength(node.pending.length, rand)]!;
    if (off < v.length) out.set(v.subarray(off, Math.min(off + SECTOR_BYTES, v.length, size)), off);
  }
  return out;
}

/** How many of n pending operations reach the disk: none, all, or any number between. */
function prefixLength(n: number, rand: () => number): number {
  if (n === 0) return 0;
  const r = rand();
  if (r < 0.3) return 0;
  if (r < 0.6) return n;
  return Math.floor(rand() * (n + 1));
}

function applyFileOp(bytes: Uint8Array, op: FileOp, keep: number): Uint8Array {
  if (op.kind === "truncate") {
    if (op.len <= bytes.length) return bytes.slice(0, op.len);
    const grown = new Uint8Array(op.len);
    grown.set(bytes);
    return grown;
  }
  const data = keep < op.data.length ? op.data.subarray(0, keep) : op.data;
  const end = Math.max(bytes.length, op.off + data.length);
  const out = new Uint8Array(end);
  out.set(bytes);
  out.set(data, op.off);
  return out;
}

function applyDirOp(entries: Map<string, Node>, op: DirOp): void {
  if (op.kind === "link") entries.set(op.name, op.node);
  else if (op.kind === "unlink") entries.delete(op.name);
  else {
    const node = entries.get(op.from);
    // The rename of a file whose create did not reach the disk: nothing to move.
    if (node === undefined) return;
    entries.delete(op.from);
    entries.set(op.to, node);
  }
}

function readAll(io: StorageIo, path: string): Uint8Array {
  const fd = io.openRead(path);
  try {
    const size = io.fileSize(fd);
    const b = new Uint8Array(size);
    io.read(fd, b, 0, size, 0);
    return b;
  } finally {
    io.close(fd);
  }
}
