// The request limits and the log's record limit agree: the longest bulk string a client may send
// fits in one log entry, and a write that cannot be logged is refused when proposed (before it
// joins a batch), while the writes proposed with it are logged and applied.
import { describe, expect, test } from "bun:test";
import { DEFAULT_CONFIG, PROTO_MAX_BULK_LEN_MAX, QUERY_BUFFER_LIMIT_MIN, validateConfig } from "../../src/config.ts";
import { ConfigError } from "../../src/errors.ts";
import { STRING_BYTES_MAX } from "../../src/kv/commands.ts";
import { COMMAND_ENTRY_OVERHEAD_BYTES, encodeCommandEntry } from "../../src/node/kv-payload.ts";
import { WriteRefusedError } from "../../src/node/proposal.ts";
import { encodeCommand, encodedCommandBytes } from "../../src/resp/request-parser.ts";
import { RECORD_PAYLOAD_BYTES_MAX } from "../../src/storage/index.ts";
import { collectReplies, openOneMember } from "../helpers/one-member.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-limits-");

async function open(dir: string) {
  const { node: d } = await openOneMember<string>({ dataDir: dir });
  const replies = collectReplies(d);
  return { d, replies };
}

describe("request limits against the log's record limit", () => {
  test("encodedCommandBytes is exactly what encodeCommand writes; a command entry adds COMMAND_ENTRY_OVERHEAD_BYTES", () => {
    for (const argv of [["PING"], ["SET", "k", ""], ["MSET", "a".repeat(9), "b".repeat(10), "c".repeat(100_000)], ["X", "\r\n\x00\xff"]]) {
      expect(encodedCommandBytes(argv)).toBe(encodeCommand(argv).length);
      expect(encodeCommandEntry(argv, 1_700_000_000_000).length).toBe(encodedCommandBytes(argv) + COMMAND_ENTRY_OVERHEAD_BYTES);
    }
  });

  test("a SET of the longest bulk string allowed, with a key of up to 1 MiB less 256 bytes and any options, fits in one log entry", () => {
    expect(PROTO_MAX_BULK_LEN_MAX).toBe(STRING_BYTES_MAX);
    expect(DEFAULT_CONFIG.limits.protoMaxBulkLen).toBe(PROTO_MAX_BULK_LEN_MAX);
    const key = 1024 * 1024 - 256;
    for (const name of ["SET", "GETSET", "APPEND", "SETNX", "PSETEX"]) {
      expect(encodedCommandBytes([{ length: name.length }, { length: key }, { length: PROTO_MAX_BULK_LEN_MAX }]) + COMMAND_ENTRY_OVERHEAD_BYTES).toBeLessThanOrEqual(RECORD_PAYLOAD_BYTES_MAX);
    }
    // SET with every option still fits.
    const set = ["SET", "k".repeat(key), "", "PXAT", "9999999999999", "KEEPTTL", "GET", "NX"].map((a, i) => ({ length: i === 2 ? PROTO_MAX_BULK_LEN_MAX : a.length }));
    expect(encodedCommandBytes(set) + COMMAND_ENTRY_OVERHEAD_BYTES).toBeLessThanOrEqual(RECORD_PAYLOAD_BYTES_MAX);
  });

  test("--proto-max-bulk-len past the longest string kv holds is refused at startup", () => {
    const withBulk = (n: number) => ({ ...DEFAULT_CONFIG, limits: { ...DEFAULT_CONFIG.limits, protoMaxBulkLen: n } });
    expect(() => validateConfig(withBulk(PROTO_MAX_BULK_LEN_MAX))).not.toThrow();
    expect(() => validateConfig(withBulk(1024 * 1024))).not.toThrow();
    expect(() => validateConfig(withBulk(PROTO_MAX_BULK_LEN_MAX + 1))).toThrow(ConfigError);
    expect(() => validateConfig(withBulk(0))).toThrow(ConfigError);
  });

  test("--client-query-buffer-limit below 1mb (0, say) is refused at startup, as Redis refuses it", () => {
    const withQuery = (n: number) => ({ ...DEFAULT_CONFIG, limits: { ...DEFAULT_CONFIG.limits, queryBufferBytesMax: n } });
    expect(() => validateConfig(withQuery(0))).toThrow(ConfigError);
    expect(() => validateConfig(withQuery(QUERY_BUFFER_LIMIT_MIN - 1))).toThrow(ConfigError);
    expect(() => validateConfig(withQuery(QUERY_BUFFER_LIMIT_MIN))).not.toThrow();
  });

  test("MSET a <300 MB> b <300 MB>: refused when proposed; the writes around it in the same turn are logged and applied", async () => {
    const dir = tempDir();
    const { d, replies } = await open(dir);
    const base = d.applied; // the group's own entries
    const big = "x".repeat(300 * 1024 * 1024);
    d.propose(["SET", "before", "1"], 1000, "before");
    let refused: unknown;
    try {
      d.propose(["MSET", "a", big, "b", big], 1000, "mset");
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(WriteRefusedError);
    expect((refused as Error).message).toBe(
      `write not accepted: the command is ${encodedCommandBytes(["MSET", "a", big, "b", big]) + COMMAND_ENTRY_OVERHEAD_BYTES} bytes as a log entry, past the log's record limit of ${RECORD_PAYLOAD_BYTES_MAX} bytes (513 MiB) for one write`,
    );
    d.propose(["SET", "after", "2"], 1000, "after");
    for (let i = 0; i < 500 && replies.size < 2; i++) await Bun.sleep(2);
    expect([...replies.entries()].sort()).toEqual([
      ["after", "+OK\r\n"],
      ["before", "+OK\r\n"],
    ]);
    expect(d.applied).toBe(base + 2); // numbered without a gap: the refused write took no index
    await d.close();
    const again = await open(dir);
    expect(again.d.recovery.lastIndex).toBe(base + 2);
    expect(again.d.fsm.db.dbsize()).toBe(2);
    await again.d.close();
  }, 30_000);
});
