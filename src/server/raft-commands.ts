// Membership over RESP, in the spirit of RedisRaft's RAFT.* family: RAFT.MEMBERS lists the members,
// RAFT.ADD adds a node as a learner (its addresses travel through the log), RAFT.PROMOTE makes a
// caught-up learner a voter, RAFT.REMOVE removes a member, RAFT.TRANSFER hands leadership to a
// voter. Any node accepts them: the leader carries them out, another node forwards them to the
// leader over its leader link (as it forwards writes) and relays the reply. A request that reached
// a node over a member's link is never forwarded again. See docs/protocol.md.
import type { CommandSpec } from "../kv/command.ts";
import type { ReplyBuffer, ReplyWriter } from "../resp/encode.ts";
import type { ClusterNode } from "../node/cluster-node.ts";
import { ClusterError, MembershipError } from "../node/cluster-node.ts";
import type { MemberStatus } from "../node/cluster-view.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { Conn } from "./server.ts";
import { splitAddr } from "./cluster-commands.ts";

type Node = ClusterNode<Conn>;
/** What a command does on the leader: resolves with its reply. */
type OnLeader = (node: Node, argv: string[]) => Promise<(out: ReplyWriter) => void>;

const NODE_ID_MAX = 2 ** 31 - 1;
/** How long a node that forwarded RAFT.TRANSFER waits to see the new leader itself before it answers. */
const TRANSFER_SEEN_WAIT_MS = 3000;

/** A member id argument, or a typed error. */
function nodeId(text: string): number {
  const id = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(id) || id < 1 || id > NODE_ID_MAX) throw new MembershipError(`node id '${text.slice(0, 32)}' is not an integer in 1..${NODE_ID_MAX}`);
  return id;
}

/** A host:port argument (`what` names it in the error). */
function address(text: string, what: string): string {
  if (text.length > 300 || splitAddr(text).port === 0) throw new MembershipError(`${what} '${text.slice(0, 64)}' is not host:port`);
  return text;
}

/**
 * One member as RAFT.MEMBERS shows it: [id, client address, peer address, "voter"|"learner",
 * match index (-1 when not answered by the leader), 1 if it leads else 0].
 */
function renderMembers(members: readonly MemberStatus[], leader: number, out: ReplyWriter): void {
  out.array(members.length);
  for (const m of members) {
    out.array(6);
    out.int(m.id);
    out.bulk(m.addr);
    out.bulk(m.peer);
    out.bulk(m.voter ? "voter" : "learner");
    out.int(m.match);
    out.int(m.id === leader ? 1 : 0);
  }
}

const ok = (out: ReplyWriter) => out.ok();

/**
 * `afterForward`: on a node that forwarded the request, run once the leader answered (or the link
 * to it was lost) before replying; true if the request is then known to have succeeded.
 */
function spec(name: string, arity: number, onLeader: OnLeader, afterForward?: (node: Node, argv: string[]) => Promise<boolean>): CommandSpec<ServerCtx> {
  return {
    name,
    arity,
    flags: ["admin", "noquorum-ok", "loading-ok"],
    firstKey: 0,
    lastKey: 0,
    keyStep: 0,
    exec(ctx, argv, out) {
      const node = ctx.server.node;
      const settle = ctx.server.defer(ctx.conn);
      const fail = (e: unknown) => {
        if (e instanceof MembershipError || e instanceof ClusterError) settle((o) => o.error(e.reply));
        else throw e;
      };
      if (node.isLeader()) {
        onLeader(node, argv).then(settle, fail);
        return;
      }
      if (ctx.conn.peerOf !== 0) {
        // Sent here by a member that took this node for the leader: no second hop.
        settle((o) => o.error("TRYAGAIN this node is no longer the leader: retry"));
        return;
      }
      if (name === "raft.members" && node.leaderAddr() === undefined) {
        // No leader to ask: this node's own view (match indexes unknown).
        settle((o) => renderMembers(node.view.members(), 0, o));
        return;
      }
      node.forwardAdmin(argv).then(
        async (reply: Buffer) => {
          if (afterForward !== undefined && reply[0] !== 45) await afterForward(node, argv);
          settle((o) => (o as ReplyBuffer).raw(reply));
        },
        async (e: unknown) => {
          // A transfer drops the link to the old leader as it succeeds: what counts is who leads now.
          if (afterForward !== undefined && e instanceof ClusterError && e.failure.kind === "uncertain" && (await afterForward(node, argv))) settle(ok);
          else fail(e);
        },
      );
    },
  };
}

export const RAFT_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  // RAFT.MEMBERS
  spec("raft.members", 1, async (node) => {
    const members = node.view.members();
    return (out) => renderMembers(members, node.id, out);
  }),
  // RAFT.ADD <id> <client host:port> <peer host:port>: a learner, its addresses in the log.
  spec("raft.add", 4, async (node, argv) => {
    await node.addLearner(nodeId(argv[1]!), address(argv[2]!, "client address"), address(argv[3]!, "peer address"));
    return ok;
  }),
  // RAFT.PROMOTE <id>: learner -> voter, refused (NOTREADY, how far behind) until caught up.
  spec("raft.promote", 2, async (node, argv) => {
    await node.promote(nodeId(argv[1]!));
    return ok;
  }),
  // RAFT.REMOVE <id>
  spec("raft.remove", 2, async (node, argv) => {
    await node.remove(nodeId(argv[1]!));
    return ok;
  }),
  // RAFT.TRANSFER <id>: answered once the target leads (a forwarding node also waits to see it lead).
  spec(
    "raft.transfer",
    2,
    async (node, argv) => {
      await node.transfer(nodeId(argv[1]!));
      return ok;
    },
    (node, argv) => node.waitLeader(Number(argv[1]), TRANSFER_SEEN_WAIT_MS),
  ),
];
