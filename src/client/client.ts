// The kv client: one persistent pipelined connection, reconnects, per-call deadlines, redirects.
//
// Every call becomes a Request. With an open connection it is encoded at once into the
// connection's output buffer (flushed once per microtask, so concurrent calls share one
// write) and appended to the connection's in-flight FIFO; replies are matched in order.
// Without one it waits in `waiting` until a connection opens or its deadline passes.
//
// Retry rules (docs/client.md):
// - not fully written when the connection broke: never reached the server, re-sent;
// - read-only and sent: re-sent on the next connection (bounded);
// - a write that was sent: rejected with OutcomeUnknownError, never re-sent;
// - -MOVED: the server refused it, so it is re-sent to the named node (bounded hops);
// - -TRYAGAIN/-CLUSTERDOWN/-LOADING: refused, re-sent after a backoff within the deadline;
//   `-TRYAGAIN node shutting down`: also, nothing more is sent on that connection (next seed);
// - -REMOVED (the node left its cluster, refused without carrying it out): with more than one seed,
//   as `-TRYAGAIN node shutting down`; with one, the error.
import type { Socket } from "bun";
import { type BulkMode, ErrorReply, NEED_MORE, PushReply, ReplyParser, type RespValue } from "../resp/reply-parser.ts";
import { type Addr, formatAddr, parseAddr, parseUrl } from "./addr.ts";
import { type Arg, OutBuffer } from "./encode.ts";
import {
  ClientClosedError,
  ClientError,
  ConnectionError,
  OutcomeUnknownError,
  ReplyProtocolError,
  ServerError,
  TimeoutError,
} from "./errors.ts";

export type { Arg } from "./encode.ts";
export type { BulkMode, RespValue } from "../resp/reply-parser.ts";

/** A key: text (UTF-8) or raw bytes. */
export type Key = string | Uint8Array;
/** A value: text (UTF-8), raw bytes, or a number (sent in decimal). */
export type Value = string | Uint8Array | number;

export interface ClientOptions {
  /** Seed addresses, `host:port` (array or comma-separated). Default `127.0.0.1:6379`. */
  addrs?: string | readonly string[];
  /** Alternative to addrs: `redis://[user:pass@]host:port[,host:port...][/db]` (also `kv://`). */
  url?: string;
  /** Deadline of each call, from the call to its reply, including reconnects and retries. Default 5000. */
  timeoutMs?: number;
  /** Deadline of one TCP connect attempt. Default 2000. */
  connectTimeoutMs?: number;
  /** Reconnect backoff: first delay and cap; each delay is jittered to 50..100 %. Defaults 25 and 2000. */
  backoffMsMin?: number;
  backoffMsMax?: number;
  /** MOVED redirects followed per call. Default 5. */
  redirectsMax?: number;
  /** Times a sent read-only call is re-sent after its connection broke. Default 2. */
  readRetriesMax?: number;
  /** Error prefixes that mean "refused, try again later". Default TRYAGAIN, CLUSTERDOWN, LOADING. */
  retryPrefixes?: readonly string[];
  /**
   * A connection with calls in flight that has received nothing for this long is presumed
   * dead (a paused or partitioned node): it is dropped and the next seed tried. Default timeoutMs.
   */
  stallMs?: number;
  /** Error prefixes that mean "this write may or may not have been applied". Default UNCERTAIN. */
  uncertainPrefixes?: readonly string[];
  /** 2 (default, no handshake) or 3 (sends HELLO 3 on every connection). */
  protocol?: 2 | 3;
  username?: string;
  password?: string;
  /**
   * Reject waiting calls with ConnectionError as soon as every seed refused a connection
   * in one round, instead of waiting (and retrying) until their deadline. For CLIs.
   */
  failFast?: boolean;
  /** Called with RESP3 push frames (pub/sub messages); they never answer a call. */
  onPush?: (data: RespValue[]) => void;
  /**
   * Connect over TLS (a `rediss://` URL does too). The server's certificate is verified against
   * `ca` (default: the system's CAs) and the host connected to; `cert`/`key` are the client's
   * certificate for servers that ask for one (--tls-auth-clients yes). PEM text.
   */
  tls?: boolean | ClientTlsOptions;
}

export interface ClientTlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name the server's certificate must carry; default: the host connected to. */
  serverName?: string;
}

