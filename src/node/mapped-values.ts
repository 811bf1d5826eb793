// The values a restart leaves in the files it read (Db.loadLazy): the newest snapshot and the
// log segments replayed after it, each mapped into memory. A ref is slot * 2^40 + offset: slot 0
// is the snapshot (offset: its entry), slot n > 0 the n-th mapped segment (offset: the value's
// bulk string in a plain SET record). Holding this object keeps the mappings alive; the Db drops
// it once the next snapshot has copied every value (see src/kv/db.ts).
import { assert } from "../errors.ts";
import type { LazyValues } from "../kv/db.ts";
import { bulkAt } from "../resp/request-parser.ts";

const SLOT = 2 ** 40;
/** Mapped segments at most (refs must stay below 2^53); past this, values are copied. */
export const MAPPED_SEGMENTS_MAX = 2 ** 53 / SLOT - 1;

export class MappedValues implements LazyValues {
  private snapshot: LazyValues | null = null;
  private readonly segments: Buffer[] = [];
  private last: Buffer | null = null;

  /** Resolves slot 0 (snapshot refs) through `values`. */
  setSnapshot(values: LazyValues): void {
    assert(this.snapshot === null, "one snapshot per restart");
    this.snapshot = values;
  }

  /** The ref for an entry at `offset` of the snapshot, or -1 when the offset is too large. */
  snapshotRef(offset: number): number {
    if (offset >= SLOT) return -1;
    return offset;
  }

  /** The ref of the bulk string at `offset` of a mapped segment, or -1 when no slot is left. */
  segmentRef(segment: Buffer, offset: number): number {
    if (segment !== this.last) {
      if (this.segments.length >= MAPPED_SEGMENTS_MAX) return -1;
      this.segments.push(segment);
      this.last = segment;
    }
    assert(offset < SLOT && offset < segment.length, "segment offset out of range");
    return this.segments.length * SLOT + offset;
  }

  value(ref: number): string {
    const slot = Math.floor(ref / SLOT);
    if (slot === 0) return this.snapshot!.value(ref);
    return bulkAt(this.segments[slot - 1]!, ref - slot * SLOT);
  }
}
