// A one-member Raft group in process, as `kv serve` without --cluster runs it: a ClusterNode on a
// data dir, its only voter, started and serving (leader of its term, its log applied). Tests then
// use it as the server does: propose / replyTo / onApplied / onFailed, sweepExpired, snapshot, close.
import { ClusterNode } from "../../src/node/cluster-node.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import type { FsyncMode, StorageIo } from "../../src/storage/index.ts";

export interface OneMemberOptions {
  dataDir: string;
  fsync?: FsyncMode;
  segmentBytesMax?: number;
  /** Log bytes applied since the last snapshot that start a new one (default: none start by themselves). */
  snapshotLogBytes?: number;
  io?: StorageIo;
  /** Wait until it serves (default); false: opened only, not started. */
  start?: boolean;
}

/** What the node stopped on (onFatal), in order: a test that expects none checks it stays empty. */
export type FatalLog = unknown[];

/**
 * Opens a one-member group on `dataDir` (created on first open with member 1), starts it and waits
 * until it serves. onFatal records into `node.fatal`/the returned list instead of throwing (a
 * storage failure stops the node; the process would exit).
 */
export async function openOneMember<T>(opts: OneMemberOptions): Promise<{ node: ClusterNode<T>; fatal: FatalLog }> {
  const node = await ClusterNode.open<T>({
    id: 1,
    dataDir: opts.dataDir,
    fsync: opts.fsync ?? "always",
    segmentBytesMax: opts.segmentBytesMax ?? 1 << 20,
    snapshotLogBytes: opts.snapshotLogBytes ?? 1 << 30,
    members: [{ id: 1, addr: "127.0.0.1:0", peer: "127.0.0.1:0" }],
    clusterId: "kv-test",
    heartbeatMs: 50,
    electionMs: 500,
    io: opts.io,
  });
  const fatal: FatalLog = [];
  node.onFatal = (err) => void fatal.push(err);
  if (opts.start ?? true) {
    node.start();
    if (!(await node.whenServing(10_000))) throw new Error(`the one-member group on ${opts.dataDir} did not start serving in 10 s`);
  }
  return { node, fatal };
}

/**
 * Wires a node's reply callbacks to a map of replies by proposal owner. Each proposal's reply
 * (RESP text, latin1) is stored under its owner once applied; a failed proposal gets
 * `failed(error)` (the error's name by default). `onApplied` hears each owner after its reply is stored.
 */
export function collectReplies<K>(d: ClusterNode<K>, opts: { failed?: (e: Error) => string; onApplied?: (owner: K) => void } = {}): Map<K, string> {
  const replies = new Map<K, string>();
  const outs = new Map<K, ReplyBuffer>();
  const failed = opts.failed ?? ((e: Error) => e.name);
  d.replyTo = (p) => {
    const out = new ReplyBuffer(64);
    outs.set(p.owner, out);
    return out;
  };
  d.onApplied = (p) => {
    replies.set(p.owner, outs.get(p.owner)!.view().toString("latin1"));
    outs.delete(p.owner);
    opts.onApplied?.(p.owner);
  };
  d.onFailed = (batch, e) => {
    for (const p of batch) replies.set(p.owner, failed(e));
  };
  return replies;
}
