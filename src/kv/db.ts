// The keyspace: byte-string keys to values, with absolute expiry times kept only for keys that have one.
//
// Layout (see docs/decisions.md): `values: Map<string, Value>` holds every key; `expires:
// Map<string, Expiry>` holds the absolute expiry (unix ms) of the keys that have a TTL. No
// object per key: a key costs one Map entry plus its two strings, and a TTL one more entry.
//
// Time is always an argument (`nowMs`, integer unix milliseconds). A key whose expiry is
// <= nowMs is absent to every read at once. Reads never mutate; write paths delete a
// logically expired key before touching it (so an old TTL never leaks into a new value),
// and `sweepExpired` reclaims the rest in bounded steps. Given the same calls with the same
// arguments, the state is the same: replaying a log rebuilds it.
//
// Snapshots (`beginSnapshot`) are copy-on-write views read in chunks while writes go on; see
// DbSnapshot. While one reads the live Maps, every mutation passes a write barrier that
// saves the key's state as of the snapshot's start (its preimage) before the first change,
// and a deleted key that was present at the start stays in `values` as a tombstone (kept
// in place so the snapshot's iterator still meets it; reads see it as expired). With no
// snapshot open the barrier is one null check per mutation; reads have none.
//
// Values restored from a snapshot file may be held as references into that file mapped in
// memory (`loadLazy`; a number in `values` instead of a string), so a restart does not copy
// every value into the heap before serving. A read turns such a value into a string and keeps
// the string (the one change a read makes; the logical state stays the same). The next
// snapshot, which reads every key anyway, converts the rest as it goes, and once it has read
// the whole keyspace the source is dropped: so the mapped file, which a later snapshot may
// delete, is never held past the second snapshot after a restart. (Converting in the
// background instead was measured: 2.4 s of CPU and pauses up to 107 ms for 1M keys, as
// each step's fresh strings land in the old Map and the collector rescans it.)
import { assert } from "../errors.ts";
import { globMatch, globMatchesAll } from "./glob.ts";

/** A stored value. Only strings today; other types become other members of this union. */
export type Value = string;

/**
 * Values restored without copying (see `Db.loadLazy`): `value(ref)` is the value a ref stands for.
 * Refs are non-negative integers; the source must stay valid and unchanged while any is held.
 */
export interface LazyValues {
  value(ref: number): Value;
}

/** What `values` holds per key: the value, or a ref into the Db's LazyValues. */
type Stored = Value | number;

/**
 * An absolute expiry in unix ms: any int64, as Redis keeps it. A number while it is a safe
 * integer (every time before the year 287396), a bigint beyond, so EXPIREAT and PEXPIRETIME
 * round-trip every value exactly. Comparisons with a number time work on either form.
 */
export type Expiry = number | bigint;

/** An int64 expiry in its canonical form (a number when safe, else a bigint). */
export function toExpiry(ms: bigint): Expiry {
  return ms <= MAX_SAFE && ms >= -MAX_SAFE ? Number(ms) : ms;
}
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * One key in a snapshot: key, value, absolute expiry in unix ms (undefined: no TTL), and its
 * revision (the log index of its last change; undefined when the source has none: see Db.load).
 */
export type DbEntry = readonly [key: string, value: Value, expireAtMs: Expiry | undefined, rev?: number];

/**
 * The expiry of a tombstone: a key deleted while a snapshot reads the live Maps, held (value
 * "") until the snapshot ends. Below every time, so every read sees the key as missing.
 */
const TOMB = -Infinity;
/** Preimage mark: the snapshot emitted this key already. */
const DONE = 0;
/** A key's state when the snapshot began (the entry to emit), or DONE. */
type Preimage = DbEntry | typeof DONE;

/** Removals held per key (Db.tombstones); older ones move Db.deleteFloor. */
export const TOMBSTONES_MAX = 256;
/** Longer keys get no tombstone (their removal moves Db.deleteFloor): the list stays small enough for a snapshot's header. */
export const TOMBSTONE_KEY_BYTES_MAX = 64;

/** Open SCAN cursors kept at most; the least recently used is dropped past this. */
export const SCAN_CURSORS_MAX = 1024;
/** sweepExpired looks at no more than this many TTL entries per key it may delete. */
export const SWEEP_SAMPLES_PER_KEY = 4;

