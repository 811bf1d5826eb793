// The peer transport over TCP: one outbound connection per peer carries this node's messages to it
// (a handshake first, then frames of src/raft/codec.ts), and peers' connections to our listener carry
// theirs to us. Bounded queues, dropping past them (Raft tolerates loss); reconnects with backoff.
import type { Socket, TCPSocketListener } from "bun";
import { assert } from "../errors.ts";
import {
  FRAME_BYTES_MAX,
  FrameError,
  FrameReader,
  HANDSHAKE_BYTES_MAX,
  WIRE_VERSION,
  decodeHandshake,
  decodeMessage,
  decodeSnapshotAck,
  decodeSnapshotChunk,
  encodeHandshake,
  encodeMessage,
  encodeSnapshotAck,
  encodeSnapshotChunkAround,
  frameKind,
  type SnapshotChunk,
} from "../raft/codec.ts";
import type { Message, NodeId, SnapshotMsg } from "../raft/types.ts";
import { logger } from "../log.ts";
import {
  InboundTransfer,
  OutboundTransfer,
  SNAPSHOT_ACK_TIMEOUT_MS,
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_QUEUE_BYTES_MAX,
  chunkChecksum,
  type SnapshotFiles,
} from "./snapshot-transfer.ts";
import type { Transport } from "./transport.ts";
import { type PeerTls, peerIdentity } from "./peer-tls.ts";

/** Messages queued for one peer (not yet written to its socket) past which new ones are dropped. */
export const PEER_QUEUE_MESSAGES_MAX = 4096;
/** Bytes queued for one peer past which new messages are dropped (one frame larger than this still goes alone). */
export const PEER_QUEUE_BYTES_MAX = 64 * 1024 * 1024;
/** Most bytes of frames joined into one socket write. */
export const WRITE_BATCH_BYTES_MAX = 1024 * 1024;
/** First reconnect delay; it doubles per failed attempt up to backoffMsMax, each delay with jitter in [d/2, d). */
export const BACKOFF_MS_MIN = 50;
export const BACKOFF_MS_MAX = 2000;
/** A connection that stayed open this long resets the backoff (one refused at once keeps backing off). */
export const CONNECTION_STABLE_MS = 1000;
/**
 * A connection whose socket took no byte of a pending write for this long is closed and redialled:
 * a peer host that vanished without a reset would otherwise hold it until TCP gives up (minutes).
 */
export const WRITE_STALL_MS = 10_000;
/** An inbound connection that has not sent a valid handshake within this is closed. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/** Inbound connections still owing their handshake; more are closed at once. */
export const INBOUND_UNAUTHENTICATED_MAX = 64;

export interface TransportLog {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  debug(...args: unknown[]): void;
}

export interface TcpTransportConfig {
  readonly id: NodeId;
  /** Every member of one cluster shares it; a handshake with another is refused. At most 128 UTF-8 bytes. */
  readonly clusterId: string;
  /**
   * This node's peer address; port 0 picks a free port (read it back from `port`). Absent: no
   * listener (a one-member group started without a peer port: nobody dials it).
   */
  readonly listen?: { readonly host: string; readonly port: number };
  /** The other members' peer addresses, "host:port" (or "[v6]:port"). This node's own id is ignored. */
  readonly peers: ReadonlyMap<NodeId, string>;
  /** A connection to this peer failed or was lost, or a message to it was dropped: RawNode.reportUnreachable. */
  readonly onUnreachable?: (id: NodeId) => void;
  /** Uniform in [0, 1) for the backoff's jitter (a seeded source in tests). Default Math.random. */
  readonly random?: () => number;
  readonly backoffMsMin?: number;
  readonly backoffMsMax?: number;
  readonly queueMessagesMax?: number;
  readonly queueBytesMax?: number;
  readonly frameBytesMax?: number;
  readonly handshakeTimeoutMs?: number;
  readonly writeStallMs?: number;
  readonly log?: TransportLog;
  /**
   * This node's snapshot files. With them, a snapshot message is not sent as one frame: the file
   * of its snapshot is streamed in chunk frames between the peer's other frames (one transfer per
   * peer at a time), and chunks received are written to a file that, once complete, verified and
   * durable, is handed to the runtime as a snapshot message with empty data.
   */
  readonly snapshots?: SnapshotFiles;
  /** A snapshot transfer to `id` ended: ok once the follower said it holds it (RaftNode.reportSnapshot). Called on a later turn. */
  readonly onSnapshotStatus?: (id: NodeId, ok: boolean) => void;
  readonly snapshotChunkBytes?: number;
  readonly snapshotQueueBytesMax?: number;
  readonly snapshotAckTimeoutMs?: number;
  /**
   * Peer mutual TLS (src/node/peer-tls.ts): every link is TLS, both ends present a certificate
   * signed by the cluster's CA naming their node id; a connection whose certificate fails, or
   * names another node than its handshake (inbound) or than the one dialled (outbound), is
   * refused before any frame of it is read.
   */
  readonly tls?: PeerTls;
}