/** Options for SET. At most one of ex/px/exat/pxat/keepTtl; nx and xx exclude each other. */
export interface SetOptions {
  /** Expire after this many seconds. */
  ex?: number;
  /** Expire after this many milliseconds. */
  px?: number;
  /** Expire at this Unix time in seconds. */
  exat?: number;
  /** Expire at this Unix time in milliseconds. */
  pxat?: number;
  /** Keep the key's current time to live. */
  keepTtl?: boolean;
  /** Only set if the key does not exist. */
  nx?: boolean;
  /** Only set if the key exists. */
  xx?: boolean;
  /** Return the old value (SET ... GET). */
  get?: boolean;
}

/** Per-call options of `command()`. */
export interface CommandOptions {
  /** How bulk strings in the reply are returned. Default "utf8". */
  mode?: BulkMode;
  /** Overrides the client's timeoutMs for this call. */
  timeoutMs?: number;
  /** Whether the call may be re-sent after a broken connection. Default: known read-only commands. */
  readonly?: boolean;
}

/** The start of a node's refusal while it shuts down (src/server/server.ts SHUTTING_DOWN_REPLY). */
const SHUTTING_DOWN = "TRYAGAIN node shutting down";

/** Commands that never change the keyspace: safe to re-send after a broken connection. */
const READONLY_COMMANDS = new Set([
  "get", "mget", "exists", "ttl", "pttl", "expiretime", "pexpiretime", "strlen", "type", "keys", "scan",
  "dbsize", "ping", "echo", "info", "getrange", "substr", "randomkey", "time", "lcs", "object",
  "command", "cluster", "role", "lastsave", "hello", "select", "client", "auth", "config",
]);

/** Commands that switch the connection into a mode where replies no longer pair with calls. */
const UNSUPPORTED_COMMANDS = new Set(["subscribe", "psubscribe", "ssubscribe", "kv.watch", "monitor", "sync", "psync"]);

interface Request {
  argv: readonly Arg[];
  mode: BulkMode;
  readonly: boolean;
  internal: boolean;
  timeoutMs: number;
  deadline: number;
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  done: boolean;
  /** Byte offset in its connection's output stream where this request ends; -1 when not encoded. */
  end: number;
  hops: number;
  resends: number;
  retries: number;
  /** performance.now() when encoded onto a connection. */
  sentAt: number;
  /** The last retryable refusal (-TRYAGAIN...), the cause of a later timeout. */
  lastError?: ServerError;
}

const SWEEP_MS = 10;

type ConnState = "connecting" | "open" | "closed";

/** One TCP connection: socket, output buffer, parser and the FIFO of calls awaiting replies. */
class Connection {
  state: ConnState = "connecting";
  socket: Socket<undefined> | null = null;
  readonly out = new OutBuffer();
  readonly parser = new ReplyParser();
  inflight: Request[] = [];
  head = 0;
  /** Total bytes handed to the kernel / encoded on this connection. */
  written = 0;
  encoded = 0;
  private flushScheduled = false;
  /** Set when this connection is no longer the client's current one: close once drained. */
  retired = false;
  /** performance.now() of the last bytes received (or of the open). */
  lastDataAt = performance.now();

  constructor(
    readonly client: Client,
    readonly addr: string,
  ) {}

  get inflightCount(): number {
    return this.inflight.length - this.head;
  }

