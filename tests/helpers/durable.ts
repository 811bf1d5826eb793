// Wires a DurableLog's reply callbacks to a map of replies by proposal owner, for in-process tests.
import type { DurableLog } from "../../src/node/durable.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";

/**
 * Collects each proposal's reply (RESP text, latin1) under its owner once applied; a failed
 * proposal gets `failed(error)` (the error's name by default). `onApplied` hears each owner after
 * its reply is stored.
 */
export function collectReplies<K>(d: DurableLog<K>, opts: { failed?: (e: Error) => string; onApplied?: (owner: K) => void } = {}): Map<K, string> {
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
