// Pub/sub, keyspace notifications and KV.WATCH on one node: who listens to what, and what the
// node's applied entries deliver to them (the ChangeSink of its state machine). PUBLISH is a
// logged command (src/kv/publish.ts): every member delivers a message to its own subscribers when it
// applies the entry, in log order (docs/cluster.md, "Pub/sub"). Keyspace notifications and
// watch records come from the same applied entries, so every member reports the same changes.
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import { NOTIFY_FLUSH, NOTIFY_KEYEVENT, NOTIFY_KEYSPACE, NOTIFY_NEW } from "../kv/events.ts";
import { globMatch } from "../kv/glob.ts";
import { type ChangeRecord, WatchHistory } from "../kv/watch-history.ts";
import { ReplyBuffer, type ReplyWriter } from "../resp/encode.ts";
import type { ChangeSink, ValueSource } from "../node/change-events.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { Conn } from "./server.ts";
import { parseInt64 } from "../kv/int64.ts";

/** Channels, patterns and shard channels one connection may subscribe to, each. */
export const SUBSCRIPTIONS_PER_CONN_MAX = 100_000;
/** KV.WATCH patterns one connection may hold. */
export const WATCHES_PER_CONN_MAX = 1024;

/** Redis's `client-output-buffer-limit pubsub`: past hard, or past soft for softSeconds, the subscriber is closed. */
export interface PubsubOutputLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

export const PUBSUB_OUTPUT_LIMIT_DEFAULT: PubsubOutputLimit = { hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 };

/** A connection's subscriptions and watches (Conn.subs). */
export class ConnSubs {
  readonly channels = new Set<string>();
  readonly patterns = new Set<string>();
  readonly shard = new Set<string>();
  /** KV.WATCH pattern -> the first index reported to it. */
  readonly watches = new Map<string, number>();
  /** When its unsent output went past the soft limit (0: it is under). */
  softSinceMs = 0;

  /** Subscribed mode (RESP2: only the subscription commands are allowed). */
  active(): boolean {
    return this.channels.size + this.patterns.size + this.shard.size + this.watches.size > 0;
  }
}

/** What the hub needs of the server. */
export interface PushHost {
  /** Appends out-of-band bytes to a subscriber's output (sent with the batch being applied); enforces the limits. */
  push(conn: Conn, bytes: Uint8Array): void;
  /** Closes a watcher that can no longer be served (a snapshot replaced the keyspace under it). */
  drop(conn: Conn, why: string): void;
  appliedIndex(): number;
}

/** Encodes one frame per protocol, on demand, for a fan-out. */
class Frame {
  private readonly bufs = [new ReplyBuffer(256), new ReplyBuffer(256)];
  private ready = [false, false];
  constructor(private readonly write: (out: ReplyBuffer) => void) {}
  reset(): void {
    this.ready[0] = this.ready[1] = false;
  }
  bytes(proto: 2 | 3): Uint8Array {
    const i = proto - 2;
    const b = this.bufs[i]!;
    if (!this.ready[i]) {
      b.reset();
      b.proto = proto;
      this.write(b);
      this.ready[i] = true;
    }
    return b.view();
  }
}

export class PubSubHub implements ChangeSink {
  readonly channels = new Map<string, Set<Conn>>();
  readonly patterns = new Map<string, Set<Conn>>();
  readonly shard = new Map<string, Set<Conn>>();
  readonly watchers = new Map<string, Set<Conn>>();
  /** `notify-keyspace-events` of this node (see events.ts); 0: off, as Redis's default. */
  notifyFlags = 0;
  readonly history: WatchHistory;
  /** Messages handed to subscribers (a pattern match counts once per pattern). */
  delivered = 0;

  // The frame being fanned out (module state: delivery is synchronous).
  private kind = "";
  private pat = "";
  private chan = "";
  private msg = "";
  private rec: ChangeRecord | null = null;
  private readonly msgFrame = new Frame((o) => {
    o.push(3);
    o.bulk(this.kind);
    o.bulk(this.chan);
    o.bulk(this.msg);
  });
  private readonly pmsgFrame = new Frame((o) => {
    o.push(4);
    o.bulk("pmessage");
    o.bulk(this.pat);
    o.bulk(this.chan);
    o.bulk(this.msg);
  });
  private readonly changeFrame = new Frame((o) => changeRecord(o, this.pat, this.rec!));