  send(req: Request): void {
    req.sentAt = performance.now();
    const before = this.out.end;
    this.out.command(req.argv);
    this.encoded += this.out.end - before;
    req.end = this.encoded;
    this.inflight.push(req);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  flush(): void {
    const s = this.socket;
    if (s === null || this.state !== "open") return;
    const out = this.out;
    while (out.pendingBytes > 0) {
      const n = s.write(out.buf, out.start, out.end - out.start);
      if (n <= 0) return; // kernel buffer full (drain resumes) or closed (close handler runs)
      out.consume(n);
      this.written += n;
    }
  }

  onData(chunk: Buffer): void {
    this.lastDataAt = performance.now();
    const p = this.parser;
    p.push(chunk);
    for (;;) {
      const head = this.inflight[this.head];
      let v: RespValue | typeof NEED_MORE;
      try {
        v = p.next(head === undefined ? "utf8" : head.mode);
      } catch (e) {
        this.client.connectionFailed(this, new ReplyProtocolError(`bad reply from ${this.addr}: ${(e as Error).message}`, e));
        return;
      }
      if (v === NEED_MORE) break;
      if (v instanceof PushReply) {
        this.client.onPush(v.data);
        continue;
      }
      if (head === undefined) {
        this.client.connectionFailed(this, new ReplyProtocolError(`unexpected reply from ${this.addr} with no call waiting`));
        return;
      }
      this.inflight[this.head++] = undefined as unknown as Request;
      if (this.head > 1024 && this.head * 2 > this.inflight.length) {
        this.inflight = this.inflight.slice(this.head);
        this.head = 0;
      }
      this.client.onReply(this, head, v);
    }
    if (this.retired && this.inflightCount === 0) this.close();
  }

  /** Takes every unanswered call out of this connection (it is gone). */
  takeInflight(): Request[] {
    const rest = this.inflight.slice(this.head);
    this.inflight = [];
    this.head = 0;
    return rest;
  }

  close(): void {
    if (this.state === "closed") return;
    this.socket?.end();
  }
}

/** Returns a promise plus its settle functions. */
function deferred(): { promise: Promise<RespValue>; resolve: (v: RespValue) => void; reject: (e: Error) => void } {
  let resolve!: (v: RespValue) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<RespValue>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function commandName(argv: readonly Arg[]): string {
  const a = argv[0];
  if (a === undefined) return "";
  return typeof a === "string" ? a : typeof a === "number" ? String(a) : Buffer.from(a).toString("latin1");
}

function jitter(ms: number): number {
  return ms * (0.5 + Math.random() / 2);
}

/**
 * A kv (Redis-protocol) client over one persistent, pipelined connection.
 *
 * @example
 * const kv = createClient({ addrs: ["127.0.0.1:6379"], timeoutMs: 2000 });
 * await kv.set("greeting", "hello", { ex: 60 });
 * console.log(await kv.get("greeting")); // "hello"
 * await kv.close();
 */
export class Client {
  readonly seeds: readonly Addr[];
  readonly timeoutMs: number;
  private readonly opts: Required<
Pick<ClientOptions, "stallMs" | "connectTimeoutMs" | "backoffMsMin" | "backoffMsMax" | "redirectsMax" | "readRetriesMax" | "protocol" | "failFast">
  >;
  private readonly retryPrefixes: Set<string>;
  private readonly uncertainPrefixes: Set<string>;
  private readonly username: string | undefined;
  private readonly password: string | undefined;
  private readonly db: number | undefined;
  private readonly pushHandler: ((data: RespValue[]) => void) | undefined;
  private readonly tls: ClientTlsOptions | undefined;

  private current: Connection | null = null;
  private readonly connections = new Set<Connection>();
  private waiting: Request[] = [];
  /** A MOVED target to try before the seeds. */
  private preferred: string | null = null;
  private seedIndex = 0;
  /** Connect attempts that failed since the last success. */
  private failures = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private lastConnectError: ConnectionError | null = null;
  /** Calls issued and not yet settled (for close()). */
  private pending = 0;
  private closing = false;
  private closed = false;
  private drainWaiters: (() => void)[] = [];
  /** Calls sleeping before a retry (-TRYAGAIN etc.), with their timers. */
  private readonly parked = new Map<ReturnType<typeof setTimeout>, Request>();

  constructor(options: ClientOptions = {}) {
    let seeds: Addr[];
    let username = options.username;
    let password = options.password;
    let db: number | undefined;
    if (options.url !== undefined) {
      const u = parseUrl(options.url);
      seeds = u.addrs;
      username ??= u.username;
      password ??= u.password;
      db = u.db;
      if (u.tls === true && options.tls === undefined) options = { ...options, tls: true };
    } else {
      const list = options.addrs === undefined ? ["127.0.0.1:6379"] : typeof options.addrs === "string" ? options.addrs.split(",") : options.addrs;
      seeds = list.filter((s) => s.trim() !== "").map(parseAddr);
    }
    if (seeds.length === 0) throw new TypeError("createClient: no server address given");
    this.seeds = seeds;
    this.username = username;
    this.password = password;
    this.db = db;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.opts = {
      connectTimeoutMs: options.connectTimeoutMs ?? 2000,
      backoffMsMin: options.backoffMsMin ?? 25,
      backoffMsMax: options.backoffMsMax ?? 2000,
      redirectsMax: options.redirectsMax ?? 5,
      readRetriesMax: options.readRetriesMax ?? 2,
      protocol: options.protocol ?? 2,
      failFast: options.failFast ?? false,
      stallMs: options.stallMs ?? this.timeoutMs,
    };
    this.retryPrefixes = new Set(options.retryPrefixes ?? ["TRYAGAIN", "CLUSTERDOWN", "LOADING"]);
    this.uncertainPrefixes = new Set(options.uncertainPrefixes ?? ["UNCERTAIN"]);
    this.pushHandler = options.onPush;
    this.tls = options.tls === true ? {} : options.tls === false ? undefined : options.tls;
  }

  /** The address of the open connection, or null. */
  get connectedAddr(): string | null {
    return this.current?.state === "open" ? this.current.addr : null;
  }

  // ---------------------------------------------------------------- commands

  /**
   * Sends any command and returns the raw reply. Error replies reject with ServerError.
   * @example
   * await kv.command(["SET", "n", "1"]);        // "OK"
   * await kv.command(["MGET", "n", "missing"]); // ["1", null]
   * await kv.command(["GET", "n"], { mode: "bytes" }); // Uint8Array
   */
  command(argv: readonly Arg[], opts: CommandOptions = {}): Promise<RespValue> {
    if (this.closing || this.closed) return Promise.reject(new ClientClosedError());
    if (argv.length === 0) return Promise.reject(new TypeError("command: empty argv"));
    const name = commandName(argv).toLowerCase();
    if (UNSUPPORTED_COMMANDS.has(name)) {
      // Their replies do not pair one-to-one with calls, which would desynchronise the pipeline.
      return Promise.reject(new TypeError(`command: ${name.toUpperCase()} is not supported by this client (no pub/sub or MONITOR mode)`));
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const d = deferred();
    const req: Request = {
      argv,
      mode: opts.mode ?? "utf8",
      readonly: opts.readonly ?? READONLY_COMMANDS.has(name),
      internal: false,
      timeoutMs,
      deadline: performance.now() + timeoutMs,
      resolve: d.resolve,
      reject: d.reject,
      done: false,
      end: -1,
      hops: 0,
      resends: 0,
      retries: 0,
      sentAt: 0,
    };
    this.pending++;
    this.dispatch(req);
    return d.promise;
  }

  /** PING: "PONG", or the message echoed. */
  async ping(message?: string): Promise<string> {
    return (await this.command(message === undefined ? ["PING"] : ["PING", message])) as string;
  }

  /**
   * GET as UTF-8 text; null when the key does not exist.
   * @example const name = await kv.get("user:1:name");
   */
  async get(key: Key): Promise<string | null> {
    return (await this.command(["GET", key])) as string | null;
  }

  /** GET as raw bytes (binary-safe); null when the key does not exist. */
  async getBuffer(key: Key): Promise<Uint8Array | null> {
    return (await this.command(["GET", key], { mode: "bytes" })) as Uint8Array | null;
  }

  /**
   * SET with its options. Resolves true when the value was written, false when NX/XX
   * prevented it. With `{ get: true }` resolves the old value (null if none) instead.
   * @example
   * await kv.set("session", token, { ex: 3600 });
   * const created = await kv.set("lock", "me", { nx: true, px: 30_000 });
   * const old = await kv.set("counter", "0", { get: true });
   */
  set(key: Key, value: Value, opts: SetOptions & { get: true }): Promise<string | null>;
  set(key: Key, value: Value, opts?: SetOptions & { get?: false }): Promise<boolean>;
  set(key: Key, value: Value, opts?: SetOptions): Promise<boolean | string | null>;
  async set(key: Key, value: Value, opts?: SetOptions): Promise<boolean | string | null> {
    const argv = setArgv(key, value, opts);
    const r = await this.command(argv);
    if (opts?.get) return r as string | null;
    return r !== null;
  }

  /** SET ... GET returning the old value as bytes. */
  async setGetBuffer(key: Key, value: Value, opts: Omit<SetOptions, "get"> = {}): Promise<Uint8Array | null> {
    return (await this.command(setArgv(key, value, { ...opts, get: true }), { mode: "bytes" })) as Uint8Array | null;
  }

  /** DEL: the number of keys removed. @example await kv.del("a", "b") // 2 */
  async del(...keys: Key[]): Promise<number> {
    return Number(await this.command(["DEL", ...keys]));
  }

  /** EXISTS: how many of the keys exist (a key named twice counts twice). */
  async exists(...keys: Key[]): Promise<number> {
    return Number(await this.command(["EXISTS", ...keys]));
  }

  /** MGET as UTF-8 text, null for missing keys. @example const [a, b] = await kv.mget(["a", "b"]); */
  async mget(keys: readonly Key[]): Promise<(string | null)[]> {
    return (await this.command(["MGET", ...keys])) as (string | null)[];
  }

  /** MGET as raw bytes. */
  async mgetBuffer(keys: readonly Key[]): Promise<(Uint8Array | null)[]> {
    return (await this.command(["MGET", ...keys], { mode: "bytes" })) as (Uint8Array | null)[];
  }

  /** MSET from an object or a list of pairs. @example await kv.mset({ a: "1", b: "2" }); */
  async mset(pairs: Record<string, Value> | readonly (readonly [Key, Value])[]): Promise<void> {
    const argv: Arg[] = ["MSET"];
    const entries = Array.isArray(pairs) ? pairs : Object.entries(pairs);
    for (const [k, v] of entries as [Key, Value][]) argv.push(k, v);
    await this.command(argv);
  }

  /** INCR: the new value. Values past 2^53 lose precision here; use command() for a bigint. */
  async incr(key: Key): Promise<number> {
    return Number(await this.command(["INCR", key]));
  }

  /** INCRBY. */
  async incrBy(key: Key, by: number): Promise<number> {
    return Number(await this.command(["INCRBY", key, by]));
  }

  /** DECR. */
  async decr(key: Key): Promise<number> {
    return Number(await this.command(["DECR", key]));
  }

  /** DECRBY. */
  async decrBy(key: Key, by: number): Promise<number> {
    return Number(await this.command(["DECRBY", key, by]));
  }

  /**
   * EXPIRE: true when the timeout was set, false when the key does not exist (or the
   * NX/XX/GT/LT condition failed).
   */
  async expire(key: Key, seconds: number, condition?: "NX" | "XX" | "GT" | "LT"): Promise<boolean> {
    const argv: Arg[] = ["EXPIRE", key, seconds];
    if (condition) argv.push(condition);
    return (await this.command(argv)) === 1;
  }

  /** PEXPIRE, in milliseconds. */
  async pexpire(key: Key, ms: number, condition?: "NX" | "XX" | "GT" | "LT"): Promise<boolean> {
    const argv: Arg[] = ["PEXPIRE", key, ms];
    if (condition) argv.push(condition);
    return (await this.command(argv)) === 1;
  }

  /** PERSIST: true when a timeout was removed. */
  async persist(key: Key): Promise<boolean> {
    return (await this.command(["PERSIST", key])) === 1;
  }

  /** TTL in seconds: -2 when the key does not exist, -1 when it has no expiry. */
  async ttl(key: Key): Promise<number> {
    return Number(await this.command(["TTL", key]));
  }

  /** PTTL in milliseconds: -2 / -1 as for ttl(). */
  async pttl(key: Key): Promise<number> {
    return Number(await this.command(["PTTL", key]));
  }

  /** KEYS matching a glob pattern (default all). */
  async keys(pattern: Key = "*"): Promise<string[]> {
    return (await this.command(["KEYS", pattern])) as string[];
  }

  /** DBSIZE. */
  async dbsize(): Promise<number> {
    return Number(await this.command(["DBSIZE"]));
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Stops accepting calls, waits for every call already made to settle (reply, error or
   * deadline), then closes the connection.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    if (this.pending > 0) await new Promise<void>((res) => this.drainWaiters.push(res));
    this.shutdown();
  }

  /** Closes at once: waiting calls fail with ClientClosedError (outcomeUnknown for sent writes). */
  destroy(): void {
    if (this.closed) return;
    this.closing = true;
    for (const req of this.waiting) this.fail(req, new ClientClosedError());
    this.waiting = [];
    for (const c of this.connections) {
      for (const req of c.takeInflight()) {
        this.fail(req, new ClientClosedError("client destroyed with the call in flight", { outcomeUnknown: !req.readonly }));
      }
    }
    for (const [t, req] of this.parked) {
      clearTimeout(t);
      this.fail(req, new ClientClosedError());
    }
    this.parked.clear();
    this.pending = 0;
    this.shutdown();
  }

  private shutdown(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const c of this.connections) c.close();
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  // ---------------------------------------------------------------- internals

  private dispatch(req: Request): void {
    let c = this.current;
    if (c !== null && c.state === "open" && c.head < c.inflight.length) {
      // Do not put a call on a connection that stopped answering (the sweep may be idle).
      const now = performance.now();
      if (now - c.inflight[c.head]!.sentAt > this.opts.stallMs && now - c.lastDataAt > this.opts.stallMs) {
        this.stalled(c, now);
        c = this.current;
      }
    }
    if (c !== null && c.state === "open") c.send(req);
    else {
      this.waiting.push(req);
      if (c === null) this.connectSoon(0);
    }
    if (this.sweepTimer === null) this.sweepTimer = setInterval(this.sweep, SWEEP_MS);
  }

  private settle(req: Request): boolean {
    if (req.done) return false;
    req.done = true;
    if (!req.internal && --this.pending === 0) {
      if (this.sweepTimer) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = null;
      }
      if (this.drainWaiters.length > 0) {
        const w = this.drainWaiters;
        this.drainWaiters = [];
        for (const f of w) f();
      }
    }
    return true;
  }

  private fail(req: Request, e: Error): void {
    if (this.settle(req)) req.reject(e);
  }

  private readonly sweep = (): void => {
    const now = performance.now();
    if (this.waiting.length > 0) {
      const keep: Request[] = [];
      for (const req of this.waiting) {
        if (req.done) continue;
        if (now >= req.deadline) this.fail(req, this.waitTimeoutError(req));
        else keep.push(req);
      }
      this.waiting = keep;
    }
    for (const c of this.connections) {
      const q = c.inflight;
      for (let i = c.head; i < q.length; i++) {
        const req = q[i]!;
        if (!req.done && now >= req.deadline) {
          const unknown = !req.readonly;
          this.fail(
            req,
            new TimeoutError(
              `${commandName(req.argv)} timed out after ${req.timeoutMs} ms waiting for ${c.addr}` +
                (unknown ? "; it may or may not have been applied" : ""),
              req.timeoutMs,
              { outcomeUnknown: unknown, cause: req.lastError },
            ),
          );
        }
      }
      const oldest = q[c.head];
      if (oldest !== undefined && c.state === "open" && now - oldest.sentAt > this.opts.stallMs && now - c.lastDataAt > this.opts.stallMs) {
        this.stalled(c, now);
      }
    }
  };

  /** Drops a connection that stopped answering and moves on to the next seed. */
  private stalled(c: Connection, now: number): void {
    if (this.preferred === c.addr) this.preferred = null;
    if (formatAddr(this.seeds[this.seedIndex % this.seeds.length]!) === c.addr) this.seedIndex++;
    this.connectionFailed(c, new Error(`no reply from ${c.addr} for ${Math.round(now - c.lastDataAt)} ms`));
  }

  /** The error for a call that never got onto a connection before its deadline: not applied. */
  private waitTimeoutError(req: Request): ClientError {
    const last = this.lastConnectError;
    if (last !== null && (this.current === null || this.current.state !== "open")) {
      return new ConnectionError(`${last.message} (gave up after ${req.timeoutMs} ms)`, last.addr, last);
    }
    return new TimeoutError(`${commandName(req.argv)} timed out after ${req.timeoutMs} ms before it was sent`, req.timeoutMs);
  }

  private connectSoon(delayMs: number): void {
    if (this.closed || this.reconnectTimer !== null || this.current !== null) return;
    if (delayMs <= 0) {
      this.connect();
      return;
    }
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delayMs);
    // An idle client reconnecting in the background must not keep the process alive.
    if (this.pending === 0) this.reconnectTimer.unref();
  }

  private nextAddr(): string {
    if (this.preferred !== null) return this.preferred;
    const a = this.seeds[this.seedIndex % this.seeds.length]!;
    return formatAddr(a);
  }

  private connect(): void {
    if (this.closed || this.current !== null) return;
    const addr = this.nextAddr();
    const { host, port } = parseAddr(addr);
    const conn = new Connection(this, addr);
    this.current = conn;
    this.connections.add(conn);
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      this.connectFailed(conn, new Error(`connect timed out after ${this.opts.connectTimeoutMs} ms`));
    }, this.opts.connectTimeoutMs);
    const client = this;
    const tls = this.tls;
    Bun.connect({
      hostname: host,
      port,
      // Without a handshake handler, open comes once the TLS handshake (and the certificate check) is done.
      ...(tls !== undefined ? { tls: { ...tls, serverName: tls.serverName ?? host } } : {}),
      socket: {
        open(s) {
          if (settled) {
            s.end();
            return;
          }
          settled = true;
          clearTimeout(timer);
          conn.socket = s as Socket<undefined>;
          client.connected(conn);
        },
        data(_s, chunk) {
          conn.onData(chunk);
        },
        drain() {
          conn.flush();
        },
        close(_s, err) {
          client.connectionFailed(conn, err ?? new Error("connection closed by the server"));
        },
        end() {
          client.connectionFailed(conn, new Error("connection closed by the server"));
        },
        error(_s, err) {
          client.connectionFailed(conn, err);
        },
        connectError(_s, err) {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          client.connectFailed(conn, err);
        },
      },
    }).catch((err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.connectFailed(conn, err);
    });
  }

  private connected(conn: Connection): void {
    if (this.closed) {
      conn.state = "closed";
      conn.socket?.end();
      return;
    }
    conn.state = "open";
    // `failures` is reset by the first reply, not here: a server that accepts and then drops
    // every connection must still meet the backoff.
    this.lastConnectError = null;
    if (this.opts.protocol === 3) {
      const hello: Arg[] = ["HELLO", "3"];
      if (this.password !== undefined) hello.push("AUTH", this.username ?? "default", this.password);
      this.handshake(conn, hello);
    } else if (this.password !== undefined) {
      this.handshake(conn, this.username !== undefined ? ["AUTH", this.username, this.password] : ["AUTH", this.password]);
    }
    if (this.db !== undefined && this.db !== 0) this.handshake(conn, ["SELECT", this.db]);
    const w = this.waiting;
    this.waiting = [];
    for (const req of w) if (!req.done) conn.send(req);
  }

  /** Sends a connection-setup command ahead of the calls; failures are reported via the calls. */
  private handshake(conn: Connection, argv: Arg[]): void {
    const req: Request = {
      argv,
      mode: "utf8",
      readonly: true,
      internal: true,
      timeoutMs: this.timeoutMs,
      deadline: Number.POSITIVE_INFINITY,
      resolve: () => {},
      reject: () => {},
      done: false,
      end: -1,
      hops: 0,
      resends: 0,
      retries: 0,
      sentAt: 0,
    };
    conn.send(req);
  }

  private connectFailed(conn: Connection, err: unknown): void {
    if (conn.state === "closed") return;
    conn.state = "closed";
    this.connections.delete(conn);
    if (this.current === conn) this.current = null;
    const msg = err instanceof Error ? err.message : String(err);
    const code = (err as { code?: string } | null)?.code;
    this.lastConnectError = new ConnectionError(`could not connect to ${conn.addr}: ${code && !msg.includes(code) ? `${code} ` : ""}${msg}`, conn.addr, err);
    if (this.preferred === conn.addr) this.preferred = null;
    else this.seedIndex++;
    this.failures++;
    if (this.closed) return;
    // One round = every seed tried once. Within a round, move on at once; between rounds, back off.
    const roundDone = this.failures % this.seeds.length === 0;
    if (roundDone && this.opts.failFast) {
      const w = this.waiting;
      this.waiting = [];
      for (const req of w) this.fail(req, this.lastConnectError);
    }
    if (this.waiting.length === 0 && this.pending === 0 && this.closing) return;
    const round = Math.floor(this.failures / this.seeds.length);
    const delay = roundDone ? jitter(Math.min(this.opts.backoffMsMax, this.opts.backoffMsMin * 2 ** Math.min(round, 20))) : 0;
    this.connectSoon(delay);
  }

  /** The connection broke (socket closed, error, or bad reply bytes). */
  connectionFailed(conn: Connection, err: unknown): void {
    if (conn.state === "connecting") {
      this.connectFailed(conn, err);
      return;
    }
    if (conn.state === "closed") return;
    conn.state = "closed";
    if (conn.socket) conn.socket.end();
    this.connections.delete(conn);
    const wasCurrent = this.current === conn;
    if (wasCurrent) this.current = null;
    const cause =
      err instanceof ClientError ? err : new ConnectionError(`connection to ${conn.addr} lost: ${err instanceof Error ? err.message : String(err)}`, conn.addr, err);
    const resend: Request[] = [];
    for (const req of conn.takeInflight()) {
      if (req.done || req.internal) continue;
      const sent = req.end <= conn.written;
      if (!sent) resend.push(req);
      else if (req.readonly && req.resends < this.opts.readRetriesMax) {
        req.resends++;
        resend.push(req);
      } else if (req.readonly) {
        this.fail(req, cause);
      } else {
        this.fail(
          req,
          new OutcomeUnknownError(
            `connection to ${conn.addr} lost after ${commandName(req.argv).toUpperCase()} was sent: it may or may not have been applied`,
            cause,
          ),
        );
      }
    }
    for (const req of resend) req.end = -1;
    this.waiting = resend.concat(this.waiting);
    if (this.closed) return;
    if (wasCurrent || this.current === null) {
      if (this.closing && this.waiting.length === 0) return;
      this.failures++;
      const delay = this.failures <= 1 ? 0 : jitter(Math.min(this.opts.backoffMsMax, this.opts.backoffMsMin * 2 ** Math.min(this.failures, 20)));
      this.connectSoon(delay);
    }
  }

  onPush(data: RespValue[]): void {
    this.pushHandler?.(data);
  }

  onReply(conn: Connection, req: Request, v: RespValue): void {
    this.failures = 0;
    if (req.done) return;
    if (!(v instanceof ErrorReply)) {
      if (req.internal) {
        req.done = true;
        return;
      }
      if (this.settle(req)) req.resolve(v);
      return;
    }
    const err = new ServerError(v.message);
    if (req.internal) {
      req.done = true;
      return;
    }
    if (err.prefix === "MOVED") {
      const target = movedTarget(v.message);
      if (target !== null && req.hops < this.opts.redirectsMax) {
        req.hops++;
        this.redirect(conn, target, req);
        return;
      }
    } else if (this.retryPrefixes.has(err.prefix) || (err.prefix === "REMOVED" && this.seeds.length > 1)) {
      // The node is going away (SHUTTING_DOWN_REPLY), or was removed from its cluster and refuses
      // everything (REMOVED): nothing more is sent on this connection, and the retry goes to the next seed.
      if ((err.prefix === "TRYAGAIN" && v.message.startsWith(SHUTTING_DOWN)) || err.prefix === "REMOVED") this.leave(conn);
      const delay = jitter(Math.min(this.opts.backoffMsMax, this.opts.backoffMsMin * 2 ** Math.min(req.retries, 20)));
      if (performance.now() + delay < req.deadline) {
        req.retries++;
        req.lastError = err;
        req.end = -1;
        const t = setTimeout(() => {
          this.parked.delete(t);
          if (!req.done) this.dispatch(req);
        }, delay);
        this.parked.set(t, req);
        return;
      }
    } else if (this.uncertainPrefixes.has(err.prefix)) {
      this.fail(req, new OutcomeUnknownError(`${commandName(req.argv).toUpperCase()} may or may not have been applied: ${v.message}`, err));
      return;
    }
    this.fail(req, err);
  }

  /** Stops sending on `conn` (closed once its replies are in); new calls go to the next seed. */
  private leave(conn: Connection): void {
    if (this.preferred === conn.addr) this.preferred = null;
    if (formatAddr(this.seeds[this.seedIndex % this.seeds.length]!) === conn.addr) this.seedIndex++;
    if (this.current === conn) this.current = null;
    conn.retired = true;
    if (conn.inflightCount === 0) conn.close();
  }

  /** Follows -MOVED: the node named becomes the preferred address and the call is re-sent there. */
  private redirect(conn: Connection, target: string, req: Request): void {
    req.end = -1;
    if (target !== conn.addr || this.current === conn) {
      this.preferred = target;
      if (this.current === conn && target !== conn.addr) {
        // Switch: new calls go to the target; the old connection closes once its replies are in.
        this.current = null;
        conn.retired = true;
        if (conn.inflightCount === 0) conn.close();
      }
    }
    this.dispatch(req);
  }
}