export interface DbOptions {
  /**
   * First SCAN cursor id handed out (default 1). A server may pass a value that differs across
   * restarts so a cursor from an earlier process is unlikely to name a live iterator here.
   */
  scanCursorBase?: number;
  /** Open SCAN cursors kept at most (default SCAN_CURSORS_MAX). */
  scanCursorsMax?: number;
}

/** Options of one SCAN call, already validated. */
export interface ScanOptions {
  /** Keys to examine in this call (>= 1); fewer may be returned after filtering. */
  count: number;
  /** Glob, or null for all keys. */
  match: string | null;
  /** Type name (lower case), or null for any type. */
  type: string | null;
}

interface ScanState {
  readonly it: Iterator<string, undefined>;
  /**
   * Entries still to take: the key count when the scan started. Keys added later come after
   * every older entry in a Map's order, so stopping here still returns every key present
   * throughout, and a scan ends even while writers keep adding keys faster than it reads.
   */
  remaining: number;
  /** The key read ahead to know whether the iteration is over; re-checked before use. */
  ahead: IteratorResult<string, undefined>;
}

const SCAN_DONE: IteratorResult<string, undefined> = { done: true, value: undefined };

function scanAdvance(st: ScanState): IteratorResult<string, undefined> {
  if (st.remaining <= 0) return SCAN_DONE;
  st.remaining--;
  return st.it.next();
}

/** The type name TYPE reports for a value. */
export function typeName(v: Value): string {
  return typeof v === "string" ? "string" : "none";
}

export class Db {
  // Not readonly: a flush while a snapshot is open hands these to the snapshot and starts new ones.
  private values = new Map<string, Stored>();
  private expires = new Map<string, Expiry>();
  /**
   * Revisions: per held key (tombstones excepted), the log index of its last change, as etcd's
   * mod_revision. Every change stamps `rev`, which the state machine sets to the index of the
   * entry it applies; so revisions are the same on every replica and after every replay.
   */
  private revs = new Map<string, number>();
  /** The revision stamped on changes now: the index of the entry being applied. */
  rev = 0;
  /**
   * Removals (DEL, an expiration entry, a write meeting an expired key...) of the latest
   * TOMBSTONES_MAX keys removed, each key (of at most TOMBSTONE_KEY_BYTES_MAX bytes) with the
   * index of its last removal, oldest first. A removal not held here (evicted, a longer key,
   * FLUSHALL) moves deleteFloor instead. So a key absent now and absent at index w did not exist
   * in between unless its removal index, `tombstones.get(key) ?? deleteFloor`, is past w: exact
   * for recent removals, conservative past the bound. Replicated state, kept in snapshots.
   */
  private tombstones = new Map<string, number>();
  /** At least the index of every removal not in `tombstones` (see there). */
  deleteFloor = 0;

  /**
   * The write barrier: the preimages of the open snapshot while it reads these Maps, else
   * null. Every mutation tests it first; this test is all the barrier costs with no snapshot.
   */
  private cow: Map<string, Preimage> | null = null;
  /** Tombstones held in `values` (only while `cow` is set); not counted as keys. */
  private tombs = 0;
  /** The open snapshot (read from these Maps or from Maps a flush handed it), or null. */
  private snap: DbSnapshot | null = null;

  // SCAN: a live Map iterator per open cursor. Map iterators visit every entry present from
  // start to end exactly once, whatever is inserted or deleted meanwhile, so SCAN's guarantee
  // (every key present for the whole iteration is returned) holds; a budget of the starting
  // key count makes every scan end. Ids are single use: each call consumes its cursor and
  // returns a new one, so a retried call restarts instead of skipping keys.
  private readonly cursors = new Map<string, ScanState>();
  private nextCursorId: number;
  private readonly scanCursorsMax: number;

  /** Where the expiry sweep resumes: a live iterator over `expires`. */
  private sweepIt: Iterator<string, undefined> | undefined;
  /** Where findExpired resumes (apart from the sweep: one does not skip keys for the other). */
  private findIt: Iterator<string, undefined> | undefined;

  /** The source of the refs held in `values` (numbers), or null when there are none. */
  private lazy: LazyValues | null = null;
  /**
   * True from loadLazy to endLazyLoad: a restore is handing out refs (snapshot entries, then the
   * replayed log), so the source must stay even when no ref is held at the moment (after a
   * replayed FLUSHALL, say: the records after it hold refs again).
   */
  private lazyLoading = false;
  /** A ref was stored since loadLazy or the last flush (so one may still be held). */
  private lazyRefsStored = false;

