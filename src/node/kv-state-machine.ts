// The KV store as the runtime's StateMachine: applies committed entries (commands, expirations) to a KvStateMachine.
import { assert } from "../errors.ts";
import { KvStateMachine } from "../kv/fsm.ts";
import type { DbEntry, DbOptions } from "../kv/db.ts";
import type { Entry, Snapshot } from "../raft/types.ts";
import { ReplyBuffer, type ReplyWriter } from "../resp/encode.ts";
import { decodeKvImage, decodeKvPayload, encodeKvImage, EXPIRE_BATCH_KEYS_MAX, KvImageError, KvPayloadError } from "./kv-payload.ts";
import type { StateMachine } from "./state-machine.ts";
import type { ChangeSink, ValueSource } from "./change-events.ts";
import type { KvEvents } from "../kv/events.ts";
import { NOTIFY_STRING } from "../kv/events.ts";

/** What a proposer gets back: a command's RESP reply; nothing for no-op, membership and expiration entries. */
export type KvApplyResult = Uint8Array | undefined;

/** Reply buffer to start with: most replies are a few bytes; it grows for a large one and is reused. */
const REPLY_INITIAL_BYTES = 256;
/** A reply buffer grown past this (a large GET) is dropped after use rather than held. */
const REPLY_KEEP_BYTES_MAX = 64 * 1024;
/** Command names cached at most (the table has far fewer; odd spellings must not grow it without end). */
const NAMES_CACHED_MAX = 1024;

/**
 * A committed entry or a snapshot this node cannot read. Every member holds the same bytes, so no
 * member can apply past it: the runtime stops the node (onFatal), as replay does on a damaged record.
 */
export class KvEntryError extends Error {
  override name = "KvEntryError";
  constructor(
    readonly index: number,
    readonly reason: KvPayloadError | KvImageError,
  ) {
    super(`log index ${index}: ${reason.message}`);
  }
}

export class KvRaftStateMachine implements StateMachine<KvApplyResult> {
  readonly kv: KvStateMachine;
  /** Index of the last entry applied (or of the snapshot restored). */
  applied = 0;
  /** Keys deleted by expiration entries (INFO's expired_keys). */
  keysExpired = 0;
  private out = new ReplyBuffer(REPLY_INITIAL_BYTES);
  /** Command names decoded so far: a log of SETs shares one "SET" string. */
  private readonly names = new Map<number, string>();

  constructor(opts: DbOptions = {}) {
    this.kv = new KvStateMachine(opts);
  }

  /** Hears every change with the index of the entry that made it (live, and replaying at start); null: nobody. */
  private sink: ChangeSink | null = null;
  private readonly events: KvEvents = ((sm: KvRaftStateMachine): KvEvents => ({
    get newKeys(): boolean {
      return sm.sink!.newKeys;
    },
    keyEvent: (cls, event, key) => sm.sink!.keyEvent(sm.applied, cls, event, key, sm.values),
    publish: (channel, message, sharded) => sm.sink!.publish(sm.applied, channel, message, sharded),
  }))(this);

  setChangeSink(sink: ChangeSink | null): void {
    this.sink = sink;
    this.kv.events = sink === null ? null : this.events;
  }

  /** The keyspace as it is right after a change (expired keys included: the change decides). */
  private readonly values: ValueSource = { valueOf: (key) => this.kv.db.get(key, Number.NEGATIVE_INFINITY) };
  private mapped: { source: { value(ref: number): string }; ref: number } = { source: { value: () => "" }, ref: 0 };
  private readonly mappedValues: ValueSource = { valueOf: () => this.mapped.source.value(this.mapped.ref) };

  /** A plain SET applied by reference at start (MappedRestore): its value is copied out of `source` only if wanted. */
  mappedSet(key: string, source: { value(ref: number): string }, ref: number): void {
    if (this.sink === null) return;
    this.mapped.source = source;
    this.mapped.ref = ref;
    this.sink.keyEvent(this.applied, NOTIFY_STRING, "set", key, this.mappedValues);
  }

  /** The keyspace was replaced by a snapshot's at `index`: changes before it are not reported. */
  restoredAt(index: number): void {
    this.sink?.restored(index);
  }

  /**
   * Normal entries: a command runs at the leader's time and its reply (in the proposing client's
   * protocol) is returned; an expiration deletes its keys still expired at the leader's time.
   * Empty no-op and conf-change entries only move the applied index.
   */
  apply(e: Entry): KvApplyResult {
    const out = this.out;
    if (!this.applyInto(e, out)) return undefined;
    const reply = Buffer.from(out.view()); // a copy: the buffer is reused by the next entry
    if (out.buf.length > REPLY_KEEP_BYTES_MAX) this.out = new ReplyBuffer(REPLY_INITIAL_BYTES);
    return reply;
  }

