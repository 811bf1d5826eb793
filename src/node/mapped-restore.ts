// A restart without copying every value into the heap (as the single-node log restored): the
// snapshot file and the log segments the node applies at start stay mapped in memory, and the
// keyspace holds references into them (Db.loadLazy, src/node/mapped-values.ts). The snapshot's
// values are refs to its entries; a committed entry that is a plain `SET key value` applied at start
// keeps its value in the segment. Reads and the next snapshot copy them (see src/kv/db.ts).
//
// The restart's part ends (Db.endLazyLoad) once the entries committed before the restart are
// applied, or earlier when the node restores another snapshot or takes one.
import { assert } from "../errors.ts";
import type { Entry } from "../raft/types.ts";
import { decodePlainSet, plainSet } from "../resp/request-parser.ts";
import type { MappedSnapshot } from "../storage/index.ts";
import type { KvRaftStateMachine } from "./kv-state-machine.ts";
import { MappedValues } from "./mapped-values.ts";

const TWO_32 = 2 ** 32;
/** Entry payload: [u8 version 1][u8 kind 1: command][u64 timeMs][u8 proto][RESP command] (kv-payload.ts). */
const COMMAND_HEAD_BYTES = 11;

export class MappedRestore {
  private readonly source = new MappedValues();
  /** The mapped segments, by the memory their entries' payloads view. */
  private readonly segments = new Map<ArrayBufferLike, Buffer>();
  private ended = false;

  /**
   * `through`: the last index committed before the restart (the durable commit); entries up to it
   * are applied before the node serves.
   */
  constructor(
    private readonly sm: KvRaftStateMachine,
    readonly through: number,
  ) {
    sm.kv.db.loadLazy(this.source);
  }

  /** True until end(): refs may still be handed out. */
  get active(): boolean {
    return !this.ended;
  }

  /**
   * Restores the mapped snapshot file `mapped` (`count` entries, at `index`, taken at `appliedMs`,
   * with its removals: Db.deleteFloor and Db.tombstones) by reference. An entry without a revision (an
   * older format) gets `index`.
   */
  restoreSnapshot(index: number, appliedMs: number, mapped: MappedSnapshot, deleteFloor = index, tombstones: Iterable<readonly [string, number]> = []): number {
    assert(!this.ended && this.sm.kv.db.dbsize() === 0, "a mapped restore into a used keyspace");
    const db = this.sm.kv.db;
    db.rev = index;
    db.setRemovals(deleteFloor, tombstones);
    const source = this.source;
    source.setSnapshot(mapped.values);
    let n = 0;
    mapped.forEach((k, offset, at, rev) => {
      const ref = source.snapshotRef(offset);
      db.load(k, ref >= 0 ? ref : mapped.values.value(offset), at, rev ?? index);
      n++;
    });
    this.sm.kv.appliedMs = appliedMs;
    this.sm.applied = index;
    this.sm.restoredAt(index);
    return n;
  }

  /** The segments `entries` came from (views of them), as given by Wal.mappedEntries. */
  noteSegments(maps: readonly Buffer[]): void {
    for (const m of maps) if (!this.segments.has(m.buffer)) this.segments.set(m.buffer, m);
  }

  /**
   * Applies `e` keeping its value in the mapped segment when it is a plain SET committed before
   * the restart, viewed in a mapped segment; returns false (nothing done) otherwise: apply it as usual.
   */
  applyMapped(e: Entry): boolean {
    if (this.ended || e.type !== "normal" || e.index > this.through) return false;
    const d = e.data;
    const seg = this.segments.get(d.buffer);
    if (seg === undefined || d.length <= COMMAND_HEAD_BYTES || d[0] !== 1 || d[1] !== 1 || (d[10] !== 2 && d[10] !== 3)) return false;
    const hi = d[6]! | (d[7]! << 8) | (d[8]! << 16) | (d[9]! << 24);
    if (hi < 0 || hi >= 2 ** 21) return false; // past 2^53: the usual path names the damage
    const timeMs = (d[2]! | (d[3]! << 8) | (d[4]! << 16)) + d[5]! * 2 ** 24 + hi * TWO_32;
    const start = d.byteOffset - seg.byteOffset;
    if (!decodePlainSet(seg, start + COMMAND_HEAD_BYTES, start + d.length)) return false;
    const ref = this.source.segmentRef(seg, plainSet.valueAt);
    if (ref < 0) return false;
    if (e.index !== this.sm.applied + 1) assert(false, `kv applied ${e.index} after ${this.sm.applied} (applied moves by one)`);
    this.sm.applied = e.index;
    const key = seg.latin1Slice(plainSet.keyStart, plainSet.keyEnd);
    this.sm.kv.applyPlainSetRef(key, ref, timeMs, e.index);
    this.sm.mappedSet(key, this.source, ref);
    return true;
  }

  /** No more refs: the values already held by reference stay until read or snapshotted. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.segments.clear();
    this.sm.kv.db.endLazyLoad();
  }
}