  /** Until the server attaches, nobody listens (the node replays its log at open before it serves). */
  private host: PushHost = { push: () => {}, drop: () => {}, appliedIndex: () => 0 };

  constructor(historyRecords: number, historyBytes: number, startIndex = 1) {
    this.history = new WatchHistory(historyRecords, historyBytes, startIndex);
  }

  attach(host: PushHost): void {
    this.host = host;
  }

  // ---- ChangeSink ----

  get newKeys(): boolean {
    return (this.notifyFlags & NOTIFY_NEW) !== 0;
  }

  publish(_index: number, channel: string, message: string, sharded: boolean): number {
    return this.publishLocal(channel, message, sharded);
  }

  keyEvent(index: number, cls: number, event: string, key: string, values: ValueSource): void {
    const flags = this.notifyFlags;
    if ((flags & cls) !== 0) {
      if (flags & NOTIFY_KEYSPACE) this.publishLocal(`__keyspace@0__:${key}`, event, false);
      if (flags & NOTIFY_KEYEVENT) this.publishLocal(`__keyevent@0__:${event}`, key, false);
    }
    const history = this.history;
    if (history.disabled && this.watchers.size === 0) {
      if (index >= history.startIndex) history.startIndex = index + 1;
      return;
    }
    const value = (cls === NOTIFY_FLUSH ? undefined : values.valueOf(key)) ?? null;
    history.add(index, event, key, value);
    if (this.watchers.size === 0) return;
    const rec: ChangeRecord = { index, event, key, value };
    this.rec = rec;
    for (const [p, conns] of this.watchers) {
      if (cls !== NOTIFY_FLUSH && !globMatch(p, key)) continue;
      this.pat = p;
      this.changeFrame.reset();
      for (const c of conns) {
        if (index >= c.subs!.watches.get(p)!) this.host.push(c, this.changeFrame.bytes(c.proto));
      }
    }
    this.rec = null;
  }

  restored(index: number): void {
    this.history.reset(index);
    // Changes up to the snapshot were never seen here: a watcher would miss them silently. Closed,
    // it reconnects with FROM and gets them, or the COMPACTED error and where to restart.
    const conns = new Set<Conn>();
    for (const set of this.watchers.values()) for (const c of set) conns.add(c);
    for (const c of conns) this.host.drop(c, `a snapshot at index ${index} replaced the keyspace under its KV.WATCH`);
  }

  /** Delivers to this node's subscribers; returns the receivers (a pattern match counts once per pattern). */
  publishLocal(channel: string, message: string, sharded: boolean): number {
    let n = 0;
    const subs = (sharded ? this.shard : this.channels).get(channel);
    this.chan = channel;
    this.msg = message;
    if (subs !== undefined) {
      this.kind = sharded ? "smessage" : "message";
      this.msgFrame.reset();
      for (const c of subs) {
        this.host.push(c, this.msgFrame.bytes(c.proto));
        n++;
      }
    }
    if (!sharded && this.patterns.size > 0) {
      for (const [p, conns] of this.patterns) {
        if (!globMatch(p, channel)) continue;
        this.pat = p;
        this.pmsgFrame.reset();
        for (const c of conns) {
          this.host.push(c, this.pmsgFrame.bytes(c.proto));
          n++;
        }
      }
    }
    this.delivered += n;
    return n;
  }

  // ---- subscriptions ----

  private static add(map: Map<string, Set<Conn>>, name: string, conn: Conn): void {
    let set = map.get(name);
    if (set === undefined) map.set(name, (set = new Set()));
    set.add(conn);
  }

