// The replicated state machine around a Db: applies logged commands in order with the time
// stamped on each entry, and snapshots/restores the keyspace. Pure and deterministic: the same
// entries give the same state and the same replies on every replica and on every replay.
import { assert } from "../errors.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import { arityOk, commandLookup, unknownCommandError, type CommandSpec } from "./command.ts";
import { type KvCtx, KV_COMMANDS } from "./commands.ts";
import { PUBSUB_KV_COMMANDS } from "./publish.ts";
import { Db, type DbEntry, type DbOptions, type DbSnapshot } from "./db.ts";
import { type KvEvents, NOTIFY_EXPIRED, NOTIFY_NEW } from "./events.ts";
import { AclState } from "./acl.ts";
import { ACL_KV_COMMANDS } from "./acl-commands.ts";

/** What the log applies: the keyspace's commands, PUBLISH/SPUBLISH, and KV.ACL (the logged form of ACL SETUSER/DELUSER/LOAD). */
const lookupKvCommand = commandLookup([...KV_COMMANDS, ...PUBSUB_KV_COMMANDS, ...ACL_KV_COMMANDS]);

export class KvStateMachine {
  readonly db: Db;
  /**
   * The effective time of the latest applied entry. Entry times are clamped to never go back
   * (a new leader's clock may lag the old one's), so a key that expired stays expired.
   */
  appliedMs = 0;
  /** ACL users, replicated through KV.ACL entries (src/kv/acl-commands.ts). */
  readonly acl = new AclState();
  private readonly ctx: KvCtx;
  /** Where applied changes are reported (see events.ts); null: nowhere. Reads never report. */
  events: KvEvents | null = null;

  constructor(opts: DbOptions = {}) {
    this.db = new Db(opts);
    this.ctx = { db: this.db, nowMs: 0, acl: this.acl };
  }

  /**
   * Applies one logged command stamped with nowMs and writes its reply. Unknown names and bad
   * arity get Redis's errors here too, so a replayed log answers exactly as it did live.
   * Returns the spec that ran, or undefined. `index`: the entry's log index, the revision of
   * every key it changes (default: one past the last).
   */
  apply(argv: string[], nowMs: number, out: ReplyWriter, index = this.db.rev + 1): CommandSpec<KvCtx> | undefined {
    if (nowMs > this.appliedMs) this.appliedMs = nowMs;
    this.db.rev = index;
    const spec = lookupKvCommand(argv[0]!);
    if (spec === undefined) {
      out.error(unknownCommandError(argv));
      return undefined;
    }
    if (!arityOk(spec.arity, argv.length)) {
      out.error(`ERR wrong number of arguments for '${spec.name}' command`);
      return undefined;
    }
    this.ctx.nowMs = this.appliedMs;
    this.beforeCommand(spec, argv);
    this.ctx.beforeCommand = this.beforeCommand; // a transaction's commands (txn.ts) each get it too
    spec.exec(this.ctx, argv, out);
    this.ctx.events = null;
    this.ctx.beforeCommand = null;
    return spec;
  }

  /** Before each command applied (alone or in a transaction): where its events go, and Redis's pre-write events. */
  private readonly beforeCommand = (spec: CommandSpec<KvCtx>, argv: string[]): void => {
    this.ctx.events = this.events;
    if (this.events !== null && spec.firstKey > 0) {
      if (this.db.expiresCount() > 0) this.expireTouched(spec, argv);
      if (this.events.newKeys) this.watchNewKeys(spec, argv);
    }
  };

  /** Keys of the running write that were absent before it (see watchNewKeys). */
  private absent: string[] = [];
  private readonly newKeyEvents: KvEvents = {
    newKeys: true,
    keyEvent: (cls, event, key) => {
      // Redis reports `new` when the key is added (dbAdd), before the command's own events: so a key
      // absent before the write and present now is reported first (RENAME: new dst, rename_from, rename_to).
      const absent = this.absent;
      for (let i = 0; i < absent.length; i++) {
        const k = absent[i]!;
        if (k === "" || this.db.get(k, Number.NEGATIVE_INFINITY) === undefined) continue;
        absent[i] = "";
        this.events!.keyEvent(NOTIFY_NEW, "new", k);
      }
      this.events!.keyEvent(cls, event, key);
    },
    publish: (channel, message, sharded) => this.events!.publish(channel, message, sharded),
  };

  /** With `new` events wanted: notes the write's absent keys and reports through newKeyEvents. */
  private watchNewKeys(spec: CommandSpec<KvCtx>, argv: string[]): void {
    const last = spec.lastKey < 0 ? argv.length + spec.lastKey : spec.lastKey;
    const absent: string[] = [];
    for (let i = spec.firstKey; i <= last && i < argv.length; i += spec.keyStep) {
      const key = argv[i]!;
      if (this.db.get(key, this.appliedMs) === undefined && !absent.includes(key)) absent.push(key);
    }
    // RENAME and COPY replace an existing destination by deleting it and adding the key anew (new in Redis too).
    const name = spec.name;
    if ((name === "rename" || name === "renamenx" || name === "copy") && !absent.includes(argv[2]!)) absent.push(argv[2]!);
    if (absent.length === 0) return;
    this.absent = absent;
    this.ctx.events = this.newKeyEvents;
  }

  /**
   * Before a write runs: its keys already expired at the entry's time are reclaimed and reported
   * `expired`, as Redis's lookupKeyWrite does (the command would reclaim or overwrite them anyway;
   * the state after the command is the same). The entry's time decides, so every member agrees.
   */
  private expireTouched(spec: CommandSpec<KvCtx>, argv: string[]): void {
    const last = spec.lastKey < 0 ? argv.length + spec.lastKey : spec.lastKey;
    const db = this.db;
    for (let i = spec.firstKey; i <= last && i < argv.length; i += spec.keyStep) {
      const key = argv[i]!;
      const at = db.expireAt(key);
      if (at === undefined || at > this.appliedMs || db.get(key, Number.NEGATIVE_INFINITY) === undefined) continue;
      db.getForWrite(key, this.appliedMs);
      this.events!.keyEvent(NOTIFY_EXPIRED, "expired", key);
    }
  }

