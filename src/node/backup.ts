// Backups and disaster recovery: the backup file, seeding a new data dir from one (kv restore), and
// turning the data dir of a cluster's last survivor into a one-member cluster (--force-new-cluster).
//
// A backup file is a header and a snapshot file, verbatim:
//   line 1: "KVBACKUP 1 <CRC-32 of line 2, 8 hex digits>\n"
//   line 2: JSON (BackupHeader) "\n"
//   then:   the node's snapshot file (src/storage/snapshot-store.ts: its own header and body
//           checksums, its index, term and membership), header.snapshotBytes bytes whose CRC-32
//           is header.snapshotCrc32.
import { decodeSnapshotMeta, encodeSnapshotMeta } from "./kv-payload.ts";
import { readSnapshotFileMeta, restoreAcl, SnapshotMetaError, splitAclSection, withAclSection } from "./snapshot-meta.ts";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { ConfigError, CorruptLogError } from "../errors.ts";
import type { ConfState, NodeId } from "../raft/types.ts";
import { ReplyBuffer } from "../resp/encode.ts";
import { RaftLog } from "../storage/raft-log.ts";
import { SNAP_DIR, SnapshotStore, type SnapshotSource } from "../storage/snapshot-store.ts";
import type { MemberAddress } from "./cluster-view.ts";
import { loadMembers, MEMBERS_FILE, saveMembers, type Members } from "./cluster-node.ts";
import { nodeIo } from "../storage/index.ts";
import { fnv1a } from "./cluster-id.ts";
import { KvRaftStateMachine } from "./kv-state-machine.ts";

export const BACKUP_MAGIC = "KVBACKUP";
export const BACKUP_VERSION = 1;
/** A header line longer than this is damage (it lists members: far below it). */
export const BACKUP_HEADER_BYTES_MAX = 1024 * 1024;
/** Bytes of a backup read or sent at a time. */
export const BACKUP_CHUNK_BYTES = 1024 * 1024;

export interface BackupHeader {
  clusterId: string;
  /** The log index and term the snapshot is at: it holds every entry up to index, nothing after. */
  index: number;
  term: number;
  /** The cluster's members (addresses) when the backup was taken. */
  members: MemberAddress[];
  /** The node that took it. */
  node: NodeId;
  /** Unix ms when it was taken. */
  takenAtMs: number;
  snapshotBytes: number;
  snapshotCrc32: number;
}

/** A backup file that is not one, or damaged: the message says what and where. */
export class BackupError extends Error {
  override name = "BackupError";
}

export function encodeBackupHeader(h: BackupHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h) + "\n");
  const line1 = `${BACKUP_MAGIC} ${BACKUP_VERSION} ${(crc32(json) >>> 0).toString(16).padStart(8, "0")}\n`;
  return Buffer.concat([Buffer.from(line1), json]);
}

