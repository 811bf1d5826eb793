// The ACL users in a snapshot file's header, next to the state machine's own meta (kv-payload.ts's
// encodeSnapshotMeta: applied time, deletion floor, tombstones).
//
//   without users: the state machine's meta alone, byte for byte (older files are all of this kind)
//   with users:    "sections 1\n" | u32 kvMetaBytes | kv meta | u32 aclBytes | "acl 1\n" <user line>\n...
//
// The state machine's meta starts with a digit, so the "sections" prefix cannot be mistaken for it.
// The users are carried only once they are replicated (an ACL SETUSER, DELUSER or LOAD applied); a
// snapshot without them restores the users a node's own flags give. Lines are `user <name> <rules>`,
// passwords as #sha256. Integers little-endian.
import type { KvStateMachine } from "../kv/fsm.ts";
import { CorruptLogError } from "../errors.ts";
import { decodeSnapshotMeta, type KvSnapshotMeta } from "./kv-payload.ts";

/** The container's and the ACL section's format versions this kv writes and reads. */
export const SECTIONS_VERSION = 1;
export const ACL_SECTION_VERSION = 1;
const PREFIX = Buffer.from(`sections ${SECTIONS_VERSION}\n`, "latin1");
const ACL_HEAD = `acl ${ACL_SECTION_VERSION}\n`;

/** A meta this kv cannot read: damage, or a newer format. */
export class SnapshotMetaError extends Error {
  override name = "SnapshotMetaError";
}

/** The header meta for a snapshot: the state machine's meta, with the users when they are replicated. */
export function withAclSection(kvMeta: Uint8Array, acl: readonly string[] | null): Uint8Array {
  if (acl === null) return kvMeta;
  const text = Buffer.from(ACL_HEAD + acl.map((l) => l + "\n").join(""), "latin1");
  const b = Buffer.alloc(PREFIX.length + 4 + kvMeta.length + 4 + text.length);
  let o = PREFIX.copy(b, 0);
  o = b.writeUInt32LE(kvMeta.length, o);
  o += Buffer.from(kvMeta.buffer, kvMeta.byteOffset, kvMeta.byteLength).copy(b, o);
  o = b.writeUInt32LE(text.length, o);
  text.copy(b, o);
  return b;
}

/** Splits a header meta into the state machine's meta and the users (null: none carried). */
export function splitAclSection(meta: Uint8Array): { kvMeta: Uint8Array; acl: string[] | null } {
  const b = Buffer.from(meta.buffer, meta.byteOffset, meta.byteLength);
  if (b.length === 0 || b[0] !== PREFIX[0] || !b.subarray(0, PREFIX.length).equals(PREFIX)) {
    if (b.length > 0 && b[0] === PREFIX[0]) throw new SnapshotMetaError(`its meta starts '${b.latin1Slice(0, Math.min(b.length, 16))}', not 'sections ${SECTIONS_VERSION}' (a newer format?)`);
    return { kvMeta: meta, acl: null };
  }
  let o = PREFIX.length;
  if (o + 4 > b.length) throw new SnapshotMetaError("its meta sections are truncated");
  const kvBytes = b.readUInt32LE(o);
  o += 4;
  if (o + kvBytes + 4 > b.length) throw new SnapshotMetaError("its meta sections are truncated");
  const kvMeta = b.subarray(o, o + kvBytes);
  o += kvBytes;
  const aclBytes = b.readUInt32LE(o);
  o += 4;
  if (o + aclBytes !== b.length) throw new SnapshotMetaError(`its ACL section is ${aclBytes} bytes, ${b.length - o} are there`);
  const text = b.latin1Slice(o, o + aclBytes);
  if (!text.startsWith(ACL_HEAD)) throw new SnapshotMetaError(`its ACL section starts '${text.slice(0, 16)}', not '${ACL_HEAD.trim()}'`);
  return { kvMeta, acl: text.slice(ACL_HEAD.length).split("\n").filter((l) => l.length > 0) };
}

/** Restores the users a snapshot carries (or the node's configured ones when it carries none). */
export function restoreAcl(fsm: KvStateMachine, acl: readonly string[] | null): void {
  if (acl === null) fsm.acl.restoreConfigured();
  else {
    fsm.acl.load(acl, null);
    fsm.acl.replicated = true;
  }
}

/**
 * The meta of the snapshot file `name` at `path`, split into the users and the state machine's
 * meta and decoded. Damage (or a newer format) is a CorruptLogError naming the file.
 */
export function readSnapshotFileMeta(meta: Uint8Array, name: string, path: string): { acl: string[] | null; kv: KvSnapshotMeta } {
  let split;
  try {
    split = splitAclSection(meta);
  } catch (e) {
    if (!(e instanceof SnapshotMetaError)) throw e;
    throw new CorruptLogError(`snapshot ${name}: ${e.message}`, path, 0);
  }
  const kv = decodeSnapshotMeta(split.kvMeta);
  if (typeof kv === "string") throw new CorruptLogError(`snapshot ${name}: ${kv}`, path, 0);
  return { acl: split.acl, kv };
}
