// PUBLISH and SPUBLISH as logged commands: a message goes through the log like a write, so every
// member delivers it to its own subscribers when it applies the entry, in log order with the
// keyspace's changes (docs/cluster.md, "Pub/sub"). They change no key. Pure.
import type { ReplyWriter } from "../resp/encode.ts";
import type { CommandSpec } from "./command.ts";
import type { KvCtx } from "./commands.ts";

function publishGeneric(ctx: KvCtx, argv: string[], out: ReplyWriter, sharded: boolean): void {
  // The count is this member's receivers (as Redis Cluster's PUBLISH counts the node's own); 0 when
  // nobody listens (a replay at start has no clients).
  out.int(ctx.events ? ctx.events.publish(argv[1]!, argv[2]!, sharded) : 0);
}

export const PUBSUB_KV_COMMANDS: readonly CommandSpec<KvCtx>[] = [
  { name: "publish", arity: 3, flags: ["logged", "pubsub", "fast", "loading-ok"], firstKey: 0, lastKey: 0, keyStep: 0, exec: (ctx, argv, out) => publishGeneric(ctx, argv, out, false) },
  { name: "spublish", arity: 3, flags: ["logged", "pubsub", "fast", "loading-ok"], firstKey: 0, lastKey: 0, keyStep: 0, exec: (ctx, argv, out) => publishGeneric(ctx, argv, out, true) },
];