  /**
   * Runs a read-only command at max(nowMs, appliedMs) without moving appliedMs: a read on any
   * replica hides a key whose expiry passed by the local clock (as Redis replicas do), yet the
   * local clock never enters the replicated state (were it to move appliedMs, a replica whose
   * clock runs ahead would run later entries at other times than the rest). A command without
   * the readonly flag is the caller's bug.
   */
  read(argv: string[], nowMs: number, out: ReplyWriter): CommandSpec<KvCtx> | undefined {
    const spec = lookupKvCommand(argv[0]!);
    if (spec === undefined) {
      out.error(unknownCommandError(argv));
      return undefined;
    }
    assert(spec.flags.includes("readonly"), `read() of the command '${spec.name}', which is not read-only`);
    if (!arityOk(spec.arity, argv.length)) {
      out.error(`ERR wrong number of arguments for '${spec.name}' command`);
      return undefined;
    }
    this.ctx.nowMs = nowMs > this.appliedMs ? nowMs : this.appliedMs;
    spec.exec(this.ctx, argv, out);
    return spec;
  }

  /**
   * apply(["SET", key, value], nowMs) for a value held by reference in the Db's lazy source
   * (recovery replaying a mapped log file): the same state, and no reply (a plain SET's is +OK).
   */
  applyPlainSetRef(key: string, ref: number, nowMs: number, index = this.db.rev + 1): void {
    if (nowMs > this.appliedMs) this.appliedMs = nowMs;
    this.db.rev = index;
    this.db.setRef(key, ref);
  }

  /**
   * Applies an expiration decided by a leader at nowMs: deletes each key only if its expiry is
   * still at or before nowMs, so a key written again since (without a TTL, or with a later one)
   * stays. Returns the count deleted.
   */
  applyExpire(keys: readonly string[], nowMs: number, index = this.db.rev + 1): number {
    if (nowMs > this.appliedMs) this.appliedMs = nowMs;
    this.db.rev = index;
    let deleted = 0;
    for (const k of keys) {
      if (!this.db.deleteIfExpired(k, nowMs)) continue;
      deleted++;
      this.events?.keyEvent(NOTIFY_EXPIRED, "expired", k);
    }
    return deleted;
  }

  /**
   * Reclaims expired keys as of the latest applied entry's time (never the local clock: a
   * replica whose clock runs ahead would otherwise delete keys the log still considers live).
   */
  sweepExpired(maxKeys: number): number {
    return this.db.sweepExpired(this.appliedMs, maxKeys);
  }

  /**
   * A copy-on-write snapshot of the keyspace as of now, in O(1), and the time it is taken at:
   * read it in chunks with `snapshot.next(n)` while entries keep being applied, and close it
   * if abandoned (one at a time). Entries keep their absolute expiry, expired ones included.
   */
  beginSnapshot(): { appliedMs: number; deleteFloor: number; tombstones: [string, number][]; snapshot: DbSnapshot; acl: string[] | null } {
    return { appliedMs: this.appliedMs, deleteFloor: this.db.deleteFloor, tombstones: this.db.tombstoneList(), snapshot: this.db.beginSnapshot(), acl: this.acl.replicated ? this.acl.lines() : null };
  }

  /**
   * The keyspace for a snapshot, with absolute expiry times, and the time it was taken at.
   * A live iterator: consume it before applying more entries (else use beginSnapshot).
   */
  snapshot(): { appliedMs: number; deleteFloor: number; tombstones: [string, number][]; entries: Iterable<DbEntry> } {
    return { appliedMs: this.appliedMs, deleteFloor: this.db.deleteFloor, tombstones: this.db.tombstoneList(), entries: this.db.entries() };
  }

  /**
   * Restores a snapshot taken at `index` (the revision of entries without one: an older format)
   * with its removals (Db.deleteFloor and Db.tombstones; an older format has none: its floor is `index`).
   */
  restore(appliedMs: number, entries: Iterable<DbEntry>, index = 0, deleteFloor = index, tombstones: Iterable<readonly [string, number]> = []): void {
    this.db.restore(entries, index, deleteFloor, tombstones);
    this.appliedMs = appliedMs;
  }

  /**
   * A digest of the live keyspace at nowMs, independent of insertion order and of how far the
   * sweep got: equal on replicas that applied the same entries. For tests and checks; O(n log n).
   */
  digest(nowMs = this.appliedMs): string {
    const live: [string, string, number | bigint][] = [];
    for (const [k, v, at] of this.db.entries()) {
      if (at !== undefined && at <= nowMs) continue;
      live.push([k, v, at ?? -1]);
    }
    live.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    // FNV-1a, 32-bit, twice with different offsets for 64 bits of digest.
    let h1 = 0x811c9dc5;
    let h2 = 0xcbf29ce4;
    const mix = (s: string) => {
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        h1 = Math.imul(h1 ^ c, 0x01000193);
        h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h2 >>> 15);
      }
      h1 = Math.imul(h1 ^ 0x100, 0x01000193); // separator outside the byte range
      h2 = Math.imul(h2 ^ 0x100, 0x01000193);
    };
    for (const [k, v, at] of live) {
      mix(k);
      mix(v);
      mix(String(at));
    }
    return `${live.length}:${(h1 >>> 0).toString(16).padStart(8, "0")}${(h2 >>> 0).toString(16).padStart(8, "0")}`;
  }
}