  constructor(opts: DbOptions = {}) {
    this.nextCursorId = Math.max(1, Math.floor(opts.scanCursorBase ?? 1));
    this.scanCursorsMax = opts.scanCursorsMax ?? SCAN_CURSORS_MAX;
  }

  // ---- reads (never mutate) ----

  /** The value of a live key, or undefined when missing or expired at nowMs. */
  get(key: string, nowMs: number): Value | undefined {
    let v = this.values.get(key);
    if (typeof v === "number") v = this.materialize(key, v);
    if (v === undefined || this.expires.size === 0) return v;
    const at = this.expires.get(key);
    return at !== undefined && at <= nowMs ? undefined : v;
  }

  has(key: string, nowMs: number): boolean {
    return this.get(key, nowMs) !== undefined;
  }

  /**
   * The absolute expiry of a key in unix ms, or undefined when it has none. Does not check
   * liveness (a tombstone reports -Infinity): callers check the key is live first.
   */
  expireAt(key: string): Expiry | undefined {
    return this.expires.size === 0 ? undefined : this.expires.get(key);
  }

  /**
   * Keys held, including ones expired but not yet reclaimed (as Redis's DBSIZE): O(1).
   * The periodic sweep keeps the difference small.
   */
  dbsize(): number {
    return this.values.size - this.tombs;
  }

  /** Keys with a TTL held (expired or not). */
  expiresCount(): number {
    return this.expires.size - this.tombs;
  }

  /**
   * The average time to live in ms of the live keys with a TTL at nowMs (INFO's avg_ttl), over
   * the first sampleMax entries of the TTL table: exact when there are no more, else an estimate
   * from the keys that have held a TTL longest. 0 when none.
   */
  avgTtlMs(nowMs: number, sampleMax: number): number {
    let sum = 0;
    let live = 0;
    let seen = 0;
    for (const at of this.expires.values()) {
      if (seen++ >= sampleMax) break;
      if (at <= nowMs) continue; // expired, not yet reclaimed; or a tombstone
      sum += Number(at) - nowMs; // an int64 past 2^53 ms (a bigint) counts approximately
      live++;
    }
    return live === 0 ? 0 : Math.round(sum / live);
  }

  /** Live keys matching a glob, in insertion order. */
  keys(pattern: string, nowMs: number): string[] {
    const all = globMatchesAll(pattern);
    const out: string[] = [];
    for (const k of this.values.keys()) {
      if (!all && !globMatch(pattern, k)) continue;
      if (this.expires.size !== 0) {
        const at = this.expires.get(k);
        if (at !== undefined && at <= nowMs) continue;
      }
      out.push(k);
    }
    return out;
  }

  /**
   * One SCAN step. `cursor` is "0" to start or an id from an earlier call; an unknown id
   * (evicted, used already, from another process) restarts the iteration from the beginning,
   * which keeps the guarantee at the price of repeats. Pushes the keys found into `found` and
   * returns the next cursor, "0" when the iteration is complete.
   */
  scan(cursor: string, opts: ScanOptions, nowMs: number, found: string[]): string {
    let st = cursor === "0" || cursor === "" ? undefined : this.cursors.get(cursor);
    if (st !== undefined) this.cursors.delete(cursor);
    else {
      st = { it: this.values.keys(), remaining: this.values.size, ahead: SCAN_DONE };
      st.ahead = scanAdvance(st);
    }
    const all = opts.match === null || globMatchesAll(opts.match);
    for (let n = 0; n < opts.count && !st.ahead.done; n++) {
      const k = st.ahead.value;
      st.ahead = scanAdvance(st);
      const v = this.get(k, nowMs);
      if (v === undefined) continue;
      if (!all && !globMatch(opts.match!, k)) continue;
      if (opts.type !== null && typeName(v) !== opts.type) continue;
      found.push(k);
    }
    if (st.ahead.done) return "0";
    const id = String(this.nextCursorId++);
    if (this.nextCursorId > Number.MAX_SAFE_INTEGER) this.nextCursorId = 1;
    this.cursors.set(id, st);
    if (this.cursors.size > this.scanCursorsMax) {
      const oldest = this.cursors.keys().next();
      if (!oldest.done) this.cursors.delete(oldest.value);
    }
    return id;
  }

  /** Open SCAN cursors (for tests and INFO). */
  openCursors(): number {
    return this.cursors.size;
  }

  // ---- writes ----

