// Client-facing TCP server: moves bytes between sockets and dispatch, with per-connection
// output queues, backpressure, limits and graceful shutdown. No command logic lives here.
import type { Socket, TCPSocketListener } from "bun";
import { AssertionError, ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { ReplyBuffer, type Proto } from "../resp/encode.ts";
import { RequestParser } from "../resp/request-parser.ts";
import type { ServerConfig } from "../config.ts";
import { Dispatcher } from "./dispatch.ts";
import { Db } from "../kv/db.ts";

const log = logger("server");

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
  closed = false;
  lastCommand = "";
  readonly createdAtMs: number;
  lastActiveMs: number;

  constructor(
    readonly id: number,
    readonly socket: Socket<Conn>,
    server: KvServer,
    nowMs: number,
  ) {
    this.parser = new RequestParser(server.config.limits);
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
}

export class KvServer {
  readonly db = new Db();
  readonly conns = new Map<number, Conn>();
  readonly stats: ServerStats;
  readonly dispatcher: Dispatcher;
  private listener: TCPSocketListener<Conn> | null = null;
  private readonly scratch = new ReplyBuffer(64 * 1024);
  private nextConnId = 1;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private shuttingDown = false;

  constructor(readonly config: ServerConfig) {
    this.stats = {
      startedAtMs: Date.now(),
      connectionsReceived: 0,
      connectionsRejected: 0,
      commandsProcessed: 0,
      protocolErrors: 0,
    };
    this.dispatcher = new Dispatcher(this);
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  start(): void {
    const server = this;
    this.listener = Bun.listen<Conn>({
      hostname: this.config.host,
      port: this.config.port,
      socket: {
        open(socket) {
          server.onOpen(socket);
        },
        data(socket, chunk) {
          server.onData(socket, chunk);
        },
        drain(socket) {
          server.onDrain(socket);
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
    this.sweepTimer = setInterval(() => {
      this.db.sweepExpired(Date.now(), this.config.expireSweepKeysMax);
    }, this.config.expireSweepIntervalMs);
  }

  private onOpen(socket: Socket<Conn>): void {
    if (this.shuttingDown || this.conns.size >= this.config.maxClients) {
      this.stats.connectionsRejected++;
      socket.data = undefined as unknown as Conn;
      socket.write(this.shuttingDown ? "-ERR server is shutting down\r\n" : "-ERR max number of clients reached\r\n");
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
    if (conn === undefined || conn.closing) return;
    try {
      conn.parser.push(chunk);
    } catch (e) {
      this.failProtocol(conn, e);
      return;
    }
    this.process(conn);
  }

  /**
   * Runs every complete command the connection has sent, in order, and sends the replies of
   * each batch in one write. Once unsent replies pass the output limit and the kernel will not
   * take more, reading from this client pauses until `drain`.
   */
  process(conn: Conn, ignoreOutputLimit = false): void {
    const out = this.scratch;
    const limit = this.config.clientOutputBufferLimit;
    for (;;) {
      out.reset();
      out.proto = conn.proto;
      const nowMs = Date.now();
      conn.lastActiveMs = nowMs;
      let overLimit = false;
      try {
        while (!conn.closing) {
          if (!ignoreOutputLimit && conn.queuedBytes + out.len > limit) {
            overLimit = true;
            break;
          }
          const argv = conn.parser.next();
          if (argv === null) break;
          this.stats.commandsProcessed++;
          this.dispatcher.dispatch(conn, argv, out, nowMs);
        }
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw crash(e);
        this.stats.protocolErrors++;
        log.debug(`protocol error from client ${conn.id}: ${e.message}`);
        out.error(`ERR ${e.message}`);
        conn.closing = true;
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

  private failProtocol(conn: Conn, e: unknown): void {
    if (!(e instanceof ProtocolError)) throw crash(e);
    this.stats.protocolErrors++;
    const out = this.scratch;
    out.reset();
    out.error(`ERR ${e.message}`);
    conn.closing = true;
    this.send(conn, out);
  }

  /** Writes the scratch buffer's bytes to the socket; what the kernel does not take is queued. */
  private send(conn: Conn, out: ReplyBuffer): void {
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
    if (conn.closing && conn.queue.length === 0) conn.socket.end();
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
      socket.end();
      return;
    }
    if (conn.pausedForOutput) {
      conn.pausedForOutput = false;
      socket.resume();
      this.process(conn);
    }
  }

  private onClose(socket: Socket<Conn>): void {
    const conn = socket.data;
    if (conn === undefined || conn.closed) return;
    conn.closed = true;
    conn.queue = [];
    conn.queuedBytes = 0;
    this.conns.delete(conn.id);
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
    this.listener?.stop(false);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    // Let reads the kernel already holds reach us (the signal may be handled before them):
    // commands a client sent before the signal are answered.
    for (let i = 0; i < 3; i++) await Bun.sleep(1);
    for (const conn of this.conns.values()) {
      if (!conn.closing) {
        if (conn.pausedForOutput) conn.socket.resume();
        this.process(conn, true);
        conn.closing = true;
        if (conn.queue.length === 0) conn.socket.end();
      }
    }
    const deadline = Date.now() + this.config.shutdownTimeoutMs;
    while (this.conns.size > 0 && Date.now() < deadline) {
      await Bun.sleep(10);
    }
    const clean = this.conns.size === 0;
    for (const conn of this.conns.values()) conn.socket.terminate();
    this.listener?.stop(true);
    return clean;
  }
}

/** An exception that is not a typed outside-input error is a bug: log it loudly and crash. */
function crash(e: unknown): never {
  const err = e instanceof Error ? e : new Error(String(e));
  log.fatal(`${err instanceof AssertionError ? "invariant broken" : "internal error"}: ${err.stack ?? err.message}`);
  process.exit(70);
}
