// Data dirs written by kv before a single node ran as a one-member Raft group: the WAL holds one
// RESP-encoded command per record (type Command, term 1, stamped with the time it ran at), the
// snapshots have no membership, and there is no membership file and no Raft hard state. The
// runtime converts such a dir on its first start, once:
//
//   1. rebuild the state as that kv did: the newest valid snapshot, then every record after it,
//      each command run at its record's time;
//   2. write it as a snapshot in the runtime's format at the old last index L (term 1, the meta is
//      the applied time, membership: this node the only voter);
//   3. write the membership file (the caller's `commit`), last.
//
// Nothing is deleted or rewritten: the old records (all at or below L) stay where they are, under
// the new snapshot, until the runtime's compactions remove them as they would any log it covers;
// the Raft log goes on at L + 1. A crash before step 3 leaves a dir without a membership file whose
// newest snapshot is either an old one or the one step 2 wrote (this node the only voter, at L):
// the next start converts again, and step 2 is skipped when its snapshot is there already.
import { encodeSnapshotMeta } from "./kv-payload.ts";
import { withAclSection } from "./snapshot-meta.ts";
import { ConfigError, CorruptLogError } from "../errors.ts";
import { KvStateMachine } from "../kv/fsm.ts";
import { logger } from "../log.ts";
import { ReplyBuffer } from "../resp/encode.ts";
import { decodeCommand, decodePlainSet, plainSet } from "../resp/request-parser.ts";
import { MappedValues } from "./mapped-values.ts";
import type { NodeId } from "../raft/types.ts";
import { openStorage, RecordType, type FsyncMode, type SnapshotMembership, type StorageIo } from "../storage/index.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";

const log = logger("node");

/** The term of every record the single-node log wrote. */
const SINGLE_NODE_TERM = 1;

export interface ConvertOptions {
  id: NodeId;
  dataDir: string;
  fsync: FsyncMode;
  segmentBytesMax: number;
  io?: StorageIo;
  /** The group this node starts (only a one-member group may take over a single node's data). */
  memberIds: readonly NodeId[];
  /** Writes the membership file (the last step: its presence marks the dir converted). */
  commit: () => void;
}

/** What a conversion did (for the log line and tests). */
export interface Conversion {
  /** The old snapshot's index and keys (0 and 0 without one). */
  fromSnapshotIndex: number;
  fromSnapshotKeys: number;
  /** Log records replayed after it. */
  records: number;
  /** The runtime's snapshot: index (the old last index) and keys. */
  index: number;
  keys: number;
  /** False when step 2 had been done by an earlier, interrupted conversion. */
  wroteSnapshot: boolean;
}

function soleVoter(m: SnapshotMembership | undefined, id: NodeId): boolean {
  return m !== undefined && m.learners.length === 0 && m.voters.length === 1 && m.voters[0] === id;
}

/**
 * Converts `dataDir` when it holds a single node's data (see the top of this file) and has no
 * membership file (the caller checked); returns undefined, touching nothing, when it holds no data
 * (a fresh dir) or data of another kind (a Raft member's whose membership file is gone: the caller
 * refuses it). Throws ConfigError when it holds a single node's data and the group to start has
 * other members, CorruptLogError on damage (as the old start did).
 */
export async function convertSingleNodeDir(opts: ConvertOptions): Promise<Conversion | undefined> {
  if (existsSync(join(opts.dataDir, "hardstate"))) return undefined; // Raft wrote here
  const result = await rebuild(opts);
  if (result === undefined) return undefined;
  // The rebuilt keyspace (every value a string once the snapshot read it) is garbage now (it lived
  // in rebuild's frame): collect it before the node restores the same keyspace from the new snapshot.
  Bun.gc(true);
  // Tests stop the process here, as a crash between steps 2 and 3 would.
  if (process.env.KV_TEST_KILL_IN_CONVERSION === "1") process.kill(process.pid, "SIGKILL");
  // 3. The membership file, last: until it is there, the next start converts again.
  opts.commit();
  log.info(
    `converted ${opts.dataDir} from the single-node format: snapshot at index ${result.fromSnapshotIndex} (${result.fromSnapshotKeys} keys) + ` +
      `${result.records} log records -> a one-member group (node ${opts.id} the only voter) from a snapshot at index ${result.index} (${result.keys} keys)` +
      (result.wroteSnapshot ? "" : "; that snapshot was written by an interrupted conversion"),
  );
  return result;
}

