// One Raft message of every variant, for codec and transport tests.
import { Rand } from "../../src/raft/rand.ts";
import { encodeConfChange, type Entry, type Message } from "../../src/raft/types.ts";

export function bytes(n: number, seed: number): Uint8Array {
  const r = new Rand(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r.nextU32() & 0xff;
  return out;
}

const BIG = 2 ** 53 - 1;
export const entries: Entry[] = [
  { index: 7, term: 3, type: "normal", data: new Uint8Array(0) },
  { index: 8, term: 3, type: "normal", data: new TextEncoder().encode("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n") },
  { index: 9, term: 4, type: "conf-change", data: encodeConfChange({ type: "add-learner", node: 4 }) },
  { index: 10, term: 4, type: "normal", data: bytes(3 * 1024 * 1024 + 17, 5) },
];

/** One message of every variant, with edge values (0, 2^53-1, empty and large data, unicode ctx). */
export const EVERY_MESSAGE: Message[] = [
  { type: "append", from: 1, to: 2, term: 4, logIndex: 6, logTerm: 3, commit: 5, entries },
  { type: "append", from: 1, to: 2, term: 1, logIndex: 0, logTerm: 0, commit: 0, entries: [] },
  { type: "append-resp", from: 2, to: 1, term: 4, index: 10, reject: false, rejectHint: 0, hintTerm: 0 },
  { type: "append-resp", from: 2, to: 1, term: BIG, index: BIG, reject: true, rejectHint: BIG - 1, hintTerm: 2 },
  { type: "vote", from: 3, to: 1, term: 5, lastIndex: 10, lastTerm: 4, transfer: false },
  { type: "pre-vote", from: 3, to: 2, term: 6, lastIndex: 10, lastTerm: 4, transfer: true },
  { type: "vote-resp", from: 1, to: 3, term: 5, reject: false },
  { type: "pre-vote-resp", from: 2, to: 3, term: 6, reject: true },
  { type: "heartbeat", from: 1, to: 2, term: 4, commit: 9, leaderCommit: 10, ctx: "" },
  { type: "heartbeat", from: 1, to: 3, term: 4, commit: 9, leaderCommit: 10, ctx: "r7:42-é✓" },
  { type: "heartbeat-resp", from: 2, to: 1, term: 4, ctx: "r7:42" },
  { type: "heartbeat-resp", from: 2, to: 1, term: 4, ctx: "" },
  {
    type: "snapshot",
    from: 1,
    to: 4,
    term: 4,
    snapshot: { meta: { index: 9, term: 4, confState: { voters: [1, 2, 3], learners: [4, 0xffffffff] } }, data: bytes(100_000, 9) },
  },
  { type: "snapshot", from: 1, to: 4, term: 4, snapshot: { meta: { index: 1, term: 1, confState: { voters: [1], learners: [] } }, data: new Uint8Array(0) } },
  { type: "timeout-now", from: 1, to: 2, term: 4 },
];