  /**
   * For write paths: the value of a live key; a key expired at nowMs is deleted first and
   * reported missing, so nothing written next inherits its old TTL.
   */
  getForWrite(key: string, nowMs: number): Value | undefined {
    let v = this.values.get(key);
    if (typeof v === "number") v = this.materialize(key, v);
    if (v === undefined || this.expires.size === 0) return v;
    const at = this.expires.get(key);
    if (at !== undefined && at <= nowMs) {
      if (this.cow !== null) this.cowDelete(key);
      else {
        this.values.delete(key);
        this.expires.delete(key);
      }
      this.removed(key);
      return undefined;
    }
    return v;
  }

  /** The revision of a key live at nowMs, or 0 when it is missing or expired. */
  revOf(key: string, nowMs: number): number {
    if (!this.has(key, nowMs)) return 0;
    const r = this.revs.get(key);
    assert(r !== undefined, `live key ${JSON.stringify(key)} without a revision`);
    return r;
  }

  /**
   * True when `key` may have changed after index `w`, given `wasLive`, whether it was live at w
   * (WATCH's observation): a live key changed if it was absent or its revision is past w; an
   * absent one if it was live, or if any key was removed past w (see deleteFloor). Depends on
   * replicated state only, so every replica decides alike.
   */
  changedSince(key: string, wasLive: boolean, w: number, nowMs: number): boolean {
    const r = this.revOf(key, nowMs);
    if (r !== 0) return !wasLive || r > w;
    if (wasLive) return true;
    // Held but expired: its revision still tells whether it was written past w.
    const held = this.revs.get(key);
    return (this.tombstones.get(key) ?? this.deleteFloor) > w || (held !== undefined && held > w);
  }

  /** The removals held (see `tombstones`), oldest first: for a snapshot (at most TOMBSTONES_MAX). */
  tombstoneList(): [key: string, rev: number][] {
    return [...this.tombstones];
  }

  private stamp(key: string): void {
    this.revs.set(key, this.rev);
  }

  private removed(key: string): void {
    this.revs.delete(key);
    const tombs = this.tombstones;
    if (key.length > TOMBSTONE_KEY_BYTES_MAX) {
      this.deleteFloor = this.rev;
      return;
    }
    tombs.delete(key); // a key removed again moves to the end
    tombs.set(key, this.rev);
    if (tombs.size > TOMBSTONES_MAX) {
      const [k, r] = tombs.entries().next().value!;
      tombs.delete(k);
      if (r > this.deleteFloor) this.deleteFloor = r;
    }
  }

  /** Sets a value and clears any TTL (plain SET). */
  set(key: string, value: Value): void {
    if (this.cow !== null) this.cowWrite(key);
    this.values.set(key, value);
    this.stamp(key);
    if (this.expires.size !== 0) this.expires.delete(key);
  }

  /** Sets a value and keeps the key's TTL (INCR, APPEND, SET KEEPTTL). Callers use getForWrite first. */
  setKeepTtl(key: string, value: Value): void {
    if (this.cow !== null) this.cowWrite(key);
    this.values.set(key, value);
    this.stamp(key);
  }

  /** Sets a value expiring at expireAtMs; one already due at nowMs just removes the key. */
  setWithExpire(key: string, value: Value, expireAtMs: Expiry, nowMs: number): void {
    if (expireAtMs <= nowMs) {
      this.delete(key);
      return;
    }
    if (this.cow !== null) this.cowWrite(key);
    this.values.set(key, value);
    this.stamp(key);
    this.expires.set(key, expireAtMs);
  }

  /** Sets the TTL of an existing key; one already due at nowMs deletes it. Returns false if the key is absent. */
  setExpire(key: string, expireAtMs: Expiry, nowMs: number): boolean {
    if (this.getForWrite(key, nowMs) === undefined) return false;
    if (expireAtMs <= nowMs) this.delete(key);
    else {
      if (this.cow !== null) this.cowWrite(key);
      this.expires.set(key, expireAtMs);
      this.stamp(key);
    }
    return true;
  }

  /** Removes a key's TTL; true if it had one. */
  removeExpire(key: string): boolean {
    const had = this.cow !== null ? this.cowRemoveExpire(key) : this.expires.size !== 0 && this.expires.delete(key);
    if (had) this.stamp(key);
    return had;
  }

  /** Removes a key whatever its state; true if it was held (live or not yet reclaimed). */
  delete(key: string): boolean {
    if (this.cow !== null) {
      if (!this.cowDelete(key)) return false;
    } else {
      if (!this.values.delete(key)) return false;
      if (this.expires.size !== 0) this.expires.delete(key);
    }
    this.removed(key);
    return true;
  }

