// The keyspace: byte-string keys to values, with absolute expiry times kept only for keys that have one.
//
// Layout (see docs/decisions.md): `values: Map<string, Value>` holds every key; `expires:
// Map<string, number>` holds the absolute expiry (unix ms) of the keys that have a TTL. No
// object per key: a key costs one Map entry plus its two strings, and a TTL one more entry.
//
// Time is always an argument (`nowMs`, integer unix milliseconds). A key whose expiry is
// <= nowMs is absent to every read at once. Reads never mutate; write paths delete a
// logically expired key before touching it (so an old TTL never leaks into a new value),
// and `sweepExpired` reclaims the rest in bounded steps. Given the same calls with the same
// arguments, the state is the same: replaying a log rebuilds it.
import { assert } from "../errors.ts";
import { globMatch, globMatchesAll } from "./glob.ts";

/** A stored value. Only strings today; other types become other members of this union. */
export type Value = string;

/** One key in a snapshot: key, value, absolute expiry in unix ms (undefined: no TTL). */
export type DbEntry = readonly [key: string, value: Value, expireAtMs: number | undefined];

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
  private readonly values = new Map<string, Value>();
  private readonly expires = new Map<string, number>();

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

  constructor(opts: DbOptions = {}) {
    this.nextCursorId = Math.max(1, Math.floor(opts.scanCursorBase ?? 1));
    this.scanCursorsMax = opts.scanCursorsMax ?? SCAN_CURSORS_MAX;
  }

  // ---- reads (never mutate) ----

  /** The value of a live key, or undefined when missing or expired at nowMs. */
  get(key: string, nowMs: number): Value | undefined {
    const v = this.values.get(key);
    if (v === undefined || this.expires.size === 0) return v;
    const at = this.expires.get(key);
    return at !== undefined && at <= nowMs ? undefined : v;
  }

  has(key: string, nowMs: number): boolean {
    return this.get(key, nowMs) !== undefined;
  }

  /** The absolute expiry of a key in unix ms, or undefined when it has none. Does not check liveness. */
  expireAt(key: string): number | undefined {
    return this.expires.size === 0 ? undefined : this.expires.get(key);
  }

  /**
   * Keys held, including ones expired but not yet reclaimed (as Redis's DBSIZE): O(1).
   * The periodic sweep keeps the difference small.
   */
  dbsize(): number {
    return this.values.size;
  }

  /** Keys with a TTL held (expired or not). */
  expiresCount(): number {
    return this.expires.size;
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
    const v = this.values.get(key);
    if (v === undefined || this.expires.size === 0) return v;
    const at = this.expires.get(key);
    if (at !== undefined && at <= nowMs) {
      this.values.delete(key);
      this.expires.delete(key);
      return undefined;
    }
    return v;
  }

  /** Sets a value and clears any TTL (plain SET). */
  set(key: string, value: Value): void {
    this.values.set(key, value);
    if (this.expires.size !== 0) this.expires.delete(key);
  }

  /** Sets a value and keeps the key's TTL (INCR, APPEND, SET KEEPTTL). Callers use getForWrite first. */
  setKeepTtl(key: string, value: Value): void {
    this.values.set(key, value);
  }

  /** Sets a value expiring at expireAtMs; one already due at nowMs just removes the key. */
  setWithExpire(key: string, value: Value, expireAtMs: number, nowMs: number): void {
    if (expireAtMs <= nowMs) {
      this.delete(key);
      return;
    }
    this.values.set(key, value);
    this.expires.set(key, expireAtMs);
  }

  /** Sets the TTL of an existing key; one already due at nowMs deletes it. Returns false if the key is absent. */
  setExpire(key: string, expireAtMs: number, nowMs: number): boolean {
    if (this.getForWrite(key, nowMs) === undefined) return false;
    if (expireAtMs <= nowMs) this.delete(key);
    else this.expires.set(key, expireAtMs);
    return true;
  }

  /** Removes a key's TTL; true if it had one. */
  removeExpire(key: string): boolean {
    return this.expires.size !== 0 && this.expires.delete(key);
  }

  /** Removes a key whatever its state; true if it was held (live or not yet reclaimed). */
  delete(key: string): boolean {
    if (!this.values.delete(key)) return false;
    if (this.expires.size !== 0) this.expires.delete(key);
    return true;
  }

  /** Deletes a key only if it is expired at nowMs (an expiry decided elsewhere, e.g. by a leader). */
  deleteIfExpired(key: string, nowMs: number): boolean {
    const at = this.expires.get(key);
    if (at === undefined || at > nowMs) return false;
    this.values.delete(key);
    this.expires.delete(key);
    return true;
  }

  /**
   * Reclaims up to maxKeys keys expired at nowMs, looking at no more than
   * maxKeys * SWEEP_SAMPLES_PER_KEY TTL entries (and never more than there are), resuming
   * where the previous call stopped. Never touches keys without a TTL. Returns the count deleted.
   */
  sweepExpired(nowMs: number, maxKeys: number): number {
    let budget = Math.min(maxKeys * SWEEP_SAMPLES_PER_KEY, this.expires.size);
    let deleted = 0;
    let wrapped = false;
    while (budget > 0 && deleted < maxKeys) {
      if (this.sweepIt === undefined) this.sweepIt = this.expires.keys();
      const r = this.sweepIt.next();
      if (r.done) {
        this.sweepIt = undefined;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      budget--;
      const at = this.expires.get(r.value)!;
      if (at <= nowMs) {
        this.values.delete(r.value);
        this.expires.delete(r.value);
        deleted++;
      }
    }
    return deleted;
  }

  /** Removes every key. Open SCAN cursors stay valid (they see keys added later). */
  flush(): void {
    this.values.clear();
    this.expires.clear();
  }

  /** Checks the structure's invariants (for tests and debug builds): O(keys with a TTL). */
  assertInvariants(): void {
    for (const [k, at] of this.expires) {
      assert(this.values.has(k), `TTL entry for a missing key ${JSON.stringify(k)}`);
      assert(Number.isFinite(at), "expiry is not a finite number");
    }
    assert(this.cursors.size <= this.scanCursorsMax, "too many open SCAN cursors");
  }

  // ---- snapshots ----

  /** Every key held, with its absolute expiry; includes keys expired but not yet reclaimed. */
  *entries(): IterableIterator<DbEntry> {
    for (const [k, v] of this.values) yield [k, v, this.expires.size === 0 ? undefined : this.expires.get(k)];
  }

  /** Replaces the whole keyspace with a snapshot's entries. */
  restore(entries: Iterable<DbEntry>): void {
    this.flush();
    for (const e of entries) this.load(e[0], e[1], e[2]);
  }

  /** Adds one snapshot entry (streaming restore); expiry is absolute and kept even if past. */
  load(key: string, value: Value, expireAtMs: number | undefined): void {
    this.values.set(key, value);
    if (expireAtMs !== undefined) this.expires.set(key, expireAtMs);
    else if (this.expires.size !== 0) this.expires.delete(key);
  }
}
