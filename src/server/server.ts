// Client-facing TCP server: moves bytes between sockets and dispatch, with per-connection
// output queues, backpressure, limits and graceful shutdown. No command logic lives here.
import type { Socket, TCPSocketListener } from "bun";
import { assert, AssertionError, ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { ReplyBuffer, type Proto } from "../resp/encode.ts";
import { RequestParser } from "../resp/request-parser.ts";
import { arityOk, type CommandSpec } from "../kv/command.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { ServerConfig } from "../config.ts";
import { Dispatcher } from "./dispatch.ts";
import type { Db } from "../kv/db.ts";
import { type Proposal, WriteRefusedError } from "../node/proposal.ts";
import { type ConnTxn, interceptTxn, TXN_HANDLED, TXN_HOLD } from "./txn-commands.ts";
import { ClusterError, type ClusterNode } from "../node/cluster-node.ts";
import { StorageIoError, WalFailedError } from "../node/errors.ts";
import type { ClusterView } from "../node/cluster-view.ts";
import { unwrapRead } from "./read-commands.ts";
import { AclGate, aclNames, PROTECTED_MODE_DENIED } from "./acl.ts";
import { rewriteAclWrite } from "./auth-commands.ts";
import { clientInfoLine } from "./conn-commands.ts";
import type { ServerCommand } from "./dispatch.ts";
import { type ConnSubs, PubSubHub, SUBSCRIBED_MODE_COMMANDS, subscribedModeError } from "./pubsub.ts";
import type { ClientTls } from "./tls.ts";

/** Commands one connection may have waiting behind its own unapplied writes before reading pauses. */
export const PENDING_COMMANDS_MAX = 16 * 1024;

/**
 * Commands one call of process() handles before it lets the event loop run (the rest are handled
 * in a later turn): a client resumed with 16k commands buffered kept a leader from its heartbeats
 * for 170-420 ms.
 */
export const PROCESS_COMMANDS_PER_CALL_MAX = 2048;

/** On shutdown, a client is closed once it has sent nothing for this long and has all its replies. */
export const SHUTDOWN_QUIET_MS = 100;
/**
 * On shutdown, a client's commands read within SHUTDOWN_QUIET_MS of the signal are carried out
 * (they were sent before it, or at the same moment); later ones are refused with this reply,
 * never carried out, so a client retries them on another node (the project's client leaves the
 * connection at once) instead of keeping the node from going quiet until the shutdown timeout
 * cuts it off with writes in flight. Links of other members are served until they go quiet.
 */
export const SHUTTING_DOWN_REPLY = "TRYAGAIN node shutting down: retry on another node";

/**
 * After the last reply to a connection kv closes (QUIT, a protocol error, a half-close), kv sends
 * its FIN and reads and discards what the client still sends for at most this long before closing.
 * Closing with unread input makes the kernel send a reset, and a reset makes the client's kernel
 * drop replies it has received but not yet read.
 */
export const LINGER_MS = 1000;

/**
 * Idle collection. JavaScriptCore collects when the program allocates, so a server that went
 * quiet after FLUSHALL (or after deleting most of its keys) kept the freed memory: ~190 MB of
 * dead keys stayed in the heap for as long as nobody sent anything. Every IDLE_GC_CHECK_MS the
 * server looks; after IDLE_GC_QUIET_CHECKS looks in a row with at most IDLE_GC_QUIET_COMMANDS
 * commands each (a monitor polling INFO does not count as load), and when at least half of
 * the keys held at the last collection (and IDLE_GC_KEYS_MIN) are gone, it runs one full
 * collection. Its pause grows with what is still live, so it is skipped while more than
 * IDLE_GC_LIVE_KEYS_MAX keys remain (the collector's own schedule handles those once traffic
 * resumes); measured: 181 ms after FLUSHALL of 632k keys. It runs only on a quiet server.
 */
export const IDLE_GC_CHECK_MS = 1000;
export const IDLE_GC_QUIET_CHECKS = 2;
export const IDLE_GC_QUIET_COMMANDS = 10;
export const IDLE_GC_KEYS_MIN = 10_000;
export const IDLE_GC_LIVE_KEYS_MAX = 1_000_000;

/**
 * What a connection is owed, in reply order, while one of its writes is not yet applied: the
 * write itself (answered when the log applies it), a command queued behind it (run then), or a
 * reply made later (an error kept in its place, SAVE's deferred reply, the close after QUIT or a
 * half-close; `reply` is unset until SAVE settles).
 */
export type PendingCommand =
  | { readonly kind: "write"; readonly proposal: Proposal<Conn> }
  | { readonly kind: "queued"; readonly argv: string[]; readonly write?: boolean; readonly stale?: boolean }
  | { readonly kind: "later"; reply: ((out: ReplyBuffer) => void) | undefined }
  | { readonly kind: "read"; readonly argv: string[]; readonly gate: ReadGate };

/**
 * A linearizable read point shared by the reads of one batch (where reads are not local): reads wait in their
 * connection's queue until it opens (the node's state then reflects every write acknowledged
 * before they arrived), or answer its error.
 */
export interface ReadGate {
  open: boolean;
  error: string | null;
  readonly conns: Set<Conn>;
}

const log = logger("server");

/**
 * A write is proposed (or forwarded) only when nothing ahead of it on its
 * connection could be answered after it: a read waiting for its read point, a reply still to
 * come (a forwarded write, SAVE), or a write queued behind those.
 */
function blocksWrites(item: PendingCommand): boolean {
  return item.kind === "read" || item.kind === "later" || (item.kind === "queued" && item.write === true);
}

/** Per-connection state. Replies for one read batch are encoded into the server's shared scratch buffer. */
export class Conn {
  readonly parser: RequestParser;
  proto: Proto = 2;
  name: string | null = null;
  libName = "";
  libVer = "";
  /** Reply bytes the kernel has not taken yet, oldest first. */
  queue: Buffer[] = [];
  queuedBytes = 0;
  /** Reading is paused because queuedBytes passed the output limit. */
  pausedForOutput = false;
  /** Close once the queue drains (QUIT, protocol error, shutdown). */
  closing = false;
  /** No more input is read or parsed (after a protocol error; replies still owed are sent). */
  inputClosed = false;
  /**
   * The client shut its sending side (TCP FIN, `nc -N`, `shutdown(SHUT_WR)`): the commands it
   * sent are still run and every reply owed is sent (writes once durable), then kv closes.
   */
  peerEnded = false;
  closed = false;
  lastCommand = "";
  /**
   * Commands waiting behind this connection's own unapplied writes, in arrival order. Change it
   * only through pend/pendFront/unpend/replacePending, which keep `blockers` right.
   */
  readonly pending: PendingCommand[] = [];
  /**
   * Items in `pending` that a new write must wait behind (see blocksWrites): a
   * count, so that the check costs O(1) per write (a scan per write stalled a leader 400 ms on a
   * burst of 13k pipelined writes, and cost it its leadership).
   */
  blockers = 0;

  pend(item: PendingCommand): void {
    this.pending.push(item);
    if (blocksWrites(item)) this.blockers++;
  }

  pendFront(item: PendingCommand): void {
    this.pending.unshift(item);
    if (blocksWrites(item)) this.blockers++;
  }

  unpend(): PendingCommand | undefined {
    const item = this.pending.shift();
    if (item !== undefined && blocksWrites(item)) this.blockers--;
    return item;
  }

  replacePending(i: number, item: PendingCommand): void {
    if (blocksWrites(this.pending[i]!)) this.blockers--;
    this.pending[i] = item;
    if (blocksWrites(item)) this.blockers++;
  }
  /** Replies produced outside a read batch (when writes apply); allocated on first use. */
  applyOut: ReplyBuffer | null = null;
  /** Size of the last reply produced while writes apply, and where the pending write's reply starts in applyOut. */
  lastReplyBytes = 0;
  replyMark = 0;
  /** Reading is paused because too many commands wait behind unapplied writes. */
  pausedForPending = false;
  /**
   * Parsing stopped after a command that must run before anything behind it is even proposed
   * (see BARRIER_COMMANDS); it resumes once every pending command has run.
   */
  pausedForBarrier = false;
  /**
   * Reading is paused because the writes accepted and not yet durable, across all clients, passed
   * --pending-writes-limit when this client's next command was a write: that write waits here,
   * parsed but not proposed, and is proposed first once the log has caught up.
   */
  pausedForPendingWrites = false;
  heldWrite: string[] | null = null;
  /** MULTI/WATCH state (txn-commands.ts), made by the first MULTI or WATCH. */
  txn: ConnTxn | null = null;
  /** READONLY: on a follower, reads are answered from its own state within --max-staleness (READWRITE: linearizable). */
  readOnly = false;
  /** Channels, patterns and watches (pubsub.ts); null when it has none. */
  subs: ConnSubs | null = null;
  /** The log index of this connection's last write answered (KV.LASTINDEX), 0 before any. */
  lastWriteIndex = 0;
  /** Set by KV.PEER: this connection is another member's link (forwarded writes, read-index requests). */
  peerOf = 0;
  /** The ACL user this connection runs as, and whether it has authenticated (src/server/acl.ts). */
  user = "default";
  authenticated = false;
  /** Came in on the TLS port. */
  tls = false;
  /** process() will run again in a later turn (it stopped at PROCESS_COMMANDS_PER_CALL_MAX). */
  continueScheduled = false;
  /** Set once kv has sent its FIN and is discarding input until the client closes (see LINGER_MS). */
  lingerTimer: ReturnType<typeof setTimeout> | null = null;
  readonly createdAtMs: number;
  lastActiveMs: number;

  constructor(
    readonly id: number,
    readonly socket: Socket<Conn>,
    server: KvServer,
    nowMs: number,
  ) {
    this.parser = new RequestParser(server.config.limits);
    server.acl.initConn(this);
    this.createdAtMs = nowMs;
    this.lastActiveMs = nowMs;
  }

  get addr(): string {
    return `${this.socket.remoteAddress}:${(this.socket as unknown as { remotePort?: number }).remotePort ?? 0}`;
  }
}

export interface ServerStats {
  startedAtMs: number;
  connectionsReceived: number;
  connectionsRejected: number;
  commandsProcessed: number;
  protocolErrors: number;
  /** Full collections run by the idle check (see IDLE_GC_CHECK_MS). */
  idleCollections: number;
  /** Clients closed because replies produced as their writes applied passed the output limit. */
  outputLimitDisconnections: number;
  /** Times a client's reading was paused because the writes not yet durable passed --pending-writes-limit. */
  pendingWritesPauses: number;
}

/**
 * Commands after which a connection's input is not parsed until every command before them and
 * they themselves have run: SAVE answers later (a deferred reply), and writes behind it must not
 * be applied before it; QUIT closes the connection, so nothing sent after it may run.
 */
const BARRIER_COMMANDS: ReadonlySet<string> = new Set(["auth", "hello", "save", "quit", "kv.readindex", "kv.waitindex", "readonly", "readwrite", "reset", "raft.members", "raft.add", "raft.promote", "raft.remove", "raft.transfer", "kv.backup"]);
/** What a node removed from its cluster still answers (every other command gets REMOVED). */
const SERVED_WHEN_REMOVED: ReadonlySet<string> = new Set(["hello", "quit", "info"]);

export class KvServer {
  readonly db: Db;
  readonly conns = new Map<number, Conn>();
  readonly stats: ServerStats;
  readonly dispatcher: Dispatcher;
  /** Authentication, ACL checks, the failed-login limit and the ACL LOG. */
  readonly acl: AclGate;
  /** The Raft group as ROLE, CLUSTER and INFO replication/raft show it. */
  readonly cluster: ClusterView;
  private listener: TCPSocketListener<Conn> | null = null;
  private tlsListener: TCPSocketListener<Conn> | null = null;
  private readonly scratch = new ReplyBuffer(64 * 1024);
  /** Replies to closed connections go here and are dropped. */
  private readonly discard = new ReplyBuffer(1024);
  private nextConnId = 1;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private idleGcTimer: ReturnType<typeof setInterval> | null = null;
  /** Most keys seen since the last idle collection, and the idle check's state. */
  private keysPeak = 0;
  private commandsAtLastCheck = 0;
  private quietChecks = 0;
  private shuttingDown = false;
  /** When shutdown() began (ms, this.now()). */
  private shutdownAtMs = 0;

  /** Subscribers, keyspace notifications and watchers: what applied entries deliver (pubsub.ts). */
  readonly pubsub: PubSubHub;

  /** Connections that got replies while writes were applied; flushed once per applied batch. */
  private touched = new Set<Conn>();
  /** Connections holding a write until the writes not yet durable are under --pending-writes-limit, oldest first. */
  readonly pendingWritesWaiters = new Set<Conn>();

  constructor(
    readonly config: ServerConfig,
    /** The member of a Raft group this server runs on (`kv serve` without --cluster: the only one). */
    readonly node: ClusterNode<Conn>,
    /** Client TLS (--tls-port), src/server/tls.ts. */
    readonly tls?: ClientTls,
    /** The hub the node reported to since it opened (ClusterNodeOptions.changeSink); else a new one, from now. */
    hub?: PubSubHub,
  ) {
    this.db = node.fsm.db;
    this.cluster = node.view;
    node.replyTo = (p) => this.replyTo(p);
    node.onApplied = (p) => {
      this.dispatcher.endApply(p.owner, p.argv);
      const out = this.replyOut(p.owner);
      p.owner.lastReplyBytes = out.len - p.owner.replyMark;
      this.drainPending(p.owner, out);
    };
    node.onBatchDone = () => {
      // The idle collection compares against the most keys held since its last run.
      const keys = this.db.dbsize();
      if (keys > this.keysPeak) this.keysPeak = keys;
      this.flushTouched();
      this.resumePendingWritesWaiters();
      for (const [c, why] of this.acl.staleClients(this.conns.values())) this.closeForAcl(c, why);
    };
    node.onFailed = (batch, err) => this.onWriteFailed(batch, err);
    this.stats = {
      startedAtMs: Date.now(),
      connectionsReceived: 0,
      connectionsRejected: 0,
      commandsProcessed: 0,
      protocolErrors: 0,
      idleCollections: 0,
      outputLimitDisconnections: 0,
      pendingWritesPauses: 0,
    };
    this.dispatcher = new Dispatcher(this);
    this.acl = new AclGate(node.fsm.acl, aclNames((n) => this.dispatcher.lookupFullName(n)), config.aclFile, (conn, argv) =>
      clientInfoLine({ server: this, conn, db: this.db, nowMs: this.now() }, conn, argv),
    );
    this.pubsub = hub ?? new PubSubHub(config.watchHistoryRecords, config.watchHistoryBytes, node.raftSm.applied + 1);
    this.pubsub.attach({ push: (c, b) => this.pushTo(c, b), drop: (c, why) => this.dropSubscriber(c, why), appliedIndex: () => node.raftSm.applied });
    node.raftSm.setChangeSink(this.pubsub);
    // Every error reply is counted (INFO errorstats): each reply buffer reports its errors.
    this.scratch.onError = this.discard.onError = this.dispatcher.stats.countError;
  }

  /** The plain (non-TLS) port; 0 when there is none (--port 0 with --tls-port). */
  get port(): number {
    return this.listener?.port ?? 0;
  }

  get tlsPort(): number {
    return this.tlsListener?.port ?? 0;
  }

  start(): void {
    // As Redis: with a TLS port, --port 0 means no plain port (without one it picks a free port).
    if (this.tls === undefined || this.config.port !== 0) this.listener = this.listen(this.config.port, false);
    if (this.tls !== undefined) this.tlsListener = this.listen(this.config.tls!.port, true);
    // Reads already hide expired keys; the sweep reclaims their memory. The leader logs the
    // deletions (ClusterNode.sweepExpired), so every member, and a replay, deletes them alike.
    this.sweepTimer = setInterval(() => {
      this.node.sweepExpired(this.now(), this.config.expireSweepKeysMax);
    }, this.config.expireSweepIntervalMs);
    this.keysPeak = this.db.dbsize(); // what recovery loaded
    this.idleGcTimer = setInterval(() => this.idleGcCheck(), IDLE_GC_CHECK_MS);
    this.idleGcTimer.unref();
  }

  /**
   * Re-reads the TLS files (SIGHUP, CONFIG SET tls-...): the TLS listener is opened again on its
   * port with them; connections already open keep the certificate they were made with. Throws
   * ConfigError (and keeps the old setup) when a file is bad.
   */
  reloadTls(next?: Parameters<ClientTls["reload"]>[0]): void {
    const tls = this.tls;
    if (tls === undefined || this.shuttingDown) return;
    tls.reload(next);
    this.node.reloadPeerTls();
    const old = this.tlsListener;
    if (old === null) return;
    const port = old.port;
    old.stop(false);
    this.tlsListener = this.listen(port, true);
    log.info(`TLS certificates re-read: ${tls.material.subject}, valid until ${new Date(tls.material.notAfterMs).toISOString()}`);
  }

  private listen(port: number, tls: boolean): TCPSocketListener<Conn> {
    const server = this;
    const clientTls = this.tls;
    return Bun.listen<Conn>({
      hostname: this.config.host,
      port,
      ...(tls && clientTls !== undefined ? { tls: clientTls.listenOptions() } : {}),
      // A client that half-closes still reads: its socket stays open for replies (see onPeerEnd).
      allowHalfOpen: true,
      socket: {
        open(socket) {
          if (tls && clientTls !== undefined) {
            // The handshake is done here (no handshake handler): the certificate is checked now.
            const why = clientTls.refusal(socket);
            if (why !== undefined) {
              clientTls.refused++;
              server.stats.connectionsRejected++;
              log.warn(`refused a TLS client from ${socket.remoteAddress}: ${why}`);
              socket.data = undefined as unknown as Conn;
              socket.terminate();
              return;
            }
          }
          server.onOpen(socket);
          if (tls && socket.data !== undefined) socket.data.tls = true;
        },
        data(socket, chunk) {
          server.onData(socket, chunk);
        },
        drain(socket) {
          server.onDrain(socket);
        },
        end(socket) {
          server.onPeerEnd(socket);
        },
        close(socket) {
          server.onClose(socket);
        },
        error(socket, err) {
          log.debug(`connection error: ${err.message}`);
          server.onClose(socket);
        },
      },
    });
  }

  /** The time commands run at: the wall clock, never going back (see ClusterNode.now). */
  now(): number {
    return this.node.now(Date.now());
  }

  /** One look of the idle collection (see IDLE_GC_CHECK_MS). */
  private idleGcCheck(): void {
    const keys = this.db.dbsize();
    const commands = this.stats.commandsProcessed;
    const busy = commands < this.commandsAtLastCheck || commands - this.commandsAtLastCheck > IDLE_GC_QUIET_COMMANDS; // < : RESETSTAT
    this.commandsAtLastCheck = commands;
    if (busy) {
      this.quietChecks = 0;
      return;
    }
    if (++this.quietChecks < IDLE_GC_QUIET_CHECKS) return;
    if (this.keysPeak < IDLE_GC_KEYS_MIN || keys > this.keysPeak / 2 || keys > IDLE_GC_LIVE_KEYS_MAX) return;
    const t0 = performance.now();
    Bun.gc(true);
    this.stats.idleCollections++;
    log.info(`idle collection: ${this.keysPeak} -> ${keys} keys since the last one, ${(performance.now() - t0).toFixed(1)} ms`);
    this.keysPeak = keys;
  }

  private onOpen(socket: Socket<Conn>): void {
    if (this.shuttingDown || this.conns.size >= this.config.maxClients) {
      this.stats.connectionsRejected++;
      socket.data = undefined as unknown as Conn;
      socket.write(this.shuttingDown ? "-ERR server is shutting down\r\n" : "-ERR max number of clients reached\r\n");
      socket.end();
      return;
    }
    if (this.config.protectedMode && this.acl.protectedRefusal(socket.remoteAddress)) {
      this.stats.connectionsRejected++;
      socket.data = undefined as unknown as Conn;
      socket.write(PROTECTED_MODE_DENIED);
      socket.end();
      return;
    }
    const conn = new Conn(this.nextConnId++, socket, this, Date.now());
    socket.data = conn;
    this.conns.set(conn.id, conn);
    this.stats.connectionsReceived++;
  }

  private onData(socket: Socket<Conn>, chunk: Buffer): void {
    const conn = socket.data;
    if (conn === undefined || conn.closing || conn.inputClosed) return;
    conn.lastActiveMs = Date.now();
    try {
      conn.parser.push(chunk);
    } catch (e) {
      const out = this.scratch;
      out.reset();
      this.protocolError(conn, out, e);
      this.send(conn, out);
      return;
    }
    this.process(conn);
  }

  /**
   * Runs every complete command the connection has sent, in order, and sends the replies of
   * each batch in one write. Once unsent replies pass the output limit and the kernel will not
   * take more, reading from this client pauses until `drain`.
   */
  process(conn: Conn): void {
    const out = this.scratch;
    const limit = this.config.clientOutputBufferLimit;
    let gate: ReadGate | undefined;
    let handled = 0;
    // Reads wait behind a read barrier unless this node may answer from its own state (readsLocal).
    const readsGated = !this.node.readsLocal();
    for (;;) {
      out.reset();
      out.proto = conn.proto;
      const nowMs = this.now();
      conn.lastActiveMs = nowMs;
      let overLimit = false;
      try {
        while (!conn.closing && !conn.inputClosed && !conn.pausedForBarrier && !conn.pausedForPendingWrites) {
          if (conn.queuedBytes + out.len > limit) {
            overLimit = true;
            break;
          }
          if (conn.pending.length >= PENDING_COMMANDS_MAX) {
            conn.pausedForPending = true;
            conn.socket.pause();
            break;
          }
          if (++handled > PROCESS_COMMANDS_PER_CALL_MAX) {
            // The rest of what this client sent is handled in a later turn (see the limit).
            this.continueLater(conn);
            break;
          }
          let argv = conn.heldWrite;
          if (argv !== null) conn.heldWrite = null;
          else {
            argv = conn.parser.next();
            if (argv === null) {
              if (conn.peerEnded) this.endOfInput(conn, out);
              break;
            }
          }
          let spec = this.dispatcher.lookup(argv[0]!);
          let stale = conn.readOnly;
          if (spec?.name === "kv.read") {
            // `KV.READ <mode> <read command...>`: that read in that mode (KV.READ answers a malformed one).
            const r = unwrapRead(argv, this.isRead);
            if (r !== null) {
              argv = r.argv;
              spec = this.dispatcher.lookup(argv[0]!);
              stale = r.mode === "stale";
            }
          }
          if (this.node.removedWhy !== undefined && (spec === undefined || !SERVED_WHEN_REMOVED.has(spec.name))) {
            // Removed from the cluster: nothing this node says about the data is current any more. A
            // member that forwarded a request here took it for the leader: not carried out, retry.
            this.replyInOrder(conn, out, conn.peerOf !== 0 ? `TRYAGAIN ${this.node.removedWhy}: retry` : `REMOVED ${this.node.removedWhy}: it serves no more; use another member`);
            continue;
          }
          if (this.shuttingDown && conn.peerOf === 0 && nowMs - this.shutdownAtMs >= SHUTDOWN_QUIET_MS) {
            this.replyInOrder(conn, out, SHUTTING_DOWN_REPLY);
            continue;
          }
          if (conn.peerOf === 0 && spec !== undefined) {
            // Authentication and ACL rules, checked on the node the client is connected to, before
            // anything is run, queued, proposed or forwarded (a member's link is trusted: its sender checked).
            const checked = this.aclCheck(conn, spec, argv, nowMs);
            if (typeof checked === "string") {
              const txn = conn.txn;
              if (txn !== null && txn.multi) {
                // As Redis: a command refused while queuing makes EXEC fail; a refused EXEC discards at once.
                if (spec.name === "exec") {
                  txn.endMulti();
                  txn.watched.clear();
                  this.replyInOrder(conn, out, `EXECABORT Transaction discarded because of: ${checked}`);
                  continue;
                }
                txn.dirty = true;
              }
              this.replyInOrder(conn, out, checked);
              continue;
            }
            if (checked !== argv) {
              argv = checked;
              spec = this.dispatcher.lookup(argv[0]!);
            }
          }
          if (conn.subs !== null && conn.proto === 2 && spec !== undefined && !SUBSCRIBED_MODE_COMMANDS.has(spec.name) && arityOk(spec.arity, argv.length) && conn.subs.active()) {
            this.replyInOrder(conn, out, subscribedModeError(spec.name));
            continue;
          }
          if (conn.peerOf === 0) {
            const t = interceptTxn(conn, spec, argv, out);
            if (t === TXN_HANDLED) continue;
            if (t === TXN_HOLD) {
              // EXEC behind a WATCH not run yet: parsed again once every earlier command ran.
              conn.heldWrite = argv;
              conn.pausedForBarrier = true;
              conn.socket.pause();
              break;
            }
            if (t !== null) {
              argv = t;
              spec = this.dispatcher.lookup(argv[0]!);
            }
          }
          let fwdProto: 2 | 3 | undefined;
          if (spec === undefined && conn.peerOf !== 0 && argv.length >= 3 && argv[0]!.toUpperCase() === "KV.FWD") {
            // A write another member forwarded: `KV.FWD <proto> <command...>`, answered in that protocol.
            fwdProto = argv[1] === "3" ? 3 : 2;
            argv = argv.slice(2);
            spec = this.dispatcher.lookup(argv[0]!);
          }
          if (fwdProto !== undefined || this.dispatcher.isLoggedWrite(spec, argv.length)) {
            if (fwdProto === undefined && this.node.pendingBytes >= this.config.pendingWritesLimit) {
              this.holdForPendingWrites(conn, argv);
              break;
            }
            if (conn.blockers > 0) conn.pend({ kind: "queued", argv: fwdProto === undefined ? argv : ["KV.FWD", String(fwdProto), ...argv], write: true });
            else this.startClusterWrite(conn, spec, argv, out, nowMs, fwdProto, false);
          } else if (readsGated && spec !== undefined && (spec.flags.includes("readonly") || spec.name === "watch") && arityOk(spec.arity, argv.length)) {
            if (stale && !this.node.isLeader()) this.staleRead(conn, spec, argv, out, nowMs);
            else {
              conn.pend({ kind: "read", argv, gate: (gate ??= this.readGate()) });
              gate.conns.add(conn);
            }
          } else if (conn.pending.length > 0) {
            conn.pend({ kind: "queued", argv });
          } else {
            this.dispatcher.run(conn, spec, argv, out, nowMs);
          }
          if (conn.pending.length > 0 && spec !== undefined && BARRIER_COMMANDS.has(spec.name)) {
            conn.pausedForBarrier = true;
            conn.socket.pause();
          }
        }
      } catch (e) {
        this.protocolError(conn, out, e);
      }
      this.send(conn, out);
      if (!overLimit || conn.closed) return;
      if (conn.queue.length > 0) {
        // The kernel is full too: stop reading this client until drain.
        conn.pausedForOutput = true;
        conn.socket.pause();
        return;
      }
    }
  }

  /**
   * The ACL check of one command (its subcommand resolved): the error reply, or the argv to run
   * (ACL SETUSER/DELUSER/LOAD become their logged KV.ACL entry). Unknown names, subcommands and
   * bad arity pass: dispatch answers them, as Redis does before it checks authentication.
   */
  private aclCheck(conn: Conn, spec: CommandSpec<ServerCtx>, argv: string[], nowMs: number): string | string[] {
    if (spec.name !== "acl" && spec.name !== "kv.acl" && this.acl.unrestricted(conn)) return argv;
    let cmd = spec as ServerCommand;
    if (cmd.subcommand !== null && argv.length >= 2) {
      const sub = cmd.subcommand(argv[1]!);
      if (sub === undefined) return argv;
      cmd = sub;
    }
    if (!arityOk(cmd.arity, argv.length)) return argv;
    conn.lastCommand = cmd.fullName; // as the ACL LOG's client-info shows it
    const denied = this.acl.check(conn, cmd, argv, nowMs);
    if (denied !== null) return denied;
    if (cmd.name === "kv.acl") return "ERR KV.ACL is the logged form of ACL SETUSER, DELUSER and LOAD: send those";
    if (cmd.fullName === "acl|setuser" || cmd.fullName === "acl|deluser" || cmd.fullName === "acl|load") {
      const r = rewriteAclWrite({ server: this }, argv);
      return "error" in r ? r.error : r.argv;
    }
    return argv;
  }

  // ---- writes through the leader, reads behind a read barrier ----------------------------

  /**
   * A write: proposed here on the leader (answered when applied), forwarded to the
   * leader elsewhere (answered with the leader's reply bytes). `fwdProto`: it was forwarded to this
   * node by another member (never forwarded again). `atFront`: called while draining, at the head
   * of the connection's queue (its reply or place goes first); else at the end.
   */
  private startClusterWrite(conn: Conn, spec: CommandSpec<ServerCtx> | undefined, argv: string[], out: ReplyBuffer, nowMs: number, fwdProto: 2 | 3 | undefined, atFront: boolean): void {
    const node = this.node;
    if (!this.dispatcher.isLoggedWrite(spec, argv.length)) {
      // A forwarded command that is not a write here: run it in place (unknown names, bad arity answer themselves).
      if (atFront || conn.pending.length === 0) this.dispatcher.run(conn, spec, argv, out, nowMs);
      else conn.pend({ kind: "queued", argv });
      return;
    }
    const refused = this.dispatcher.refusal(spec!, argv);
    if (refused !== null) {
      this.answerInOrder(conn, out, atFront, refused);
      return;
    }
    if (node.isLeader()) {
      let p: Proposal<Conn>;
      try {
        p = node.propose(argv, nowMs, conn, fwdProto ?? conn.proto, fwdProto !== undefined);
      } catch (e) {
        if (!(e instanceof WriteRefusedError)) throw e;
        log.warn(`client ${conn.id} (${conn.addr}): ${e.message}`);
        this.dispatcher.rejectLogged(argv);
        this.answerInOrder(conn, out, atFront, `ERR ${e.message}`);
        return;
      }
      this.place(conn, atFront, { kind: "write", proposal: p });
      return;
    }
    if (fwdProto !== undefined) {
      // Another member sent it here as the leader; this node is not (any more): certainly not logged.
      this.answerInOrder(conn, out, atFront, "TRYAGAIN this node is no longer the leader: retry");
      return;
    }
    const item: PendingCommand & { kind: "later" } = { kind: "later", reply: undefined };
    this.place(conn, atFront, item);
    node.forward(argv, conn.proto).then(
      (r) => {
        if (r.index > 0) conn.lastWriteIndex = r.index;
        this.settle(conn, item, (o) => o.raw(r.bytes));
      },
      (e: unknown) => {
        if (!(e instanceof ClusterError)) throw crash(e);
        this.settle(conn, item, (o) => o.error(e.reply));
      },
    );
  }

  /** Queues `item` in the connection's reply order: at the head while draining (`atFront`), else at the end. */
  private place(conn: Conn, atFront: boolean, item: PendingCommand): void {
    if (atFront) conn.pendFront(item);
    else conn.pend(item);
  }

  /** An error reply in the connection's order: now if nothing is owed before it, else queued. */
  private answerInOrder(conn: Conn, out: ReplyBuffer, atFront: boolean, text: string): void {
    if (atFront || conn.pending.length === 0) out.error(text);
    else conn.pend({ kind: "later", reply: (o) => o.error(text) });
  }

  /** Sets the reply of a pending "later" item; answers it (and what follows) if it heads the queue. */
  private settle(conn: Conn, item: PendingCommand & { kind: "later" }, reply: (out: ReplyBuffer) => void): void {
    item.reply = reply;
    if (conn.pending[0] === item) {
      this.drainPending(conn, this.replyOut(conn));
      this.flushTouched();
    }
  }

  /**
   * A READONLY read on a follower: answered from this node's state if it is within
   * --max-staleness of its leader (ClusterNode.staleReadRefusal), else `-STALE <why>`; checked when
   * it runs (behind this connection's earlier commands, if any).
   */
  private staleRead(conn: Conn, spec: CommandSpec<ServerCtx>, argv: string[], out: ReplyBuffer, nowMs: number): void {
    if (conn.pending.length > 0) {
      conn.pend({ kind: "queued", argv, stale: true });
      return;
    }
    const refused = this.node!.staleReadRefusal(this.config.maxStalenessMs);
    if (refused !== null) out.error(refused);
    else this.dispatcher.run(conn, spec, argv, out, nowMs);
  }

  /** A known read command with a valid word count (KV.READ takes only those). */
  private readonly isRead = (name: string, argc: number): boolean => {
    const spec = this.dispatcher.lookup(name);
    return spec !== undefined && spec.flags.includes("readonly") && arityOk(spec.arity, argc);
  };

  /** A read point for the reads of one batch: asked now (after the reads arrived), opened when confirmed. */
  private readGate(): ReadGate {
    const gate: ReadGate = { open: false, error: null, conns: new Set() };
    this.node.readBarrier().then(
      () => this.openGate(gate, null),
      (e: unknown) => {
        if (!(e instanceof ClusterError)) throw crash(e);
        this.openGate(gate, e.reply);
      },
    );
    return gate;
  }

  private openGate(gate: ReadGate, error: string | null): void {
    gate.open = true;
    gate.error = error;
    for (const conn of gate.conns) {
      const head = conn.pending[0];
      if (head?.kind === "read" && head.gate === gate) this.drainPending(conn, this.replyOut(conn));
    }
    this.flushTouched();
  }

  /** Runs process(conn) again in a later turn of the event loop (once, however often asked). */
  private continueLater(conn: Conn): void {
    if (conn.continueScheduled) return;
    conn.continueScheduled = true;
    setImmediate(() => {
      conn.continueScheduled = false;
      if (!conn.closed) this.process(conn);
    });
  }

  /**
   * The writes not yet durable are past --pending-writes-limit: this client's write waits, unproposed,
   * and its socket is not read until the log catches up (resumePendingWritesWaiters). Clients whose
   * next command is a read go on being served. No request is dropped or failed for it.
   */
  private holdForPendingWrites(conn: Conn, argv: string[]): void {
    conn.heldWrite = argv;
    conn.pausedForPendingWrites = true;
    conn.socket.pause();
    this.pendingWritesWaiters.add(conn);
    this.stats.pendingWritesPauses++;
  }

  /** After writes were applied or failed: waiting clients resume, oldest first, while under the limit. */
  private resumePendingWritesWaiters(): void {
    for (const conn of this.pendingWritesWaiters) {
      if (this.node.pendingBytes >= this.config.pendingWritesLimit) return;
      this.pendingWritesWaiters.delete(conn);
      conn.pausedForPendingWrites = false;
      if (conn.closed) continue;
      this.resumeIfUnpaused(conn);
      this.process(conn); // proposes the held write first; may hold another and join the end again
    }
  }

  /** The client sent FIN: what it sent before is still parsed and answered (see Conn.peerEnded). */
  private onPeerEnd(socket: Socket<Conn>): void {
    const conn = socket.data;
    if (conn === undefined || conn.closed) return;
    conn.peerEnded = true;
    if (conn.lingerTimer !== null) {
      // kv had sent everything owed and its FIN: the client has closed its side too.
      clearTimeout(conn.lingerTimer);
      socket.end();
      return;
    }
    // Paused for a reason: the resume runs process(), which reaches the end of input then.
    if (!conn.closing && !conn.inputClosed && !conn.pausedForOutput && !conn.pausedForPending && !conn.pausedForBarrier && !conn.pausedForPendingWrites) this.process(conn);
  }

  /**
   * Every command the client sent before its FIN has been parsed (an unfinished one is dropped):
   * close once the replies owed are sent, behind this connection's unapplied writes if any.
   */
  private endOfInput(conn: Conn, out: ReplyBuffer): void {
    conn.inputClosed = true;
    if (conn.pending.length === 0) conn.closing = true;
    else conn.pend({ kind: "later", reply: () => void (conn.closing = true) });
  }

  /** An error reply for this connection, after every reply it is already owed. */
  private replyInOrder(conn: Conn, out: ReplyBuffer, text: string): void {
    if (conn.pending.length === 0) out.error(text);
    else conn.pend({ kind: "later", reply: (o) => o.error(text) });
  }

  /**
   * Bad bytes: answer `-ERR Protocol error: ...` after every reply already owed (behind this
   * connection's unapplied writes, if any), then close.
   */
  private protocolError(conn: Conn, out: ReplyBuffer, e: unknown): void {
    if (!(e instanceof ProtocolError)) throw crash(e);
    this.stats.protocolErrors++;
    log.debug(`protocol error from client ${conn.id}: ${e.message}`);
    const text = `ERR ${e.message}`;
    conn.inputClosed = true;
    if (conn.pending.length === 0) {
      out.error(text);
      conn.closing = true;
    } else {
      conn.pend({
        kind: "later",
        reply: (o) => {
          o.error(text);
          conn.closing = true;
        },
      });
    }
  }

  /** Writes a reply buffer's bytes to the socket (see hand), then ends a closing connection with nothing left owed. */
  private send(conn: Conn, out: ReplyBuffer): void {
    this.hand(conn, out);
    if (conn.closing && conn.queue.length === 0 && conn.pending.length === 0) this.finish(conn);
  }

  /**
   * Every reply owed is handed to the socket: send FIN, then discard input until the client
   * closes or LINGER_MS passes (onData drops input of a closing connection), then close.
   */
  private finish(conn: Conn): void {
    if (conn.lingerTimer !== null || conn.closed) return;
    const socket = conn.socket;
    // The client's FIN was read: nothing of its input is left unread, close now.
    if (conn.peerEnded) {
      socket.end();
      return;
    }
    socket.shutdown();
    socket.resume();
    conn.lingerTimer = setTimeout(() => {
      if (!conn.closed) socket.end();
    }, LINGER_MS);
  }

  /** Hands the buffer's bytes to the socket (what the kernel does not take is queued) and empties it. */
  private hand(conn: Conn, out: ReplyBuffer): void {
    if (out.len > 0 && !conn.closed) {
      if (conn.queue.length === 0) {
        const view = out.view();
        const written = conn.socket.write(view);
        if (written < view.length && written >= 0) {
          conn.queue.push(Buffer.from(view.subarray(written)));
          conn.queuedBytes += view.length - written;
        }
      } else {
        conn.queue.push(Buffer.from(out.view()));
        conn.queuedBytes += out.len;
      }
    }
    out.reset();
  }

  // ---- writes: applied in log order once durable -----------------------------------------

  /** Reading from a client resumes only once none of the reasons to pause it holds. */
  private resumeIfUnpaused(conn: Conn): void {
    if (!conn.pausedForOutput && !conn.pausedForPending && !conn.pausedForBarrier && !conn.pausedForPendingWrites) conn.socket.resume();
  }

  /** Where replies produced while writes apply go: the connection's buffer, or a sink once it is closed. */
  private replyOut(conn: Conn): ReplyBuffer {
    if (conn.closed) {
      this.discard.reset();
      return this.discard;
    }
    let out = conn.applyOut;
    if (out === null) {
      out = conn.applyOut = new ReplyBuffer(1024);
      out.onError = this.dispatcher.stats.countError;
    }
    out.proto = conn.proto;
    this.touched.add(conn);
    return out;
  }

  /** A write is about to be applied: it leaves the head of its connection's queue; its reply goes to that connection. */
  private replyTo(p: Proposal<Conn>): ReplyBuffer {
    const conn = p.owner;
    const head = conn.unpend();
    assert(head?.kind === "write" && head.proposal === p, `applied write ${p.index} is not the head of its connection's queue`);
    // Replies owed before this one (earlier writes' too: GETEX, SET ... GET) may be past the limit.
    let out = this.replyOut(conn);
    if (!this.withinOutputLimit(conn, out)) out = this.replyOut(conn); // closed: the sink
    conn.replyMark = out.len;
    if (p.forwarded) out.raw(Buffer.from(`*2\r\n:${p.index}\r\n`, "latin1"));
    else conn.lastWriteIndex = p.index;
    this.dispatcher.beginApply();
    return out;
  }

  private onWriteFailed(batch: Proposal<Conn>[], err: Error): void {
    let text: string;
    if (err instanceof ClusterError) {
      text = err.reply;
    } else if (err instanceof WalFailedError) {
      text = `MISCONF kv cannot write to its log, so writes are refused until the node restarts (${err.first.message})`;
    } else if (err instanceof StorageIoError) {
      // After a failed write or fsync the bytes may or may not be on disk: a restart could
      // recover them. The outcome is unknown, not failed.
      text = `UNCERTAIN write outcome unknown: the log ${err.op} failed (${err.message}); it may or may not be applied after a restart`;
      log.error(`log ${err.op} failed: ${err.message}; refusing writes until restart`);
    } else {
      throw crash(err);
    }
    for (const p of batch) {
      const conn = p.owner;
      const at = conn.pending.findIndex((c) => c.kind === "write" && c.proposal === p);
      assert(at >= 0, `failed write ${p.index} is not in its connection's queue`);
      this.dispatcher.rejectLogged(p.argv);
      if (at > 0) {
        // Replies owed before it are still to come (a Raft member fails writes one by one): its error waits its turn.
        conn.replacePending(at, { kind: "later", reply: (o) => o.error(text) });
        continue;
      }
      conn.unpend();
      const out = this.replyOut(conn);
      out.error(text);
      this.drainPending(conn, out);
    }
    this.flushTouched();
    this.resumePendingWritesWaiters();
  }

  /** Runs the commands that waited behind a write, up to the next unapplied write. */
  private drainPending(conn: Conn, out: ReplyBuffer): void {
    let nowMs = 0;
    while (conn.pending.length > 0) {
      const item = conn.pending[0]!;
      if (item.kind === "write") return; // applied, or failed, by the log in its turn
      if (item.kind === "later" && item.reply === undefined) return; // SAVE not settled yet
      if (item.kind === "read" && !item.gate.open) return; // its read point is not confirmed yet
      if (item.kind === "queued" && item.write === true) {
        // A write that waited behind a read or a forwarded write: it starts now, at the head.
        conn.unpend();
        let argv = item.argv;
        let fwd: 2 | 3 | undefined;
        if (argv[0] === "KV.FWD") {
          fwd = argv[1] === "3" ? 3 : 2;
          argv = argv.slice(2);
        }
        if (conn.closed) continue; // never proposed: nothing to answer
        this.startClusterWrite(conn, this.dispatcher.lookup(argv[0]!), argv, out, nowMs === 0 ? (nowMs = this.now()) : nowMs, fwd, true);
        continue;
      }
      if (item.kind === "queued" && item.stale === true && !conn.closed && this.node!.isLeader()) {
        // Became the leader meanwhile: its reads are linearizable (a read point is asked now).
        const gate = this.readGate();
        gate.conns.add(conn);
        conn.replacePending(0, { kind: "read", argv: item.argv, gate });
        return;
      }
      conn.unpend();
      if (item.kind === "later") item.reply!(out);
      else if (item.kind === "read" && item.gate.error !== null) {
        if (!conn.closed) out.error(item.gate.error);
      } else if (!conn.closing && !conn.closed) {
        // Checked before each command, as in a read batch. Once closed, the loop goes on dropping
        // the queued reads, unrun, up to the connection's next write (also for a client that
        // disconnected by itself).
        if (!this.withinOutputLimit(conn, out)) {
          out = this.replyOut(conn);
          continue;
        }
        const before = out.len;
        const refused = item.kind === "queued" && item.stale === true ? this.node!.staleReadRefusal(this.config.maxStalenessMs) : null;
        if (refused !== null) out.error(refused);
        else this.dispatcher.dispatch(conn, item.argv, out, nowMs === 0 ? (nowMs = this.now()) : nowMs);
        conn.lastReplyBytes = out.len - before;
      }
    }
  }

  /**
   * Before a reply is produced while writes apply: may this client have it? Past the output limit,
   * the unsent bytes are handed to the kernel first; if what is still unsent, apart from the last
   * reply, is past the limit, the client is closed (closeForOutputLimit). So one reply larger than
   * the limit still goes out, and what a client holds stays within the limit plus one reply.
   */
  private withinOutputLimit(conn: Conn, out: ReplyBuffer): boolean {
    const limit = this.config.clientOutputBufferLimit;
    if (conn.queuedBytes + out.len <= limit) return true;
    this.hand(conn, out); // what the kernel takes is no longer held
    if (conn.closed) return false;
    if (conn.queuedBytes - conn.lastReplyBytes <= limit) return true;
    this.closeForOutputLimit(conn);
    return false;
  }

  /**
   * Replies produced while this client's own writes apply (theirs, and those of the commands
   * queued behind them) are past the output limit and the kernel will not take them. They cannot
   * wait for the client to read, as replies of a read batch do (its next write applies in log
   * order, and every reply before it must exist by then), so the client is disconnected, as Redis
   * does past its hard output limit, and nothing more is sent: skipping replies on a live
   * connection would pair its later requests with the wrong answers. Writes it already sent are
   * in the log and still apply; to the client their outcome is unknown, as with any lost connection.
   */
  private closeForOutputLimit(conn: Conn): void {
    const unsent = conn.queuedBytes;
    log.warn(
      `client ${conn.id}: closed, replies produced as its writes applied passed --client-output-buffer-limit ` +
        `(${unsent} bytes unsent, limit ${this.config.clientOutputBufferLimit}); writes it sent still apply`,
    );
    this.closeOverLimit(conn);
  }

  /**
   * Defers a reply (SAVE): it is written, in order, when `settle` is called with a writer function.
   * SAVE is a barrier (see BARRIER_COMMANDS), so no write of this connection is proposed behind it
   * before it settles: a write applied while the placeholder heads the queue would have no place.
   */
  defer(conn: Conn): (reply: (out: ReplyBuffer) => void) => void {
    // Commands are dispatched directly only when nothing is pending, and drainPending removes a
    // command before running it, so the front of the queue is this command's place.
    const item: PendingCommand & { kind: "later" } = { kind: "later", reply: undefined };
    conn.pendFront(item);
    return (reply) => {
      item.reply = reply;
      if (conn.pending[0] === item) {
        this.drainPending(conn, this.replyOut(conn));
        this.flushTouched();
      }
    };
  }

  private flushTouched(): void {
    for (const conn of this.touched) {
      const out = conn.applyOut!;
      this.send(conn, out);
      if (out.buf.length > 64 * 1024) conn.applyOut = null;
      if (conn.pausedForBarrier && conn.pending.length === 0 && !conn.closed) {
        conn.pausedForBarrier = false;
        this.resumeIfUnpaused(conn);
        this.process(conn);
      }
      if (conn.pausedForPending && conn.pending.length < PENDING_COMMANDS_MAX / 2 && !conn.closed) {
        conn.pausedForPending = false;
        this.resumeIfUnpaused(conn);
        this.process(conn);
      }
    }
    this.touched.clear();
  }

  private onDrain(socket: Socket<Conn>): void {
    const conn = socket.data;
    if (conn === undefined) return;
    while (conn.queue.length > 0) {
      const head = conn.queue[0]!;
      const written = socket.write(head);
      if (written < 0) return;
      conn.queuedBytes -= written;
      if (written < head.length) {
        conn.queue[0] = head.subarray(written);
        return;
      }
      conn.queue.shift();
    }
    if (conn.closing) {
      // Replies still owed behind unapplied writes are sent before the close (see send).
      if (conn.pending.length === 0) this.finish(conn);
      return;
    }
    if (conn.pausedForOutput) {
      conn.pausedForOutput = false;
      this.resumeIfUnpaused(conn);
      this.process(conn);
    }
  }

  private onClose(socket: Socket<Conn>): void {
    const conn = socket.data;
    if (conn === undefined || conn.closed) return;
    conn.closed = true;
    if (conn.lingerTimer !== null) clearTimeout(conn.lingerTimer);
    conn.queue = [];
    conn.queuedBytes = 0;
    conn.heldWrite = null; // never proposed: not acknowledged, nothing to answer
    this.pubsub.dropConn(conn);
    this.pendingWritesWaiters.delete(conn);
    this.conns.delete(conn.id);
  }

  /**
   * Out-of-band bytes for a subscriber or watcher, produced as entries apply: they go out with the
   * batch's replies. Past the pubsub output limit (hard, or soft for its seconds) the client is closed.
   */
  private pushTo(conn: Conn, bytes: Uint8Array): void {
    if (conn.closed || conn.closing) return;
    const out = this.replyOut(conn);
    out.raw(bytes);
    const held = conn.queuedBytes + out.len;
    const lim = this.config.pubsubOutputLimit;
    const subs = conn.subs;
    if (held > lim.hardBytes) {
      this.dropSubscriber(conn, `its unsent output (${held} bytes) passed the pubsub hard limit (${lim.hardBytes})`);
      return;
    }
    if (subs === null || lim.softBytes === 0) return;
    if (held <= lim.softBytes) subs.softSinceMs = 0;
    else {
      const now = Date.now();
      if (subs.softSinceMs === 0) subs.softSinceMs = now;
      else if (now - subs.softSinceMs > lim.softSeconds * 1000) {
        this.dropSubscriber(conn, `its unsent output stayed past the pubsub soft limit (${lim.softBytes} bytes) for ${lim.softSeconds} s`);
      }
    }
  }

  /** Closes a connection past an output limit at once: its unsent replies are dropped. */
  private closeOverLimit(conn: Conn): void {
    this.stats.outputLimitDisconnections++;
    this.closeAtOnce(conn);
  }

  /** Closes a client whose user changed under it (deleted, or a subscription no longer allowed), as Redis does. */
  private closeForAcl(conn: Conn, why: string): void {
    if (conn.closed) return;
    log.info(`client ${conn.id} (${conn.addr}): closed, ${why}`);
    this.closeAtOnce(conn);
  }

  /** Closes a connection at once: replies not yet sent are dropped. */
  private closeAtOnce(conn: Conn): void {
    conn.applyOut?.reset();
    conn.closing = true;
    conn.inputClosed = true;
    conn.socket.terminate();
    this.onClose(conn.socket);
  }

  /** Closes a subscriber at once (a slow reader past its output limit), as Redis does. */
  private dropSubscriber(conn: Conn, why: string): void {
    if (conn.closed) return;
    log.warn(`client ${conn.id} (${conn.addr}): closed, ${why}`);
    this.closeOverLimit(conn);
  }

  /** Closes a connection after the replies already produced are flushed (QUIT). */
  closeAfterReply(conn: Conn): void {
    conn.closing = true;
  }

  /**
   * Graceful shutdown: stop accepting, answer the commands already received, flush and close
   * every client, within shutdownTimeoutMs. Resolves true if everything flushed in time.
   */
  async shutdown(): Promise<boolean> {
    if (this.shuttingDown) return false;
    this.shuttingDown = true;
    this.shutdownAtMs = this.now();
    this.listener?.stop(false);
    this.tlsListener?.stop(false);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.idleGcTimer !== null) clearInterval(this.idleGcTimer);
    // Existing clients keep being served until each has been quiet for SHUTDOWN_QUIET_MS with
    // every reply flushed: commands already sent (even if still in the kernel's buffers when
    // the signal came) are answered. Bounded by shutdownTimeoutMs.
    const deadline = Date.now() + this.config.shutdownTimeoutMs;
    while (this.conns.size > 0 && Date.now() < deadline) {
      const now = Date.now();
      for (const conn of this.conns.values()) {
        if (conn.closing) continue;
        const idle = now - conn.lastActiveMs >= SHUTDOWN_QUIET_MS;
        if (idle && conn.pending.length === 0 && conn.heldWrite === null && conn.queue.length === 0 && !conn.pausedForOutput && !conn.pausedForPending) {
          conn.closing = true;
          conn.socket.end();
        }
      }
      await Bun.sleep(10);
    }
    const clean = this.conns.size === 0;
    for (const conn of this.conns.values()) conn.socket.terminate();
    this.listener?.stop(true);
    this.tlsListener?.stop(true);
    await this.node.close();
    return clean;
  }
}

/** An exception that is not a typed outside-input error is a bug: log it loudly and crash. */
function crash(e: unknown): never {
  const err = e instanceof Error ? e : new Error(String(e));
  log.fatal(`${err instanceof AssertionError ? "invariant broken" : "internal error"}: ${err.stack ?? err.message}`);
  process.exit(70);
}
