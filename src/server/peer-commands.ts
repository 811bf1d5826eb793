// Commands members send one another over a member's client port (src/node/leader-link.ts):
// KV.PEER opens a link, KV.READINDEX asks the leader for a linearizable read point. Forwarded
// writes (`KV.FWD <proto> <command...>`) are recognised by the server itself before lookup.
// Refused on ordinary client connections.
import type { CommandSpec } from "../kv/command.ts";
import type { ServerCtx } from "./dispatch.ts";
import { logger } from "../log.ts";

const log = logger("server");

export const PEER_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  {
    name: "kv.peer",
    arity: 3,
    flags: ["connection", "loading-ok", "noquorum-ok", "admin"],
    firstKey: 0,
    lastKey: 0,
    keyStep: 0,
    exec(ctx, argv, out) {
      const node = ctx.server.node;
      const from = Number(argv[2]);
      if (argv[1] !== node.clusterId) {
        out.error(`ERR cluster id mismatch: this node belongs to '${node.clusterId}'`);
        return;
      }
      const removedAt = Number.isSafeInteger(from) ? node.removedIndex(from) : undefined;
      if (removedAt !== undefined) {
        // The removed member learns it here if it missed the commit of its own removal (see ClusterNode.watchRemoval).
        out.error(`REMOVED node ${from} was removed from cluster ${node.clusterId} at log index ${removedAt}`);
        return;
      }
      if (!Number.isSafeInteger(from) || from < 1 || node.view.member(from) === undefined) {
        out.error(`ERR node ${argv[2]!.slice(0, 32)} is not a member of this cluster`);
        return;
      }
      // With peer TLS, only a member's own certificate opens its link (src/server/tls.ts).
      const tls = ctx.server.tls;
      const refused = tls !== undefined ? tls.memberRefusal(ctx.conn.socket, ctx.conn.tls, from) : ctx.server.node.peerTlsOn ? "peer TLS is on: members' links use the TLS port" : undefined;
      if (refused !== undefined) {
        log.warn(`refused KV.PEER from ${ctx.conn.addr}: ${refused}`);
        out.error(`ERR KV.PEER refused: ${refused}`);
        return;
      }
      ctx.conn.peerOf = from;
      out.ok();
    },
  },
  {
    name: "kv.readindex",
    arity: 1,
    flags: ["connection", "noquorum-ok", "admin"],
    firstKey: 0,
    lastKey: 0,
    keyStep: 0,
    exec(ctx, _argv, out) {
      const node = ctx.server.node;
      if (ctx.conn.peerOf === 0) {
        out.error("ERR KV.READINDEX is for cluster members (send KV.PEER first)");
        return;
      }
      // Runs only once every command before it on this link is done (it is a barrier command):
      // the index then covers the writes this member forwarded before asking.
      const settle = ctx.server.defer(ctx.conn);
      node.readBarrier().then(
        () => settle((o) => o.int(node.applied)),
        (e: Error & { reply?: string }) => settle((o) => o.error(e.reply ?? `CLUSTERDOWN ${e.message}`)),
      );
    },
  },
];