  /** Deletes a key only if it is expired at nowMs (an expiry decided elsewhere, e.g. by a leader). */
  deleteIfExpired(key: string, nowMs: number): boolean {
    const at = this.expires.get(key);
    if (at === undefined || at > nowMs) return false;
    if (this.cow !== null) {
      if (!this.cowDelete(key)) return false;
    } else {
      this.values.delete(key);
      this.expires.delete(key);
    }
    this.removed(key);
    return true;
  }

  /**
   * Reclaims up to maxKeys keys expired at nowMs, looking at no more than
   * maxKeys * SWEEP_SAMPLES_PER_KEY TTL entries (and never more than there are), resuming
   * where the previous call stopped. Never touches keys without a TTL. Returns the count deleted.
   */
  sweepExpired(nowMs: number, maxKeys: number): number {
    return this.walkExpired("sweepIt", nowMs, maxKeys, (key) => {
      if (this.cow === null) {
        this.values.delete(key);
        this.expires.delete(key);
      } else if (!this.cowDelete(key)) return false; // a tombstone, not a key
      this.removed(key);
      return true;
    });
  }

  /**
   * Up to maxKeys keys expired at nowMs, left in place (a leader choosing the expirations to
   * propose), with the sweep's budget, resuming where the previous call stopped.
   */
  findExpired(nowMs: number, maxKeys: number): string[] {
    const found: string[] = [];
    this.walkExpired("findIt", nowMs, maxKeys, (key, at) => at !== TOMB && found.push(key) > 0);
    return found;
  }

