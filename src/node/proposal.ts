// What the server hands a node and gets back: a write waiting to be applied (Proposal), the refusal
// of a write that cannot be logged, recovery and snapshot figures, and the slow-disk testing hook.
import { logger } from "../log.ts";
import { nodeIo, type StorageIo } from "../storage/index.ts";

const log = logger("node");

/**
 * Testing hook: with KV_TEST_FSYNC_DELAY_MS=N in the environment, every log fdatasync waits N ms
 * first (a slow disk); everything else is the production path. Returns undefined (the real
 * file layer) when it is not set.
 */
export function slowDiskIoFromEnv(env: Record<string, string | undefined>): StorageIo | undefined {
  const text = env.KV_TEST_FSYNC_DELAY_MS;
  if (text === undefined || text === "") return undefined;
  const delayMs = Number(text);
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 60_000) throw new Error(`KV_TEST_FSYNC_DELAY_MS: '${text}' is not a whole number of ms in [0, 60000]`);
  log.warn(`KV_TEST_FSYNC_DELAY_MS=${delayMs}: every log fdatasync is delayed (testing only)`);
  return { ...nodeIo, datasync: (fd) => Bun.sleep(delayMs).then(() => nodeIo.datasync(fd)) };
}

/**
 * With --fsync always, the next batch's write and fsync start while the previous batch's fsync
 * is still running (acknowledgements stay in log order, each after its own fsync and every
 * earlier one). Measured with redis-benchmark -c 50 -d 16 -t set, interleaved pairs, 1 against
 * 2: -P 16 median 195k -> 211k SET/s (2 ahead in 6 of 6 pairs), -P 1 22.1k -> 24.0k (7 pairs).
 * 4 was no better than 2 at -P 16.
 */
export const SYNCS_IN_FLIGHT = 2;

/** A write waiting for durability: who gets the reply once it is applied. */
export interface Proposal<T> {
  index: number;
  argv: string[];
  nowMs: number;
  /** The protocol its reply is written in (the proposing client's, or the forwarding member's client's). */
  proto?: 2 | 3;
  owner: T;
  /** The command RESP-encoded: the log record's payload (encoded when proposed, see propose). */
  payload: Buffer;
  /** Bytes its record takes in the log. */
  bytes: number;
  /**
   * Cluster: another member forwarded it; its reply goes back as `*2 :<index> <reply>`, so that
   * member can wait until it has applied the write before answering what its client sent next.
   */
  forwarded?: boolean;
}

/**
 * A write that cannot be logged, refused before anything was queued: its record would pass the
 * log's record limit (RECORD_PAYLOAD_BYTES_MAX), or it could not be encoded. Outside input: the
 * client gets an error reply and the node goes on serving.
 */
export class WriteRefusedError extends Error {
  override name = "WriteRefusedError";
}

export interface RecoveryStats {
  snapshotIndex: number;
  snapshotEntries: number;
  replayedRecords: number;
  lastIndex: number;
  durationMs: number;
}

export interface SnapshotStats {
  lastIndex: number;
  entries: number;
  bytes: number;
  durationMs: number;
  longestSliceMs: number;
}