  /**
   * Applies `e` writing a command's reply to `out` (after `out.proto` is set to the proposer's
   * protocol). Returns true when a command ran (a reply was written), false for other entries.
   */
  applyInto(e: Entry, out: ReplyBuffer): boolean {
    if (e.index !== this.applied + 1) assert(false, `kv applied ${e.index} after ${this.applied} (applied moves by one)`);
    if (e.type !== "normal" || e.data.length === 0) {
      this.applied = e.index;
      return false;
    }
    if (this.names.size > NAMES_CACHED_MAX) this.names.clear();
    let p;
    try {
      p = decodeKvPayload(e.data, this.names);
    } catch (err) {
      if (err instanceof KvPayloadError) throw new KvEntryError(e.index, err);
      throw err;
    }
    this.applied = e.index;
    if (p.kind === "expire") {
      this.keysExpired += this.kv.applyExpire(p.keys, p.timeMs, e.index);
      return false;
    }
    if (out instanceof ReplyBuffer && out === this.out) out.reset();
    out.proto = p.proto;
    this.kv.apply(p.argv, p.timeMs, out, e.index);
    return true;
  }

  /**
   * Applies the command entry at `index` whose payload encodes exactly (argv, timeMs, proto): the
   * proposer's own entry, run from its arguments rather than decoded back from its bytes.
   */
  applyCommand(index: number, argv: string[], timeMs: number, proto: 2 | 3, out: ReplyBuffer): void {
    if (index !== this.applied + 1) assert(false, `kv applied ${index} after ${this.applied} (applied moves by one)`);
    this.applied = index;
    out.proto = proto;
    this.kv.apply(argv, timeMs, out, index);
  }

  /**
   * A read-only command on local state (after a ReadIndex round), at the local clock `wallMs`:
   * keys whose expiry passed are absent, and the replicated state (the applied time) is unchanged.
   */
  read(argv: string[], wallMs: number, out: ReplyWriter): void {
    this.kv.read(argv, wallMs, out);
  }

  /**
   * For the leader: up to maxKeys keys it holds expired at nowMs (its clock, never below the
   * applied time), to propose as one expiration entry (encodeExpireEntry(keys, nowMs)). Keys are
   * left in place: every member deletes them when that entry applies. Successive calls resume
   * where the last stopped; a key proposed twice is harmless (the second finds it gone).
   */
  findExpired(nowMs: number, maxKeys: number = EXPIRE_BATCH_KEYS_MAX): string[] {
    assert(maxKeys > 0 && maxKeys <= EXPIRE_BATCH_KEYS_MAX, `findExpired of ${maxKeys} keys (1..${EXPIRE_BATCH_KEYS_MAX})`);
    return this.kv.db.findExpired(Math.max(nowMs, this.kv.appliedMs), maxKeys);
  }

  /** The keyspace with absolute expiries and the applied time (kv-payload.ts's image). */
  snapshot(): Uint8Array {
    return encodeKvImage(this.kv.appliedMs, () => this.kv.db.entries(), this.kv.db.deleteFloor, this.kv.db.tombstoneList());
  }

  /**
   * Restores from a snapshot's entries streamed from its file (no image in memory): `count` keys
   * as of `index`, taken at `appliedMs`, with its removals (Db.deleteFloor and Db.tombstones).
   */
  restoreEntries(index: number, appliedMs: number, entries: Iterable<DbEntry>, count: number, deleteFloor = index, tombstones: Iterable<readonly [string, number]> = []): void {
    this.kv.restore(appliedMs, entries, index, deleteFloor, tombstones);
    const held = this.kv.db.dbsize();
    if (held !== count) throw new KvEntryError(index, new KvImageError(`snapshot of ${count} entries holds ${held} distinct keys`));
    this.applied = index;
    this.restoredAt(index);
  }

  restore(s: Snapshot): void {
    let image;
    try {
      image = decodeKvImage(s.data);
    } catch (err) {
      if (err instanceof KvImageError) throw new KvEntryError(s.meta.index, err);
      throw err;
    }
    this.kv.restore(image.appliedMs, image.entries, s.meta.index, image.deleteFloor ?? s.meta.index, image.tombstones);
    // An in-memory image (the simulator's) carries no ACL users: the configured ones, as a snapshot file without its ACL section.
    this.kv.acl.restoreConfigured();
    const held = this.kv.db.dbsize();
    if (held !== image.count) throw new KvEntryError(s.meta.index, new KvImageError(`snapshot image of ${image.count} entries holds ${held} distinct keys`));
    this.applied = s.meta.index;
    this.restoredAt(s.meta.index);
  }
}