/** Reads and checks a backup file's header; returns it with the offset where the snapshot starts. */
export function readBackupHeader(file: string): { header: BackupHeader; offset: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new BackupError(`cannot open ${file}: ${(e as Error).message}`);
  }
  try {
    const size = Bun.file(file).size;
    const head = Buffer.alloc(Math.min(size, BACKUP_HEADER_BYTES_MAX));
    readSync(fd, head, 0, head.length, 0);
    const nl1 = head.indexOf(10);
    const line1 = nl1 < 0 ? "" : head.subarray(0, nl1).toString("latin1");
    const m = /^KVBACKUP (\d+) ([0-9a-f]{8})$/.exec(line1);
    if (m === null) throw new BackupError(`${file} is not a kv backup (it does not start with '${BACKUP_MAGIC} <version> <crc>')`);
    if (Number(m[1]) !== BACKUP_VERSION) throw new BackupError(`${file} is a kv backup of format version ${m[1]}; this kv reads version ${BACKUP_VERSION}`);
    const nl2 = head.indexOf(10, nl1 + 1);
    if (nl2 < 0) throw new BackupError(`${file} is damaged: its header has no end (truncated?)`);
    const json = head.subarray(nl1 + 1, nl2 + 1);
    if ((crc32(json) >>> 0).toString(16).padStart(8, "0") !== m[2]) throw new BackupError(`${file} is damaged: its header's checksum does not match`);
    const h = JSON.parse(json.toString("utf8")) as BackupHeader;
    const offset = nl2 + 1;
    if (size - offset !== h.snapshotBytes) throw new BackupError(`${file} is damaged: it holds ${size - offset} bytes of snapshot, its header says ${h.snapshotBytes} (truncated?)`);
    return { header: h, offset, size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Checks a backup file whole (header checksum, the snapshot's CRC-32, then the snapshot's own
 * header and body checksums, index and term against the header) by copying its snapshot to
 * `snapPath`. Throws BackupError when anything does not match.
 */
export function extractBackup(file: string, snapPath: string): BackupHeader {
  const { header: h, offset, size } = readBackupHeader(file);
  const inFd = openSync(file, "r");
  const outFd = openSync(snapPath, "wx");
  try {
    const buf = Buffer.alloc(BACKUP_CHUNK_BYTES);
    let crc = 0;
    for (let pos = offset; pos < size; ) {
      const n = readSync(inFd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n <= 0) throw new BackupError(`${file}: short read at ${pos}`);
      crc = crc32(buf.subarray(0, n), crc);
      writeSync(outFd, buf, 0, n);
      pos += n;
    }
    if (crc >>> 0 !== h.snapshotCrc32) throw new BackupError(`${file} is damaged: its snapshot's checksum does not match (CRC-32 ${(crc >>> 0).toString(16)}, header says ${h.snapshotCrc32.toString(16)})`);
    fsyncSync(outFd);
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
  return h;
}

/**
 * Writes a new node's data dir (which must not exist or be empty): the snapshot `entries` at
 * (index, term) with membership `conf`, a log that starts after it with everything up to it
 * committed, and raft-members.json. `kv serve` on it starts from exactly that state.
 */
async function seed(dataDir: string, at: { index: number; term: number; meta: Uint8Array; conf: ConfState }, entries: SnapshotSource, members: Members): Promise<number> {
  const log_ = await RaftLog.open({ dataDir, fsync: "always" });
  let count: number;
  try {
    const res = await log_.snapshots.write(
      { lastIndex: at.index, lastTerm: at.term, meta: at.meta, membership: { voters: [...at.conf.voters], learners: [...at.conf.learners] }, yieldEveryMs: 50 },
      entries,
    );
    count = res.entryCount;
    await log_.persist({ hardState: { term: at.term, vote: 0, commit: at.index }, entries: [], snapshot: { meta: { index: at.index, term: at.term, confState: at.conf }, data: new Uint8Array(0) } });
  } finally {
    await log_.close();
  }
  saveMembers(nodeIo, dataDir, members);
  return count;
}

export interface RestoreOptions {
  file: string;
  dataDir: string;
  /** The new members (this node among them); their ids are the voters. */
  members: MemberAddress[];
  id: NodeId;
  /** The new cluster's id; by default derived from the backup's cluster id and index and the members. */
  clusterId?: string;
}

/** `kv restore`: checks the backup, then seeds `dataDir` from it. */
export async function restoreBackup(o: RestoreOptions): Promise<{ header: BackupHeader; keys: number; clusterId: string }> {
  if (existsSync(o.dataDir) && readdirSync(o.dataDir).length > 0) throw new ConfigError(`${o.dataDir} is not empty: kv restore seeds a new node's data dir only (give a new or empty one)`);
  if (!o.members.some((m) => m.id === o.id)) throw new ConfigError(`--id ${o.id} is not one of the members (${o.members.map((m) => m.id).join(",")})`);
  readBackupHeader(o.file); // a file that is not a backup is refused before anything is made
  const created = !existsSync(o.dataDir);
  mkdirSync(join(o.dataDir, SNAP_DIR), { recursive: true });
  const tmp = join(o.dataDir, SNAP_DIR, "backup.restoring");
  try {
    const h = extractBackup(o.file, tmp);
    const store = SnapshotStore.open(o.dataDir);
    let loaded;
    try {
      loaded = store.load(tmp);
    } catch (e) {
      if (e instanceof CorruptLogError) throw new BackupError(`${o.file} is damaged: its snapshot does not check (${e.message.replace(tmp, "snapshot")})`);
      throw e;
    }
    if (loaded.lastIndex !== h.index || loaded.lastTerm !== h.term) throw new BackupError(`${o.file} is damaged: its snapshot is at index ${loaded.lastIndex} term ${loaded.lastTerm}, its header says index ${h.index} term ${h.term}`);
    let kvMeta: Uint8Array;
    try {
      kvMeta = splitAclSection(loaded.meta).kvMeta; // the users, if any, travel on in the meta as it is
    } catch (e) {
      if (!(e instanceof SnapshotMetaError)) throw e;
      throw new BackupError(`${o.file} is damaged: ${e.message}`);
    }
    const m = decodeSnapshotMeta(kvMeta);
    if (typeof m === "string") throw new BackupError(`${o.file} is damaged: ${m}`);
    const clusterId = o.clusterId ?? `kv-${fnv1a(`restored:${h.clusterId}:${h.index}:${o.members.map((m) => `${m.id}=${m.addr}@${m.peer}`).join(",")}`)}`;
    const members = [...o.members].sort((a, b) => a.id - b.id);
    const keys = await seed(o.dataDir, { index: h.index, term: h.term, meta: loaded.meta, conf: { voters: members.map((m) => m.id), learners: [] } }, loaded.entries(), { clusterId, members });
    return { header: h, keys, clusterId };
  } catch (e) {
    // Nothing half-made stays: the dir is as before (absent, or empty).
    if (created) rmSync(o.dataDir, { recursive: true, force: true });
    else for (const name of readdirSync(o.dataDir)) rmSync(join(o.dataDir, name), { recursive: true, force: true });
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

export interface ForceNewClusterResult {
  clusterId: string;
  previousClusterId: string;
  index: number;
  term: number;
  keys: number;
  /** Entries past the durable commit index that were kept (committed from now on). */
  keptPastCommit: number;
  dropped: NodeId[];
}

/**
 * `kv serve --force-new-cluster`: makes this node's data dir a one-member cluster of its own. Its
 * state is its newest snapshot with every entry of its log applied (the committed ones and those
 * past its durable commit index: any of those may have been acknowledged by the old majority); a
 * snapshot of that state at the log's last index, with this node as the only voter, replaces the
 * log; raft-members.json gets a new cluster id, this member alone, and the others as removed.
 */
export async function forceNewCluster(dataDir: string, id: NodeId): Promise<ForceNewClusterResult> {
  const old = loadMembers(nodeIo, dataDir);
  if (old === undefined) throw new ConfigError(`--force-new-cluster: ${dataDir} holds no cluster (no ${MEMBERS_FILE})`);
  const self = old.members.find((m) => m.id === id);
  if (self === undefined) throw new ConfigError(`--force-new-cluster: node ${id} is not a member of the cluster in ${dataDir} (members: ${old.members.map((m) => m.id).join(",")})`);
  const log_ = await RaftLog.open({ dataDir, fsync: "always" });
  try {
    const sm = new KvRaftStateMachine();
    const snap = log_.snapshot().meta;
    if (snap.index > 0) {
      const store = log_.snapshots;
      const found = store.list().find((s) => s.lastIndex === snap.index);
      if (found === undefined) throw new CorruptLogError(`no snapshot file at index ${snap.index}`, join(store.dir, SNAP_DIR), 0);
      const loaded = store.load(join(store.dir, found.name));
      const { acl, kv: m } = readSnapshotFileMeta(loaded.meta, found.name, join(store.dir, found.name));
      restoreAcl(sm.kv, acl);
      sm.restoreEntries(snap.index, m.appliedMs, loaded.entries(), loaded.entryCount, m.deleteFloor, m.tombstones);
    }
    const hs = log_.initialState().hardState;
    const last = log_.lastIndex();
    const sink = new ReplyBuffer(1024);
    for (let i = snap.index + 1; i <= last; ) {
      const es = log_.entries(i, last + 1, 8 * 1024 * 1024);
      for (const e of es) {
        sink.reset();
        sm.applyInto(e, sink);
      }
      i += es.length;
    }
    const term = last === snap.index ? snap.term : log_.term(last)!;
    const conf: ConfState = { voters: [id], learners: [] };
    const view = sm.kv.beginSnapshot();
    let keys: number;
    try {
      const res = await log_.snapshots.write(
        { lastIndex: last, lastTerm: term, meta: withAclSection(encodeSnapshotMeta(view.appliedMs, view.deleteFloor, view.tombstones), view.acl), membership: { voters: [id], learners: [] }, yieldEveryMs: 50 },
        view.snapshot,
      );
      keys = res.entryCount;
    } finally {
      view.snapshot.close();
    }
    if (hs.commit < last) await log_.persist({ hardState: { term: hs.term, vote: hs.vote, commit: last }, entries: [], snapshot: undefined });
    await log_.compact({ index: last, term, confState: conf });
    const others = old.members.filter((m) => m.id !== id).map((m) => m.id);
    const clusterId = `kv-${fnv1a(`forced:${old.clusterId}:${id}:${last}:${Date.now()}`)}`;
    saveMembers(nodeIo, dataDir, { clusterId, members: [self], removed: [...(old.removed ?? []), ...others.map((o) => ({ id: o, index: last }))] });
    return { clusterId, previousClusterId: old.clusterId, index: last, term, keys, keptPastCommit: last - Math.max(hs.commit, snap.index), dropped: others };
  } finally {
    await log_.close();
  }
}