function movedTarget(message: string): string | null {
  // MOVED <slot> <host>:<port>
  const parts = message.split(" ");
  const t = parts[2];
  if (parts.length < 3 || t === undefined) return null;
  try {
    return formatAddr(parseAddr(t.startsWith(":") ? `127.0.0.1${t}` : t));
  } catch {
    return null;
  }
}

function setArgv(key: Key, value: Value, opts: SetOptions | undefined): Arg[] {
  const argv: Arg[] = ["SET", key, value];
  if (opts) {
    if (opts.ex !== undefined) argv.push("EX", opts.ex);
    if (opts.px !== undefined) argv.push("PX", opts.px);
    if (opts.exat !== undefined) argv.push("EXAT", opts.exat);
    if (opts.pxat !== undefined) argv.push("PXAT", opts.pxat);
    if (opts.keepTtl) argv.push("KEEPTTL");
    if (opts.nx) argv.push("NX");
    if (opts.xx) argv.push("XX");
    if (opts.get) argv.push("GET");
  }
  return argv;
}

/**
 * Creates a client. It connects lazily (on the first call) and keeps the connection.
 * @example
 * const kv = createClient({ addrs: "10.0.0.1:6379,10.0.0.2:6379", timeoutMs: 1000 });
 * const kv2 = createClient({ url: "redis://127.0.0.1:6379" });
 */
export function createClient(options: ClientOptions = {}): Client {
  return new Client(options);
}