/** Counters for INFO. */
export interface TransportStats {
  /** Messages written to a peer's socket. */
  sent: number;
  /** Messages delivered to the runtime. */
  received: number;
  /** Messages not sent: queue full, too large, unknown peer, or in a write cut by a lost connection. */
  dropped: number;
  /** Connection attempts after the first to a peer (after a failure or a lost connection). */
  reconnects: number;
  /** Inbound connections refused at the handshake (wrong cluster, version, node id, unknown peer, certificate). */
  refusedHandshakes: number;
  /** Inbound connections closed for bytes that are not valid frames (or messages not from the peer). */
  badFrames: number;
  /** Snapshot transfers this node completed as the sender (acked by the follower) and as the receiver. */
  snapshotsSent: number;
  snapshotsReceived: number;
  /** Snapshot transfers that ended without the snapshot installed (either side: cut off, refused, failed). */
  snapshotsFailed: number;
  /** Most bytes of snapshot chunk frames ever queued for one peer (the read-ahead's high-water mark). */
  snapshotQueuedBytesPeak: number;
}

export interface PeerStatus {
  readonly connected: boolean;
  readonly queuedMessages: number;
  readonly queuedBytes: number;
  /** Bytes of snapshot chunk frames read ahead and not yet written (bounded by snapshotQueueBytesMax plus one chunk). */
  readonly snapshotQueuedBytes: number;
  /** Index of the snapshot being sent to this peer (0: none). */
  readonly snapshotSending: number;
}

/** "host:port" or "[v6]:port" -> parts; RangeError when it is neither. */
export function parsePeerAddress(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new RangeError(`peer address "${addr}" is not host:port`);
  return { host: (m[1] ?? m[2]) as string, port };
}

/** Outbound side of one peer: its queue, its socket, its reconnect timer. */
class Peer {
  socket: Socket<undefined> | undefined;
  /** Connecting or connected: a socket is (being) made. */
  dialing = false;
  /** Counts connection attempts so stale callbacks of an older attempt are ignored. */
  generation = 0;
  attempts = 0;
  openedAt = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Frames queued, not yet in a write: `frames[head..]`. */
  frames: Uint8Array[] = [];
  head = 0;
  /** The write in progress: `out[outOff..]` is unwritten; it holds `outMessages` messages (0: the handshake). */
  out: Uint8Array | undefined;
  outOff = 0;
  outMessages = 0;
  queuedMessages = 0;
  queuedBytes = 0;
  /** onUnreachable was called for a full queue; reset once a write completes. */
  reportedFull = false;
  /** When the socket last took bytes, and the timer that checks a write waiting for `drain`. */
  progressAt = 0;
  stallTimer: ReturnType<typeof setTimeout> | undefined;
  /** The snapshot transfer to this peer, if any; its chunk frames read ahead (written when no other frame waits). */
  transfer: OutboundTransfer | undefined;
  chunks: Uint8Array[] = [];
  /** Bytes of chunk frames queued or in the write in progress (at most snapshotQueueBytesMax, one chunk past it). */
  chunkBytes = 0;
  /** The write in progress is a chunk frame. */
  outChunk = false;

  constructor(
    readonly id: NodeId,
    readonly host: string,
    readonly port: number,
  ) {}

  takeFrame(): Uint8Array | undefined {
    if (this.head >= this.frames.length) return undefined;
    const f = this.frames[this.head] as Uint8Array;
    this.frames[this.head++] = EMPTY;
    if (this.head === this.frames.length) {
      this.frames = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
    return f;
  }

  get pendingFrames(): number {
    return this.frames.length - this.head;
  }
}

const EMPTY = new Uint8Array(0);

interface Inbound {
  readonly remote: string;
  reader: FrameReader;
  /** The peer's id once its handshake is accepted; 0 before. */
  peer: NodeId;
  /** With peer TLS: the node id its certificate names (its handshake must claim the same). */
  certId: NodeId;
  done: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The snapshot being received on this connection. */
  rx: InboundTransfer | undefined;
  /** A transfer given up on here: its later chunks are skipped. */
  skip: number;
}

export class TcpTransport implements Transport {
  readonly id: NodeId;
  readonly stats: TransportStats = { sent: 0, received: 0, dropped: 0, reconnects: 0, refusedHandshakes: 0, badFrames: 0, snapshotsSent: 0, snapshotsReceived: 0, snapshotsFailed: 0, snapshotQueuedBytesPeak: 0 };
  private readonly cfg: Required<Omit<TcpTransportConfig, "onUnreachable" | "peers" | "listen" | "id" | "clusterId" | "snapshots" | "onSnapshotStatus" | "tls">>;
  private readonly tls: PeerTls | undefined;
  private readonly listenAt: { readonly host: string; readonly port: number } | undefined;
  private readonly snapshots: SnapshotFiles | undefined;
  private readonly onSnapshotStatus: ((id: NodeId, ok: boolean) => void) | undefined;
  private nextTransfer: number;
  private readonly clusterId: string;
  private readonly onUnreachable: ((id: NodeId) => void) | undefined;
  private readonly peers = new Map<NodeId, Peer>();
  private listener: TCPSocketListener<Inbound> | undefined;
  /** Authenticated inbound connection per peer (a newer one replaces an older). */
  private readonly inboundByPeer = new Map<NodeId, Socket<Inbound>>();
  private unauthenticated = 0;
  private handler: ((m: Message) => void) | undefined;
  private flushScheduled = false;
  private closed = false;