  /**
   * The walk of sweepExpired and findExpired: from where the walk with this cursor stopped
   * (wrapping once), over at most maxKeys * SWEEP_SAMPLES_PER_KEY TTL entries, calling take for
   * each entry whose time is at or before nowMs until maxKeys were taken. Returns the count taken.
   */
  private walkExpired(cursor: "sweepIt" | "findIt", nowMs: number, maxKeys: number, take: (key: string, at: Expiry) => boolean): number {
    let budget = Math.min(maxKeys * SWEEP_SAMPLES_PER_KEY, this.expires.size);
    let taken = 0;
    let wrapped = false;
    while (budget > 0 && taken < maxKeys) {
      const it = (this[cursor] ??= this.expires.keys());
      const r = it.next();
      if (r.done) {
        this[cursor] = undefined;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      budget--;
      const at = this.expires.get(r.value);
      if (at !== undefined && at <= nowMs && take(r.value, at)) taken++;
    }
    return taken;
  }

  /**
   * Removes every key. Open SCAN cursors stay valid (they see keys added later), except
   * during a snapshot: O(1) then, the snapshot keeps the old Maps (which nothing changes
   * any more) and new ones start empty; open cursors finish over the old keys.
   */
  flush(): void {
    this.deleteFloor = this.rev;
    this.tombstones.clear();
    if (this.cow !== null) {
      this.values = new Map();
      this.expires = new Map();
      this.revs = new Map();
      this.dropLazy(); // the snapshot keeps its own reference to the source (none opens while loading)
      this.cow = null;
      this.tombs = 0;
      this.sweepIt = undefined;
      this.findIt = undefined;
      return;
    }
    this.values.clear();
    this.expires.clear();
    this.revs.clear();
    this.dropLazy();
  }

  /** Checks the structure's invariants (for tests and debug builds): O(keys with a TTL). */
  assertInvariants(): void {
    let tombs = 0;
    for (const [k, at] of this.expires) {
      assert(this.values.has(k), `TTL entry for a missing key ${JSON.stringify(k)}`);
      if (at === TOMB) {
        tombs++;
        assert(this.cow !== null && this.cow.has(k), `tombstone without a snapshot preimage: ${JSON.stringify(k)}`);
        assert(this.values.get(k) === "", "a tombstone holds a value");
      } else assert(typeof at === "bigint" ? at > MAX_SAFE || at < -MAX_SAFE : Number.isSafeInteger(at), "expiry is not an int64 in canonical form");
    }
    assert(tombs === this.tombs, `tombstone count ${this.tombs}, found ${tombs}`);
    assert(this.revs.size === this.values.size - tombs, `${this.revs.size} revisions for ${this.values.size - tombs} keys`);
    assert(this.cow === null || (this.snap !== null && this.cow === this.snap.preimages), "write barrier without its snapshot");
    assert(this.cursors.size <= this.scanCursorsMax, "too many open SCAN cursors");
  }

  // ---- snapshots ----

  /** Every key held, with its absolute expiry; includes keys expired but not yet reclaimed. */
  *entries(): IterableIterator<DbEntry> {
    for (const [k, v] of this.values) {
      const at = this.expires.size === 0 ? undefined : this.expires.get(k);
      if (at !== TOMB) yield [k, typeof v === "number" ? this.lazy!.value(v) : v, at, this.revs.get(k)];
    }
  }

  /**
   * Replaces the whole keyspace with a snapshot's entries, as of index `rev` with `deleteFloor`
   * (an entry without a revision, from an older format, gets `rev`: changed at most then).
   */
  restore(entries: Iterable<DbEntry>, rev = this.rev, deleteFloor = rev, tombstones: Iterable<readonly [string, number]> = []): void {
    this.flush();
    this.rev = rev;
    this.setRemovals(deleteFloor, tombstones);
    for (const e of entries) this.load(e[0], e[1], e[2], e[3]);
  }

  /** Sets the removals a snapshot holds (deleteFloor and tombstones, see there), before loading its keys. */
  setRemovals(deleteFloor: number, tombstones: Iterable<readonly [string, number]>): void {
    this.deleteFloor = deleteFloor;
    this.tombstones.clear();
    for (const [k, r] of tombstones) {
      assert(k.length <= TOMBSTONE_KEY_BYTES_MAX && this.tombstones.size < TOMBSTONES_MAX, "a snapshot's tombstones are past their bounds");
      this.tombstones.set(k, r);
    }
  }

  /**
   * Adds one snapshot entry (streaming restore); expiry is absolute and kept even if past.
   * A number value is a ref into the source given to loadLazy. `rev`: the key's revision
   * (default: the current one, `this.rev`).
   */
  load(key: string, value: Value | number, expireAtMs: Expiry | undefined, rev: number = this.rev): void {
    if (typeof value === "number") this.storedRef();
    if (this.cow !== null) this.cowWrite(key);
    this.values.set(key, value);
    this.revs.set(key, rev);
    if (expireAtMs !== undefined) this.expires.set(key, expireAtMs);
    else if (this.expires.size !== 0) this.expires.delete(key);
  }

  /**
   * Starts a restore whose values stay in `source` until used: pass refs (numbers) as values
   * to `load` and `setRef`, along with any other write (a replayed log), then call endLazyLoad.
   * Only on an empty Db with no snapshot open, one source at a time.
   */
  loadLazy(source: LazyValues): void {
    assert(this.values.size === 0 && this.cow === null && this.lazy === null, "lazy values need an empty Db");
    this.lazy = source;
    this.lazyLoading = true;
    this.lazyRefsStored = false;
  }

  /** set() with a value held by reference in the source given to loadLazy (recovery's replay). */
  setRef(key: string, ref: number): void {
    this.storedRef();
    if (this.cow !== null) this.cowWrite(key);
    this.values.set(key, ref);
    this.stamp(key);
    if (this.expires.size !== 0) this.expires.delete(key);
  }

  /**
   * Ends the restore begun by loadLazy: no more refs come. The source goes at once when no ref
   * was stored since the last flush; otherwise the next complete snapshot or a flush lets it go.
   */
  endLazyLoad(): void {
    assert(this.lazyLoading, "endLazyLoad without loadLazy");
    this.lazyLoading = false;
    if (!this.lazyRefsStored) this.dropLazy();
  }

  private storedRef(): void {
    assert(this.lazyLoading && this.lazy !== null, "a value by reference outside a lazy load");
    this.lazyRefsStored = true;
  }

  /** True while values restored by reference may still be held (see loadLazy). */
  hasLazyValues(): boolean {
    return this.lazy !== null;
  }

  /** Values held by reference now (for tests): O(keys). */
  lazyRefCount(): number {
    let n = 0;
    for (const v of this.values.values()) if (typeof v === "number") n++;
    assert(n === 0 || this.lazy !== null, "values held by reference without a source");
    return n;
  }

  private materialize(key: string, ref: number): Value {
    const s = this.lazy!.value(ref);
    this.values.set(key, s);
    return s;
  }

  /**
   * No ref is held any more (everything flushed, or a complete snapshot converted them all). The
   * source goes, unless a restore is still loading: refs may come after a replayed flush.
   */
  private dropLazy(): void {
    this.lazyRefsStored = false;
    if (!this.lazyLoading) this.lazy = null;
  }

  // ---- copy-on-write snapshots ----

  /**
   * Starts a snapshot of the keyspace as it is now, in O(1): read it with `next` while
   * writes go on, and `close` it when done (it closes itself at the end). One at a time.
   */
  beginSnapshot(): DbSnapshot {
    assert(this.snap === null, "a snapshot is already open");
    assert(!this.lazyLoading, "a snapshot while a lazy load is still handing out refs");
    const pre = new Map<string, Preimage>();
    const snap = new DbSnapshot(
      this.values,
      this.expires,
      this.revs,
      this.lazy,
      pre,
      (complete) => this.endSnapshot(snap, complete),
      (k) => this.reclaimPassed(k, pre),
    );
    this.snap = snap;
    this.cow = pre;
    return snap;
  }

  /** Deleted keys held as tombstones for the open snapshot (for tests and INFO). */
  tombstoneCount(): number {
    return this.tombs;
  }

  /** True while a snapshot is open (not yet done or closed). */
  snapshotOpen(): boolean {
    return this.snap !== null;
  }

  private endSnapshot(snap: DbSnapshot, complete: boolean): void {
    if (this.snap !== snap) return;
    this.snap = null;
    const pre = this.cow;
    if (pre === null) return; // a flush handed the snapshot its own Maps: nothing here to undo
    this.cow = null;
    // It read every key held at its start and stored each value it found by reference as a
    // string; keys added since hold strings: no refs are left.
    if (complete) this.dropLazy();
    // Tombstones left (keys deleted behind the iterator) all have a preimage: reclaim them,
    // O(keys changed during the snapshot).
    if (this.tombs !== 0) {
      for (const k of pre.keys()) {
        if (this.expires.get(k) === TOMB) {
          this.values.delete(k);
          this.expires.delete(k);
        }
      }
      this.tombs = 0;
    }
  }

  /** The snapshot emitted a changed key: a tombstone it passed can go now (set again, it goes to the end). */
  private reclaimPassed(key: string, pre: Map<string, Preimage>): void {
    if (this.cow === pre && this.tombs !== 0 && this.expires.get(key) === TOMB) {
      this.values.delete(key);
      this.expires.delete(key);
      this.tombs--;
    }
  }

  // The barrier's slow paths, taken only while `cow` is set.

  /**
   * Saves key's state as of the snapshot's start before its first change. A key not held
   * now and never saved was not held at the start either (a deleted one keeps its preimage):
   * nothing to save, so adding keys costs the snapshot no memory. (A key added during the
   * snapshot and changed again gets a useless preimage: it sits after every key of the
   * start in the Map's order, where the snapshot's iterator never goes.)
   */
  private cowSave(key: string, pre: Map<string, Preimage>): Preimage | undefined {
    let p = pre.get(key);
    if (p === undefined) {
      let v = this.values.get(key);
      if (v === undefined) return undefined;
      if (typeof v === "number") v = this.lazy!.value(v);
      p = [key, v, this.expires.size === 0 ? undefined : this.expires.get(key), this.revs.get(key)];
      pre.set(key, p);
    }
    return p;
  }

  /** Before setting key's value or expiry: saves its preimage and turns a tombstone back into a key without TTL. */
  private cowWrite(key: string): void {
    this.cowSave(key, this.cow!);
    if (this.tombs !== 0 && this.expires.get(key) === TOMB) {
      this.expires.delete(key);
      this.tombs--;
    }
  }

  /**
   * delete() during a snapshot. A key the snapshot may still have to emit stays in place as a
   * tombstone: deleting it from the Map and setting it again would move it to the end, where
   * the iterator would meet it a second time, and the barrier cannot tell whether the
   * iterator passed it already. Keys the snapshot emitted already are really deleted: set
   * again, they go after every key of the start, where the iterator never goes.
   */
  private cowDelete(key: string): boolean {
    const v = this.values.get(key);
    if (v === undefined) return false;
    const at = this.expires.size === 0 ? undefined : this.expires.get(key);
    if (at === TOMB) return false;
    if (this.cowSave(key, this.cow!) === DONE) {
      this.values.delete(key);
      if (at !== undefined) this.expires.delete(key);
    } else {
      this.values.set(key, "");
      this.expires.set(key, TOMB);
      this.tombs++;
    }
    return true;
  }

  private cowRemoveExpire(key: string): boolean {
    const at = this.expires.size === 0 ? undefined : this.expires.get(key);
    if (at === undefined || at === TOMB) return false;
    this.cowSave(key, this.cow!);
    return this.expires.delete(key);
  }
}

/**
 * A copy-on-write view of a Db's keyspace as of `Db.beginSnapshot`, read in chunks while
 * writes go on. Every key held at the start (expired but not yet reclaimed ones included,
 * with their stored expiry, as `entries()` gives them) comes out exactly once; keys added
 * later never do.
 *
 * How: a live iterator over the Db's `values` Map. Keys held at the start come first in a
 * Map's order and, until the iterator passes them, never move or leave (a deleted one stays
 * as a tombstone, see Db.cowDelete); keys added later, or deleted after being emitted and
 * set again, go after all of them. So the first `entryCountAtStart` entries the iterator
 * meets are exactly the keys of the start, each once, and it stops there: it never looks at
 * a later key, and it ends even while writers keep adding keys. At a key with a preimage
 * (changed since the start) it emits the preimage, else the unchanged current entry.
 * Memory: one preimage per distinct key changed during the snapshot (at most), nothing per
 * key read or added.
 */
export class DbSnapshot {
  /** Entries this snapshot yields in all: the keys held when it began. */
  readonly entryCountAtStart: number;
  private emitted = 0;
  private values: Map<string, Stored> | null;
  private expires: Map<string, Expiry> | null;
  private revs: Map<string, number> | null;
  private lazy: LazyValues | null;
  private it: Iterator<[string, Stored]> | null;
  private onClose: ((complete: boolean) => void) | null;