/** Steps 1 and 2 (see the top of this file); undefined when the dir holds no single node's data. */
async function rebuild(opts: ConvertOptions): Promise<Conversion | undefined> {
  const st = await openStorage({ dataDir: opts.dataDir, fsync: opts.fsync, segmentBytesMax: opts.segmentBytesMax, io: opts.io });
  let result: Conversion;
  try {
    const snap = st.snapshot;
    const wal = st.wal;
    const last = Math.max(wal.lastIndex(), snap?.lastIndex ?? 0);
    if (last === 0) return undefined; // nothing written yet: a fresh dir
    if (wal.lastHardState() !== undefined) return undefined; // Raft wrote here
    const m = snap?.membership;
    const oldSnapshot = m === undefined || (m.voters.length === 0 && m.learners.length === 0);
    if (!oldSnapshot && !soleVoter(m, opts.id)) return undefined; // a snapshot of a Raft group
    // Every record after the snapshot must be a single node's (a command of term 1).
    let foreign: string | undefined;
    wal.replayEach(st.replayFrom, (index, term, type) => {
      if (foreign === undefined && (type !== RecordType.Command || term !== SINGLE_NODE_TERM)) foreign = `record ${index} is of type ${type}, term ${term}`;
    });
    if (foreign !== undefined) {
      log.debug(`${opts.dataDir}: not a single node's log (${foreign})`);
      return undefined;
    }
    if (opts.memberIds.length !== 1 || opts.memberIds[0] !== opts.id) {
      throw new ConfigError(
        `${opts.dataDir} holds the data of a single node written by an older kv: start it once without --cluster ` +
          `(kv serve --data-dir ${opts.dataDir}) to convert it to a one-member group, then add members to that group`,
      );
    }

    // 1. The state, as the single node rebuilt it at start: values stay in the mapped files
    // (snapshot entries, plain SETs of the log) until the snapshot below copies them.
    const fsm = new KvStateMachine();
    const db = fsm.db;
    const source = new MappedValues();
    db.loadLazy(source);
    let fromSnapshotKeys = 0;
    if (snap !== undefined) {
      db.rev = snap.lastIndex; // the revision of its keys (the old format has none)
      const mapped = snap.mapped();
      if (mapped !== undefined) {
        source.setSnapshot(mapped.values);
        mapped.forEach((k, offset, at) => {
          const ref = source.snapshotRef(offset);
          db.load(k, ref >= 0 ? ref : mapped.values.value(offset), at);
          fromSnapshotKeys++;
        });
      } else {
        snap.forEach((k, v, at) => {
          db.load(k, v, at);
          fromSnapshotKeys++;
        });
      }
      fsm.appliedMs = Number(new TextDecoder().decode(snap.meta)) || 0;
      db.deleteFloor = snap.lastIndex;
    }
    const sink = new ReplyBuffer(1024);
    const names = new Map<number, string>();
    const records = wal.replayEach(st.replayFrom, (index, _term, _type, timestampMs, buf, start, end, isMapped) => {
      if (isMapped && decodePlainSet(buf, start, end)) {
        const ref = source.segmentRef(buf, plainSet.valueAt);
        if (ref >= 0) {
          fsm.applyPlainSetRef(buf.latin1Slice(plainSet.keyStart, plainSet.keyEnd), ref, timestampMs, index);
          return;
        }
      }
      const argv = decodeCommand(buf, start, end, names);
      if (argv === null) {
        const at = wal.locate(index);
        throw new CorruptLogError(
          `record ${index} has a good checksum but is not one RESP command`,
          at?.file ?? wal.dir,
          at?.offset ?? 0,
          "kv repair cuts the log only at checksum damage, so it keeps this record; to drop it and every record after it, " +
            "back up the data dir, truncate this file to the offset above (truncate -s OFFSET FILE) and delete the later segments of wal/",
        );
      }
      fsm.apply(argv, timestampMs, sink, index);
      sink.reset();
    }, { map: true });
    db.endLazyLoad();

    // 2. The runtime's snapshot at the old last index (unless an interrupted conversion wrote it).
    const wroteSnapshot = !(snap !== undefined && !oldSnapshot && snap.lastIndex === last);
    if (wroteSnapshot) {
      const { appliedMs, deleteFloor, tombstones, snapshot, acl } = fsm.beginSnapshot();
      try {
        await st.snapshots.write(
          { lastIndex: last, lastTerm: SINGLE_NODE_TERM, meta: withAclSection(encodeSnapshotMeta(appliedMs, deleteFloor, tombstones), acl), membership: { voters: [opts.id], learners: [] } },
          snapshot,
        );
      } finally {
        snapshot.close();
      }
    }
    result = { fromSnapshotIndex: snap?.lastIndex ?? 0, fromSnapshotKeys, records, index: last, keys: db.dbsize(), wroteSnapshot };
  } finally {
    await st.close();
  }
  return result;
}