  constructor(config: TcpTransportConfig) {
    this.id = config.id;
    this.clusterId = config.clusterId;
    this.onUnreachable = config.onUnreachable;
    this.cfg = {
      random: config.random ?? Math.random,
      backoffMsMin: config.backoffMsMin ?? BACKOFF_MS_MIN,
      backoffMsMax: config.backoffMsMax ?? BACKOFF_MS_MAX,
      queueMessagesMax: config.queueMessagesMax ?? PEER_QUEUE_MESSAGES_MAX,
      queueBytesMax: config.queueBytesMax ?? PEER_QUEUE_BYTES_MAX,
      frameBytesMax: config.frameBytesMax ?? FRAME_BYTES_MAX,
      handshakeTimeoutMs: config.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      writeStallMs: config.writeStallMs ?? WRITE_STALL_MS,
      log: config.log ?? logger("peer"),
      snapshotChunkBytes: config.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES,
      snapshotQueueBytesMax: config.snapshotQueueBytesMax ?? SNAPSHOT_QUEUE_BYTES_MAX,
      snapshotAckTimeoutMs: config.snapshotAckTimeoutMs ?? SNAPSHOT_ACK_TIMEOUT_MS,
    };
    this.snapshots = config.snapshots;
    this.onSnapshotStatus = config.onSnapshotStatus;
    this.nextTransfer = 1 + Math.floor(this.cfg.random() * 2 ** 40);
    assert(this.cfg.backoffMsMin >= 1 && this.cfg.backoffMsMax >= this.cfg.backoffMsMin, "backoff bounds");
    encodeHandshake({ clusterId: this.clusterId, from: this.id, to: this.id }); // throws RangeError for a bad id or cluster id
    const peers = new Map<NodeId, Peer>();
    for (const [id, addr] of config.peers) {
      if (id === this.id) continue;
      const { host, port } = parsePeerAddress(addr);
      peers.set(id, new Peer(id, host, port));
    }
    this.tls = config.tls;
    this.listenAt = config.listen;
    this.listener = config.listen === undefined ? undefined : this.listen(config.listen.host, config.listen.port);
    for (const p of peers.values()) {
      this.peers.set(p.id, p);
      this.dial(p);
    }
  }

  private listen(host: string, port: number): TCPSocketListener<Inbound> {
    return Bun.listen<Inbound>({
      hostname: host,
      port,
      ...(this.tls !== undefined ? { tls: this.tls.serverOptions() } : {}),
      socket: {
        open: (s) => this.inboundOpen(s),
        data: (s, chunk) => this.inboundData(s, chunk),
        close: (s) => this.inboundClose(s),
        error: (s, err) => this.cfg.log.debug(`peer connection from ${s.data?.remote ?? "?"}: ${err.message}`),
      },
    });
  }

  /**
   * Peer TLS material was re-read (PeerTls.reload): the listener is opened again on its port with
   * it (connections already made keep theirs); connections made from now on present it.
   */
  reloadTls(): void {
    if (this.closed || this.tls === undefined || this.listener === undefined) return;
    const port = this.listener.port;
    this.listener.stop(false);
    this.listener = this.listen(this.listenAt!.host, port);
  }

  /** The port this node listens on for peers (0: no listener). */
  get port(): number {
    return this.listener?.port ?? 0;
  }

  onMessage(handler: (m: Message) => void): void {
    assert(this.handler === undefined, "onMessage set twice");
    this.handler = handler;
  }

  /** Queues each message for its peer; the queues are written in one batch per peer after this turn. */
  send(messages: readonly Message[]): void {
    if (this.closed) return;
    for (const m of messages) {
      assert(m.from === this.id, `node ${this.id} sends a message from ${m.from}`);
      const p = this.peers.get(m.to);
      if (p === undefined) {
        this.stats.dropped++;
        this.cfg.log.debug(`dropped a ${m.type} message to unknown peer ${m.to}`);
        continue;
      }
      if (m.type === "snapshot" && this.snapshots !== undefined) {
        this.startTransfer(p, m, this.snapshots);
        continue;
      }
      if (p.queuedMessages >= this.cfg.queueMessagesMax) {
        this.dropFull(p);
        continue;
      }
      let frame: Uint8Array;
      try {
        frame = encodeMessage(m, this.cfg.frameBytesMax);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        this.stats.dropped++;
        this.cfg.log.warn(`dropped a ${m.type} message to peer ${m.to}: ${err.message}`);
        continue;
      }
      if (p.queuedMessages > 0 && p.queuedBytes + frame.length > this.cfg.queueBytesMax) {
        this.dropFull(p);
        continue;
      }
      p.frames.push(frame);
      p.queuedMessages++;
      p.queuedBytes += frame.length;
    }
    this.scheduleFlush();
  }