  private static remove(map: Map<string, Set<Conn>>, name: string, conn: Conn): void {
    const set = map.get(name);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size === 0) map.delete(name);
  }

  /** Everything a connection listens to goes (close, RESET). */
  dropConn(conn: Conn): void {
    const s = conn.subs;
    if (s === null) return;
    for (const ch of s.channels) PubSubHub.remove(this.channels, ch, conn);
    for (const p of s.patterns) PubSubHub.remove(this.patterns, p, conn);
    for (const ch of s.shard) PubSubHub.remove(this.shard, ch, conn);
    for (const p of s.watches.keys()) PubSubHub.remove(this.watchers, p, conn);
    conn.subs = null;
  }

  subscribe(conn: Conn, which: "channels" | "patterns" | "shard", names: readonly string[], out: ReplyWriter): void {
    const s = (conn.subs ??= new ConnSubs());
    const mine = s[which];
    const map = this[which];
    const kind = which === "channels" ? "subscribe" : which === "patterns" ? "psubscribe" : "ssubscribe";
    for (const name of names) {
      if (!mine.has(name)) {
        if (mine.size >= SUBSCRIPTIONS_PER_CONN_MAX) {
          out.error(`ERR this connection holds ${SUBSCRIPTIONS_PER_CONN_MAX} ${which === "patterns" ? "patterns" : "channels"} already (the most one may)`);
          continue;
        }
        mine.add(name);
        PubSubHub.add(map, name, conn);
      }
      out.push(3);
      out.bulk(kind);
      out.bulk(name);
      out.int(which === "shard" ? s.shard.size : s.channels.size + s.patterns.size);
    }
  }

  unsubscribe(conn: Conn, which: "channels" | "patterns" | "shard", names: readonly string[], out: ReplyWriter): void {
    const s = conn.subs;
    const kind = which === "channels" ? "unsubscribe" : which === "patterns" ? "punsubscribe" : "sunsubscribe";
    const count = () => (s === null ? 0 : which === "shard" ? s.shard.size : s.channels.size + s.patterns.size);
    const list = names.length > 0 ? names : s === null ? [] : [...s[which]];
    if (list.length === 0) {
      out.push(3);
      out.bulk(kind);
      out.nil();
      out.int(count());
      return;
    }
    for (const name of list) {
      if (s !== null && s[which].delete(name)) PubSubHub.remove(this[which], name, conn);
      out.push(3);
      out.bulk(kind);
      out.bulk(name);
      out.int(count());
    }
    if (s !== null && !s.active()) conn.subs = null;
  }

  // ---- KV.WATCH ----

  watch(conn: Conn, pattern: string, from: number | undefined, out: ReplyWriter): void {
    const applied = this.host.appliedIndex();
    const start = from ?? applied + 1;
    if (conn.subs?.watches.has(pattern)) {
      out.error("ERR this connection watches this pattern already: KV.UNWATCH it first");
      return;
    }
    if ((conn.subs?.watches.size ?? 0) >= WATCHES_PER_CONN_MAX) {
      out.error(`ERR this connection holds ${WATCHES_PER_CONN_MAX} watches already (the most one may)`);
      return;
    }
    const recs = this.history.since(start);
    if (recs === null) {
      out.error(
        `COMPACTED changes from index ${start} are no longer held here (this node holds them from index ${this.history.startIndex}, ` +
          `applied ${applied}): read the keys, then KV.WATCH ${pattern} FROM ${applied + 1}`,
      );
      return;
    }
    const s = (conn.subs ??= new ConnSubs());
    s.watches.set(pattern, start);
    PubSubHub.add(this.watchers, pattern, conn);
    out.push(3);
    out.bulk("kv.watch");
    out.bulk(pattern);
    out.int(start);
    for (const r of recs) {
      if (r.key === "" ? r.event.startsWith("flush") : globMatch(pattern, r.key)) changeRecord(out, pattern, r);
    }
  }

  unwatch(conn: Conn, patterns: readonly string[], out: ReplyWriter): void {
    const s = conn.subs;
    const list = patterns.length > 0 ? patterns : s === null ? [] : [...s.watches.keys()];
    if (list.length === 0) {
      out.push(3);
      out.bulk("kv.unwatch");
      out.nil();
      out.int(0);
      return;
    }
    for (const p of list) {
      if (s !== null && s.watches.delete(p)) PubSubHub.remove(this.watchers, p, conn);
      out.push(3);
      out.bulk("kv.unwatch");
      out.bulk(p);
      out.int(s?.watches.size ?? 0);
    }
    if (s !== null && !s.active()) conn.subs = null;
  }
}

/** One KV.WATCH record: `kv.change`, the pattern, the index, the event, the key, the value (nil: removed). */
function changeRecord(out: ReplyWriter, pattern: string, r: ChangeRecord): void {
  out.push(6);
  out.bulk("kv.change");
  out.bulk(pattern);
  out.int(r.index);
  out.bulk(r.event);
  out.bulk(r.key);
  if (r.value === null) out.nil();
  else out.bulk(r.value);
}

// ---- commands ----

