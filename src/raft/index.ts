// Public surface of the pure Raft core.
export * from "./types.ts";
export { Rand } from "./rand.ts";
export { MemoryStorage, bootstrapStorage, type LogStorage } from "./storage.ts";
export { RawNode, type Status } from "./rawnode.ts";
export {
  Raft,
  type RaftConfig,
  type ProposeResult,
  type ReadIndexResult,
  type TransferResult,
  ELECTION_TICKS_DEFAULT,
  HEARTBEAT_TICKS_DEFAULT,
  INFLIGHT_MESSAGES_MAX_DEFAULT,
  MSG_BYTES_MAX_DEFAULT,
  UNCOMMITTED_ENTRIES_MAX_DEFAULT,
  PENDING_READS_MAX_DEFAULT,
} from "./raft.ts";