  /** Adds (or readdresses) a member: a new outbound connection is made to `addr`. */
  addPeer(id: NodeId, addr: string): void {
    if (this.closed || id === this.id) return;
    const { host, port } = parsePeerAddress(addr);
    const old = this.peers.get(id);
    if (old !== undefined) {
      this.stats.dropped += old.queuedMessages;
      this.shutPeer(old);
    }
    const p = new Peer(id, host, port);
    this.peers.set(id, p);
    this.dial(p);
  }

  /** Forgets a member: its queue is dropped, its connections closed, its handshakes refused from now on. */
  removePeer(id: NodeId): void {
    const p = this.peers.get(id);
    if (p !== undefined) {
      this.peers.delete(id);
      this.stats.dropped += p.queuedMessages;
      this.shutPeer(p);
    }
    this.inboundByPeer.get(id)?.terminate();
  }

  peerStatus(id: NodeId): PeerStatus | undefined {
    const p = this.peers.get(id);
    if (p === undefined) return undefined;
    return {
      connected: p.socket !== undefined,
      queuedMessages: p.queuedMessages,
      queuedBytes: p.queuedBytes,
      snapshotQueuedBytes: p.chunkBytes,
      snapshotSending: p.transfer?.meta.index ?? 0,
    };
  }

  /** Closes the listener and every connection, drops what is queued, and stops reconnecting. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.peers.values()) this.shutPeer(p);
    this.listener?.stop(true);
    for (const s of this.inboundByPeer.values()) {
      this.abortInbound(s.data, "the node is closing");
      s.terminate();
    }
    this.inboundByPeer.clear();
  }

  // ------------------------------------------------------------ outbound

  private shutPeer(p: Peer): void {
    p.generation++;
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.timer = undefined;
    if (p.stallTimer !== undefined) clearTimeout(p.stallTimer);
    p.stallTimer = undefined;
    const s = p.socket;
    p.socket = undefined;
    p.dialing = false;
    p.frames = [];
    p.head = 0;
    p.out = undefined;
    p.queuedMessages = 0;
    p.queuedBytes = 0;
    if (p.transfer !== undefined) this.endTransfer(p, p.transfer, false, "the peer was removed or the node closed");
    p.chunks = [];
    p.chunkBytes = 0;
    p.outChunk = false;
    s?.terminate();
  }

  private dropFull(p: Peer): void {
    this.stats.dropped++;
    if (!p.reportedFull) {
      p.reportedFull = true;
      this.cfg.log.debug(`queue to peer ${p.id} is full (${p.queuedMessages} messages, ${p.queuedBytes} bytes): dropping`);
      this.onUnreachable?.(p.id);
    }
  }

  private dial(p: Peer): void {
    if (this.closed || p.dialing || this.peers.get(p.id) !== p) return;
    p.dialing = true;
    p.timer = undefined;
    const gen = ++p.generation;
    const stale = (): boolean => gen !== p.generation || this.closed;
    let connecting: Promise<unknown>;
    try {
      connecting = this.connect(p, stale);
    } catch (err) {
      // An address Bun refuses outright: retried like any failed attempt.
      this.lost(p, err instanceof Error ? err.message : String(err));
      return;
    }
    connecting.catch(() => {
      // Reported through connectError.
    });
  }

  private connect(p: Peer, stale: () => boolean): Promise<unknown> {
    const tls = this.tls;
    const opened = (s: Socket<undefined>): void => {
          if (stale()) {
            s.terminate();
            return;
          }
          p.socket = s;
          p.openedAt = performance.now();
          p.progressAt = p.openedAt;
          // The handshake goes first, ahead of any queued frame.
          p.out = encodeHandshake({ clusterId: this.clusterId, from: this.id, to: p.id });
          p.outOff = 0;
          p.outMessages = 0;
          this.cfg.log.debug(`connected to peer ${p.id} at ${p.host}:${p.port}`);
          this.writePeer(p);
    };
    return Bun.connect({
      hostname: p.host,
      port: p.port,
      ...(tls !== undefined ? { tls: tls.clientOptions(p.host) } : {}),
      socket: {
        // Without TLS, open follows the connect. With it, open comes before the TLS handshake and
        // nothing may be written until the handshake says who answered (BUN-NOTES.md).
        open: (s) => {
          if (tls === undefined) opened(s);
        },
        ...(tls !== undefined
          ? {
              handshake: (s: Socket<undefined>) => {
                if (stale()) {
                  s.terminate();
                  return;
                }
                const who = peerIdentity(s, tls.ca, true);
                const why = !who.ok ? who.why : who.id !== p.id ? `its ${who.cert}, not node ${p.id}` : undefined;
                if (why !== undefined) {
                  this.cfg.log.warn(`refused peer ${p.id} at ${p.host}:${p.port}: ${why}`);
                  s.terminate();
                  this.lost(p, "its certificate was refused");
                  return;
                }
                opened(s);
              },
            }
          : {}),
        data: () => {
          // Outbound connections carry our messages only; the peer never writes on them.
        },
        drain: () => {
          if (!stale()) this.writePeer(p);
        },
        close: () => {
          if (!stale()) this.lost(p, "connection closed");
        },
        error: (_s, err) => {
          if (!stale()) this.cfg.log.debug(`connection to peer ${p.id}: ${err.message}`);
        },
        connectError: (_s, err) => {
          if (!stale()) this.lost(p, err.message);
        },
      },
    });
  }

  /** The connection to `p` failed or closed: what was being written is lost, the queue stays; retry later. */
  private lost(p: Peer, why: string): void {
    const wasOpen = p.socket !== undefined;
    const lived = wasOpen ? performance.now() - p.openedAt : 0;
    p.generation++;
    const s = p.socket;
    p.socket = undefined;
    p.dialing = false;
    if (p.stallTimer !== undefined) clearTimeout(p.stallTimer);
    p.stallTimer = undefined;
    s?.terminate(); // closed already, or stalled: its close callback is now stale
    if (p.out !== undefined && p.outMessages > 0) {
      // A write cut in the middle: its frames may or may not have arrived; they leave the queue.
      this.stats.dropped += p.outMessages;
      p.queuedMessages -= p.outMessages;
      p.queuedBytes -= p.out.length - p.outOff;
    }
    p.out = undefined;
    p.outOff = 0;
    p.outMessages = 0;
    // A transfer cannot resume on another connection: the follower drops its partial file; start over.
    p.chunks = [];
    p.chunkBytes = 0;
    p.outChunk = false;
    if (p.transfer !== undefined) this.endTransfer(p, p.transfer, false, `connection lost (${why})`);
    if (lived >= CONNECTION_STABLE_MS) p.attempts = 0;
    const base = Math.min(this.cfg.backoffMsMax, this.cfg.backoffMsMin * 2 ** Math.min(p.attempts, 30));
    const delay = Math.max(1, Math.floor(base / 2 + (base / 2) * this.cfg.random()));
    p.attempts++;
    this.stats.reconnects++;
    const line = `peer ${p.id} at ${p.host}:${p.port} unreachable (${why}); retrying in ${delay} ms`;
    if (wasOpen) this.cfg.log.info(line);
    else this.cfg.log.debug(line);
    this.onUnreachable?.(p.id);
    if (this.closed) return;
    p.timer = setTimeout(() => this.dial(p), delay);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.closed) return;
      for (const p of this.peers.values()) if (p.socket !== undefined) this.writePeer(p);
    });
  }

  /** Writes what is queued for `p` until its socket takes no more (then `drain` calls back). */
  private writePeer(p: Peer): void {
    const s = p.socket;
    if (s === undefined) return;
    for (;;) {
      if (p.out === undefined) {
        const first = p.takeFrame();
        if (first === undefined) {
          // Raft's frames first; a snapshot chunk when none waits (a snapshot never delays a heartbeat by more than one chunk).
          const chunk = p.chunks.shift();
          if (chunk === undefined) return;
          p.out = chunk;
          p.outOff = 0;
          p.outMessages = 0;
          p.outChunk = true;
          continue;
        }
        let batch = first;
        let n = 1;
        if (p.pendingFrames > 0 && first.length < WRITE_BATCH_BYTES_MAX) {
          const parts = [first];
          let bytes = first.length;
          while (p.pendingFrames > 0) {
            const next = p.frames[p.head] as Uint8Array;
            if (bytes + next.length > WRITE_BATCH_BYTES_MAX) break;
            parts.push(p.takeFrame() as Uint8Array);
            bytes += next.length;
          }
          n = parts.length;
          batch = new Uint8Array(bytes);
          let off = 0;
          for (const f of parts) {
            batch.set(f, off);
            off += f.length;
          }
        }
        p.out = batch;
        p.outOff = 0;
        p.outMessages = n;
      }
      const out = p.out;
      const wrote = s.write(out, p.outOff, out.length - p.outOff);
      if (wrote < 0) return; // closed: the close handler follows
      p.outOff += wrote;
      if (wrote > 0) p.progressAt = performance.now();
      if (p.outMessages > 0) p.queuedBytes -= wrote;
      if (p.outOff < out.length) {
        // The kernel buffer is full: wait for drain, and give up on a socket that takes nothing for too long.
        if (p.stallTimer === undefined) this.watchStall(p);
        return;
      }
      if (p.outMessages > 0) {
        this.stats.sent += p.outMessages;
        p.queuedMessages -= p.outMessages;
        p.reportedFull = false;
      }
      p.out = undefined;
      if (p.outChunk) {
        p.outChunk = false;
        p.chunkBytes -= out.length;
        p.transfer?.release(out);
        this.pumpTransfer(p);
      }
    }
  }

  private watchStall(p: Peer): void {
    const gen = p.generation;
    const wait = Math.max(1, p.progressAt + this.cfg.writeStallMs - performance.now());
    p.stallTimer = setTimeout(() => {
      p.stallTimer = undefined;
      if (gen !== p.generation || this.closed || p.socket === undefined || p.out === undefined) return;
      if (performance.now() - p.progressAt >= this.cfg.writeStallMs) this.lost(p, `no write progress for ${this.cfg.writeStallMs} ms`);
      else this.watchStall(p);
    }, wait);
  }

  // ------------------------------------------------------------ inbound

  private inboundOpen(s: Socket<Inbound>): void {
    const remote = `${s.remoteAddress}:${(s as unknown as { remotePort?: number }).remotePort ?? "?"}`;
    s.data = { remote, reader: new FrameReader(HANDSHAKE_BYTES_MAX), peer: 0, certId: 0, done: false, timer: undefined, rx: undefined, skip: -1 };
    if (this.closed) {
      s.data.done = true;
      s.terminate();
      return;
    }
    if (this.unauthenticated >= INBOUND_UNAUTHENTICATED_MAX) {
      s.data.done = true;
      this.cfg.log.warn(`refused a peer connection from ${remote}: ${this.unauthenticated} connections already owe a handshake`);
      s.terminate();
      return;
    }
    this.unauthenticated++;
    if (this.tls !== undefined) {
      // The TLS handshake is done when open is called (the listener has no handshake handler).
      const who = peerIdentity(s, this.tls.ca, false);
      if (!who.ok) return this.refuse(s, `peer certificate refused: ${who.why}`);
      s.data.certId = who.id;
    }
    s.data.timer = setTimeout(() => this.refuse(s, `no handshake within ${this.cfg.handshakeTimeoutMs} ms`), this.cfg.handshakeTimeoutMs);
  }

  private inboundData(s: Socket<Inbound>, chunk: Uint8Array): void {
    const c = s.data;
    if (c.done) return;
    c.reader.push(chunk);
    for (;;) {
      if (c.done) return;
      let m: Message;
      try {
        const body = c.reader.next();
        if (body === undefined) return;
        if (c.peer === 0) {
          this.handshake(s, body);
          continue;
        }
        const kind = frameKind(body);
        if (kind === "snapshot-chunk") {
          this.chunkIn(c, decodeSnapshotChunk(body, chunkChecksum));
          continue;
        }
        if (kind === "snapshot-ack") {
          this.ackIn(c, decodeSnapshotAck(body));
          continue;
        }
        m = decodeMessage(body);
        if (m.from !== c.peer || m.to !== this.id) throw new FrameError(`a message from ${m.from} to ${m.to} on the connection of peer ${c.peer} to ${this.id}`);
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        this.stats.badFrames++;
        this.cfg.log.warn(`closed the connection of ${c.peer === 0 ? "a peer" : `peer ${c.peer}`} from ${c.remote}: ${err.message}`);
        this.closeInbound(s);
        return;
      }
      if (this.closed || this.handler === undefined) continue;
      if (!this.deliver(m)) return;
    }
  }

  /**
   * Hands `m` to the runtime; false when the runtime threw. A throw is a broken invariant of this
   * node, not the peer's fault: Bun would hand it to the socket's error handler, so it is rethrown
   * where it crashes the process.
   */
  private deliver(m: Message): boolean {
    const handler = this.handler;
    if (handler === undefined) return true;
    this.stats.received++;
    try {
      handler(m);
      return true;
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
      return false;
    }
  }

  private handshake(s: Socket<Inbound>, body: Uint8Array): void {
    const c = s.data;
    const h = decodeHandshake(body);
    if (h.version !== WIRE_VERSION) return this.refuse(s, `peer ${h.from} speaks wire version ${h.version}, this node ${WIRE_VERSION}`);
    if (h.clusterId !== this.clusterId) return this.refuse(s, `peer ${h.from} is of cluster "${h.clusterId}", this node of "${this.clusterId}"`);
    if (h.to !== this.id) return this.refuse(s, `peer ${h.from} addressed node ${h.to}, this node is ${this.id}`);
    if (h.from === this.id || !this.peers.has(h.from)) return this.refuse(s, `node ${h.from} is not a known peer`);
    if (this.tls !== undefined && h.from !== c.certId) return this.refuse(s, `peer says it is node ${h.from} but its certificate names node ${c.certId}`);
    c.peer = h.from;
    c.reader.limit = this.cfg.frameBytesMax;
    if (c.timer !== undefined) clearTimeout(c.timer);
    c.timer = undefined;
    this.unauthenticated--;
    const older = this.inboundByPeer.get(h.from);
    this.inboundByPeer.set(h.from, s);
    if (older !== undefined) {
      older.data.done = true;
      older.terminate();
    }
    this.cfg.log.debug(`peer ${h.from} connected from ${c.remote}`);
  }

  private refuse(s: Socket<Inbound>, why: string): void {
    if (s.data.done) return;
    this.stats.refusedHandshakes++;
    this.cfg.log.warn(`refused a peer connection from ${s.data.remote}: ${why}`);
    this.closeInbound(s);
  }

  private closeInbound(s: Socket<Inbound>): void {
    this.inboundClose(s);
    s.terminate();
  }

  private inboundClose(s: Socket<Inbound>): void {
    const c = s.data;
    if (c === undefined || c.done) return;
    this.abortInbound(c, "connection closed");
    c.done = true;
    if (c.timer !== undefined) clearTimeout(c.timer);
    c.timer = undefined;
    if (c.peer === 0) this.unauthenticated--;
    else if (this.inboundByPeer.get(c.peer) === s) this.inboundByPeer.delete(c.peer);
  }

  // ------------------------------------------------------------ snapshot transfers (leader side)

  /**
   * Starts streaming the file of `m`'s snapshot to `p`. One transfer per peer: while one is under
   * way, another snapshot message for that peer is dropped (Raft sends one again if it still needs
   * it once this one ends): restarting a long transfer for each newer snapshot would never finish
   * on a leader that snapshots more often than a transfer takes.
   */
  private startTransfer(p: Peer, m: SnapshotMsg, files: SnapshotFiles): void {
    const meta = m.snapshot.meta;
    const cur = p.transfer;
    if (cur !== undefined) {
      this.cfg.log.debug(`snapshot at ${meta.index} for peer ${p.id} not sent: the transfer of ${cur.meta.index} is under way`);
      return;
    }
    if (p.socket === undefined) {
      this.stats.dropped++;
      this.reportSnapshotLater(p.id, false);
      return;
    }
    const poolMax = Math.ceil(this.cfg.snapshotQueueBytesMax / this.cfg.snapshotChunkBytes) + 2;
    const t = new OutboundTransfer(this.nextTransfer++, p.id, m.term, meta, this.cfg.snapshotChunkBytes, poolMax);
    try {
      const path = files.pathOf(meta);
      if (path === undefined) throw new Error("no file holds it now");
      t.open(path);
    } catch (err) {
      t.end();
      this.stats.snapshotsFailed++;
      this.cfg.log.warn(`snapshot at ${meta.index} for peer ${p.id} not sent: ${err instanceof Error ? err.message : String(err)}`);
      this.reportSnapshotLater(p.id, false);
      return;
    }
    p.transfer = t;
    this.cfg.log.info(`sending the snapshot at index ${meta.index} (${t.totalBytes} bytes) to peer ${p.id}`);
    this.pumpTransfer(p);
  }

  /** Reads the next chunk of `p`'s transfer if fewer than snapshotQueueBytesMax bytes of chunks wait; notes when all were written. */
  private pumpTransfer(p: Peer): void {
    const t = p.transfer;
    if (t === undefined || t.state !== "sending" || t.reading || this.closed) return;
    if (t.allRead) {
      if (p.chunks.length === 0 && !p.outChunk) {
        t.state = "awaiting-ack";
        t.ackTimer = setTimeout(() => this.endTransfer(p, t, false, `no answer within ${this.cfg.snapshotAckTimeoutMs} ms of its last chunk`), this.cfg.snapshotAckTimeoutMs);
      }
      return;
    }
    if (p.chunkBytes > 0 && p.chunkBytes + Math.min(t.chunkBytes, t.totalBytes - t.offset) > this.cfg.snapshotQueueBytesMax) return;
    t.readNext().then(
      (r) => {
        if (r === undefined || p.transfer !== t || t.state !== "sending" || this.closed) return;
        const frame = encodeSnapshotChunkAround(
          r.frame,
          { from: this.id, to: p.id, term: t.term, transfer: t.id, meta: t.meta, offset: r.offset, totalBytes: t.totalBytes, data: r.data },
          chunkChecksum,
        );
        p.chunks.push(frame);
        p.chunkBytes += frame.length;
        if (p.chunkBytes > this.stats.snapshotQueuedBytesPeak) this.stats.snapshotQueuedBytesPeak = p.chunkBytes;
        if (p.socket !== undefined) this.writePeer(p);
        this.pumpTransfer(p);
      },
      (err: Error) => {
        if (p.transfer === t) this.endTransfer(p, t, false, `reading the snapshot file: ${err.message}`);
      },
    );
  }

  /** Ends `t` (ok: the follower holds the snapshot) and tells the runtime on a later turn. */
  private endTransfer(p: Peer, t: OutboundTransfer, ok: boolean, why: string): void {
    if (t.state === "done") return;
    t.end();
    if (p.transfer === t) {
      p.transfer = undefined;
      // Chunks not yet written go; one in the middle of a write finishes (the follower drops the partial file).
      for (const f of p.chunks) p.chunkBytes -= f.length;
      p.chunks = [];
    }
    const ms = Math.round(performance.now() - t.startedAt);
    if (ok) {
      this.stats.snapshotsSent++;
      this.cfg.log.info(`peer ${p.id} installed the snapshot at index ${t.meta.index} (${t.totalBytes} bytes in ${ms} ms)`);
    } else {
      this.stats.snapshotsFailed++;
      this.cfg.log.info(`snapshot transfer of index ${t.meta.index} to peer ${p.id} ended after ${t.offset} of ${t.totalBytes} bytes read (${ms} ms): ${why}`);
    }
    this.reportSnapshotLater(p.id, ok);
  }

  private reportSnapshotLater(id: NodeId, ok: boolean): void {
    const report = this.onSnapshotStatus;
    if (report === undefined) return;
    setImmediate(() => {
      if (!this.closed) report(id, ok);
    });
  }

  /** The follower's answer to a transfer (on its connection to us). */
  private ackIn(c: Inbound, a: ReturnType<typeof decodeSnapshotAck>): void {
    if (a.from !== c.peer || a.to !== this.id) throw new FrameError(`a snapshot ack from ${a.from} to ${a.to} on the connection of peer ${c.peer} to ${this.id}`);
    const p = this.peers.get(a.from);
    const t = p?.transfer;
    if (p === undefined || t === undefined || t.id !== a.transfer) return; // an ack of a transfer already ended
    this.endTransfer(p, t, a.ok, a.ok ? "" : "the follower could not install it");
  }

  // ------------------------------------------------------------ snapshot transfers (follower side)

  /** A chunk from the leader: written in order to the transfer's temp file; the last one installs it. */
  private chunkIn(c: Inbound, ch: SnapshotChunk): void {
    if (ch.from !== c.peer || ch.to !== this.id) throw new FrameError(`a snapshot chunk from ${ch.from} to ${ch.to} on the connection of peer ${c.peer} to ${this.id}`);
    const files = this.snapshots;
    if (files === undefined) throw new FrameError("a snapshot chunk to a node that takes snapshots in one message");
    if (ch.offset === 0) {
      // A new transfer: one begun before on this connection is superseded (its file goes).
      this.abortInbound(c, `superseded by transfer ${ch.transfer}`);
      try {
        c.rx = new InboundTransfer(files, ch);
      } catch (err) {
        this.giveUpInbound(c, ch, err);
        return;
      }
      this.cfg.log.info(`receiving the snapshot at index ${ch.meta.index} (${ch.totalBytes} bytes) from peer ${c.peer}`);
    } else if (c.rx === undefined) {
      if (ch.transfer === c.skip) return;
      throw new FrameError(`a snapshot chunk at ${ch.offset} of transfer ${ch.transfer}, which did not begin on this connection`);
    } else {
      const bad = c.rx.continues(ch);
      if (bad !== undefined) throw new FrameError(bad);
    }
    const rx = c.rx;
    try {
      rx.write(ch);
    } catch (err) {
      rx.abort();
      c.rx = undefined;
      this.giveUpInbound(c, ch, err);
      return;
    }
    if (!rx.complete) return;
    c.rx = undefined;
    const peer = c.peer;
    const meta = rx.first.meta;
    rx.install().then(
      () => {
        if (this.closed) return;
        this.stats.snapshotsReceived++;
        this.cfg.log.info(`received the snapshot at index ${meta.index} (${rx.first.totalBytes} bytes) from peer ${peer}: durable, handed to Raft`);
        const m: Message = { type: "snapshot", from: peer, to: this.id, term: rx.first.term, snapshot: { meta, data: EMPTY } };
        if (!this.deliver(m)) return;
        this.sendAck(peer, rx.id, meta.index, true);
      },
      (err: unknown) => {
        if (this.closed) return;
        this.stats.snapshotsFailed++;
        this.cfg.log.warn(`the snapshot at index ${meta.index} from peer ${peer} was not installed: ${err instanceof Error ? err.message : String(err)}`);
        this.sendAck(peer, rx.id, meta.index, false);
      },
    );
  }

  /** A transfer this node cannot take (I/O error): its later chunks are skipped, and the leader told. */
  private giveUpInbound(c: Inbound, ch: SnapshotChunk, err: unknown): void {
    c.skip = ch.transfer;
    this.stats.snapshotsFailed++;
    this.cfg.log.warn(`giving up the snapshot at index ${ch.meta.index} from peer ${c.peer}: ${err instanceof Error ? err.message : String(err)}`);
    this.sendAck(c.peer, ch.transfer, ch.meta.index, false);
  }

  /** Drops a partial transfer on this connection (its temp file is deleted). */
  private abortInbound(c: Inbound | undefined, why: string): void {
    const rx = c?.rx;
    if (c === undefined || rx === undefined) return;
    c.rx = undefined;
    rx.abort();
    this.stats.snapshotsFailed++;
    this.cfg.log.info(`snapshot transfer of index ${rx.first.meta.index} from peer ${c.peer} cut off at ${rx.received} of ${rx.first.totalBytes} bytes (${why}); its partial file is deleted`);
  }

  private sendAck(peer: NodeId, transfer: number, index: number, ok: boolean): void {
    const p = this.peers.get(peer);
    if (p === undefined || this.closed) return;
    const frame = encodeSnapshotAck({ from: this.id, to: peer, transfer, index, ok });
    p.frames.push(frame);
    p.queuedMessages++;
    p.queuedBytes += frame.length;
    this.scheduleFlush();
  }
}
