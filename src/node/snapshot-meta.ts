// The meta field of a snapshot file's header: the applied time, then optional sections.
//
//   <appliedMs, decimal>                      every version (older files hold only this)
//   \nacl 1\n<user line>\n<user line>...      the replicated ACL users, section version 1: one
//                                             `user <name> <rules>` line each, passwords as #sha256
//
// A section is present only when its state is replicated (for ACL users: once an ACL SETUSER,
// DELUSER or LOAD was applied); a snapshot without it restores the users a node's own flags give.
// The keyspace itself is the file's body, untouched by these sections.
import type { KvStateMachine } from "../kv/fsm.ts";

/** The ACL section's format version this kv writes and reads. */
export const ACL_SECTION_VERSION = 1;

export interface SnapshotMetaFields {
  readonly appliedMs: number;
  /** The ACL users' lines, or null when the snapshot carries none. */
  readonly acl: readonly string[] | null;
}

/** A meta field this kv cannot read: damage, or a newer format. */
export class SnapshotMetaError extends Error {
  override name = "SnapshotMetaError";
}

export function encodeSnapshotMeta(f: SnapshotMetaFields): Uint8Array {
  let text = String(f.appliedMs);
  if (f.acl !== null) text += `\nacl ${ACL_SECTION_VERSION}\n` + f.acl.join("\n");
  return new TextEncoder().encode(text);
}

export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMetaFields {
  const text = new TextDecoder().decode(bytes);
  const nl = text.indexOf("\n");
  const head = nl < 0 ? text : text.slice(0, nl);
  const appliedMs = Number(head);
  if (!/^\d{1,16}$/.test(head) || !Number.isSafeInteger(appliedMs)) throw new SnapshotMetaError(`its applied time '${head.slice(0, 32)}' is not a whole number of ms`);
  if (nl < 0) return { appliedMs, acl: null };
  const lines = text.slice(nl + 1).split("\n");
  const section = lines.shift()!;
  if (section !== `acl ${ACL_SECTION_VERSION}`) throw new SnapshotMetaError(`unknown meta section '${section.slice(0, 32)}' (this kv reads 'acl ${ACL_SECTION_VERSION}')`);
  return { appliedMs, acl: lines.filter((l) => l.length > 0) };
}

/** Restores the ACL users a snapshot's meta holds (or the node's configured ones when it holds none). */
export function restoreAcl(fsm: KvStateMachine, acl: readonly string[] | null): void {
  if (acl === null) fsm.acl.restoreConfigured();
  else {
    fsm.acl.load(acl, null);
    fsm.acl.replicated = true;
  }
}