/** What RESP2 subscribed mode allows (Redis's processCommand check), and KV.WATCH's own. */
export const SUBSCRIBED_MODE_COMMANDS: ReadonlySet<string> = new Set(["subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "ping", "quit", "reset", "kv.watch", "kv.unwatch"]);

export function subscribedModeError(fullName: string): string {
  return `ERR Can't execute '${fullName}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`;
}

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "pubsub", "loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

function pubsubChannels(map: Map<string, Set<Conn>>, argv: string[], out: ReplyWriter): void {
  const pattern = argv.length > 2 ? argv[2]! : null;
  const hits: string[] = [];
  for (const ch of map.keys()) if (pattern === null || globMatch(pattern, ch)) hits.push(ch);
  out.array(hits.length);
  for (const ch of hits) out.bulk(ch);
}

function pubsubNumsub(map: Map<string, Set<Conn>>, argv: string[], out: ReplyWriter): void {
  out.array((argv.length - 2) * 2);
  for (let i = 2; i < argv.length; i++) {
    out.bulk(argv[i]!);
    out.int(map.get(argv[i]!)?.size ?? 0);
  }
}

const PUBSUB_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("channels", -2, [], (ctx, argv, out) => pubsubChannels(ctx.server.pubsub.channels, argv, out)),
  spec("numsub", -2, [], (ctx, argv, out) => pubsubNumsub(ctx.server.pubsub.channels, argv, out)),
  spec("numpat", 2, [], (ctx, _argv, out) => out.int(ctx.server.pubsub.patterns.size)),
  spec("shardchannels", -2, [], (ctx, argv, out) => pubsubChannels(ctx.server.pubsub.shard, argv, out)),
  spec("shardnumsub", -2, [], (ctx, argv, out) => pubsubNumsub(ctx.server.pubsub.shard, argv, out)),
  spec("help", 2, [], (_ctx, _argv, out) => {
    const lines = [
      "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "CHANNELS [<pattern>]",
      "    Return the currently active channels matching a <pattern> (default: '*').",
      "NUMPAT",
      "    Return number of subscriptions to patterns.",
      "NUMSUB [<channel> ...]",
      "    Return the number of subscribers for the specified channels, excluding",
      "    pattern subscriptions(default: no channels).",
      "SHARDCHANNELS [<pattern>]",
      "    Return the currently active shard level channels matching a <pattern> (default: '*').",
      "SHARDNUMSUB [<shardchannel> ...]",
      "    Return the number of subscribers for the specified shard level channel(s)",
      "HELP",
      "    Print this help.",
    ];
    out.array(lines.length);
    for (const l of lines) out.simple(l);
  }),
];

/** KV.WATCH pattern [FROM index] */
function kvWatch(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  let from: number | undefined;
  if (argv.length === 4 && argv[2]!.toUpperCase() === "FROM") {
    const n = parseInt64(argv[3]!);
    if (typeof n !== "number" || n < 1) {
      out.error("ERR FROM index must be a positive integer");
      return;
    }
    from = n;
  } else if (argv.length !== 2) {
    out.error("ERR syntax error");
    return;
  }
  ctx.server.pubsub.watch(ctx.conn, argv[1]!, from, out);
}

export const PUBSUB_COMMANDS: readonly (CommandSpec<ServerCtx> & { subcommands?: readonly CommandSpec<ServerCtx>[] })[] = [
  spec("subscribe", -2, [], (ctx, argv, out) => ctx.server.pubsub.subscribe(ctx.conn, "channels", argv.slice(1), out)),
  spec("unsubscribe", -1, [], (ctx, argv, out) => ctx.server.pubsub.unsubscribe(ctx.conn, "channels", argv.slice(1), out)),
  spec("psubscribe", -2, [], (ctx, argv, out) => ctx.server.pubsub.subscribe(ctx.conn, "patterns", argv.slice(1), out)),
  spec("punsubscribe", -1, [], (ctx, argv, out) => ctx.server.pubsub.unsubscribe(ctx.conn, "patterns", argv.slice(1), out)),
  spec("ssubscribe", -2, [], (ctx, argv, out) => ctx.server.pubsub.subscribe(ctx.conn, "shard", argv.slice(1), out)),
  spec("sunsubscribe", -1, [], (ctx, argv, out) => ctx.server.pubsub.unsubscribe(ctx.conn, "shard", argv.slice(1), out)),
  { ...spec("pubsub", -2, [], () => {}), subcommands: PUBSUB_SUBCOMMANDS },
  spec("kv.watch", -2, [], kvWatch),
  spec("kv.unwatch", -1, [], (ctx, argv, out) => ctx.server.pubsub.unwatch(ctx.conn, argv.slice(1), out)),
];