  /** Internal: made by Db.beginSnapshot. `preimages` is also the Db's write barrier map. */
  constructor(
    values: Map<string, Stored>,
    expires: Map<string, Expiry>,
    revs: Map<string, number>,
    lazy: LazyValues | null,
    readonly preimages: Map<string, Preimage>,
    onClose: (complete: boolean) => void,
    private readonly passedChanged: (key: string) => void,
  ) {
    this.values = values;
    this.expires = expires;
    this.revs = revs;
    this.lazy = lazy;
    this.entryCountAtStart = values.size;
    this.it = values.entries();
    this.onClose = onClose;
  }

  /** Entries emitted so far. */
  get emittedCount(): number {
    return this.emitted;
  }

  /** Preimages held (keys changed during the snapshot and not emitted yet, plus markers). */
  get preimageCount(): number {
    return this.preimages.size;
  }

  /** True until the last entry was returned or close() was called. */
  get open(): boolean {
    return this.it !== null;
  }

  /**
   * Up to maxEntries (>= 1) next entries as of the start, or null when all were returned.
   * The snapshot closes itself (and the write barrier goes off) with the last chunk.
   */
  next(maxEntries: number): DbEntry[] | null {
    assert(Number.isInteger(maxEntries) && maxEntries >= 1, "snapshot chunk size must be an integer >= 1");
    const it = this.it;
    if (it === null) return null;
    const pre = this.preimages;
    const exps = this.expires!;
    const out: DbEntry[] = [];
    const total = this.entryCountAtStart;
    while (out.length < maxEntries && this.emitted < total) {
      const r = it.next();
      if (r.done) assert(false, `snapshot iterator ended after ${this.emitted} of ${total} entries`);
      const k = r.value[0];
      let v = r.value[1];
      if (typeof v === "number") {
        // A value still held by reference (Db.loadLazy): stored as a string from now on, so
        // once this snapshot has read every key the source can go. Setting an existing key
        // keeps its place in the Map, so no iterator is disturbed.
        v = this.lazy!.value(v);
        this.values!.set(k, v);
      }
      const p = pre.size === 0 ? undefined : pre.get(k);
      if (p === undefined) out.push([k, v, exps.size === 0 ? undefined : exps.get(k), this.revs!.get(k)]);
      else {
        if (p === DONE) assert(false, `snapshot met ${JSON.stringify(k)} twice`);
        out.push(p);
        pre.set(k, DONE); // frees the preimage; the mark lets a later delete really delete
        this.passedChanged(k);
      }
      this.emitted++;
    }
    if (this.emitted === total) this.close();
    return out.length === 0 ? null : out;
  }

  /** Ends the snapshot (idempotent): the Db's barrier goes off and tombstones are reclaimed. */
  close(): void {
    const onClose = this.onClose;
    if (onClose === null) return;
    this.onClose = null;
    this.it = null;
    onClose(this.emitted === this.entryCountAtStart);
    this.preimages.clear();
    this.values = null;
    this.expires = null;
    this.revs = null;
    this.lazy = null;
  }
}
