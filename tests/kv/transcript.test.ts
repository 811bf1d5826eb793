// Replays a transcript recorded from redis-server 7.0.15 (fixtures/record-redis.ts) through the
// KV command table and expects the same reply bytes for every command, RESP2 and RESP3.
import { expect, test } from "bun:test";
import { arityOk } from "../../src/kv/command.ts";
import { lookupKvCommand } from "../../src/kv/commands.ts";
import { Db } from "../../src/kv/db.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import rows from "./fixtures/redis7-transcript.json";

const T0 = 1_700_000_000_000;

test("the recorded redis 7 transcript replays byte for byte", () => {
  expect(rows.length).toBeGreaterThan(2000);
  const db = new Db();
  const out = new ReplyBuffer();
  const mismatches: string[] = [];
  for (const { argv, reply } of rows) {
    out.reset();
    const name = argv[0]!.toLowerCase();
    if (name === "hello") {
      out.proto = argv[1] === "3" ? 3 : 2;
      continue;
    }
    if (name === "ping") continue;
    const spec = lookupKvCommand(argv[0]!);
    expect(spec).toBeDefined();
    if (!arityOk(spec!.arity, argv.length)) out.error(`ERR wrong number of arguments for '${spec!.name}' command`);
    else spec!.exec({ db, nowMs: T0 }, argv, out);
    const got = out.view().toString("latin1");
    if (got !== reply) mismatches.push(`${JSON.stringify(argv)}: redis ${JSON.stringify(reply)}, kv ${JSON.stringify(got)}`);
  }
  expect(mismatches).toEqual([]);
});
