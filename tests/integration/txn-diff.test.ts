// Differential test of transactions against Debian's redis-server: the same command sequences,
// over two connections (A runs the transaction, B changes keys in between), in RESP2 and RESP3,
// must get byte-identical replies from ./kv and from redis-server. Covers the replies and errors
// of MULTI/EXEC/DISCARD/WATCH/UNWATCH, queuing errors (EXECABORT), runtime errors inside EXEC,
// and WATCH aborts (changed, deleted, created and deleted again, expired; by another client or
// by the same one). redis-server runs on a free loopback port with no persistence, in a temp dir.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type RedisProcess, startRedisServer } from "../helpers/redis-server.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { type KvProcess, startKv } from "../helpers/server.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-txn-diff-");

let redis: RedisProcess | null = null;
let redisPort = 0;
let kv: KvProcess | null = null;

beforeAll(async () => {
  redis = await startRedisServer(tempDir(), ["--databases", "1"]);
  redisPort = redis.port;
  kv = await startKv();
});

afterAll(async () => {
  await redis?.stop();
  if (kv !== null) await kv.stop();
});

/** One step: commands sent pipelined on connection A or B, or a pause (ms). */
type Step = { a: string[][] } | { b: string[][] } | { sleep: number };
const A = (...cmds: string[][]): Step => ({ a: cmds });
const B = (...cmds: string[][]): Step => ({ b: cmds });
const c = (line: string): string[] => line.split(" ");

const SCENARIOS: Record<string, Step[]> = {
  "a transaction of writes and reads": [A(c("MULTI"), c("SET a 1"), c("INCR a"), c("GET a"), c("MGET a nope"), c("EXEC"), c("GET a"))],
  "an empty transaction": [A(c("MULTI"), c("EXEC"))],
  "a read-only transaction": [A(c("SET r 7")), A(c("MULTI"), c("GET r"), c("EXISTS r nope"), c("TTL r"), c("EXEC"))],
  "runtime errors are replies in the array, the rest still run": [A(c("SET s x"), c("MULTI"), c("INCR s"), c("SET t 1"), c("INCRBY t notanumber"), c("GET t"), c("EXEC"))],
  "an unknown command queued aborts EXEC": [A(c("MULTI"), c("SET a 1"), c("NOSUCH x y"), c("EXEC"), c("GET a"))],
  "a wrong arity queued aborts EXEC": [A(c("MULTI"), c("SET a"), c("SET b 1"), c("EXEC"), c("GET b"))],
  "MULTI nested is refused, the transaction goes on": [A(c("MULTI"), c("MULTI"), c("SET a 1"), c("EXEC"), c("GET a"))],
  "MULTI with arguments inside MULTI aborts EXEC": [A(c("MULTI"), c("MULTI x"), c("EXEC"))],
  "WATCH inside MULTI is refused, the transaction goes on": [A(c("MULTI"), c("WATCH a"), c("SET a 2"), c("EXEC"))],
  "EXEC and DISCARD without MULTI": [A(c("EXEC"), c("DISCARD"), c("WATCH"), c("UNWATCH x"))],
  "EXEC with arguments inside MULTI discards the transaction": [A(c("MULTI"), c("SET a 1"), c("EXEC x"), c("EXEC"), c("GET a"))],
  "DISCARD drops the queue; DISCARD with arguments aborts": [A(c("MULTI"), c("SET a 1"), c("DISCARD"), c("GET a"), c("MULTI"), c("DISCARD x"), c("DISCARD"))],
  "PING, ECHO and UNWATCH inside a transaction": [A(c("MULTI"), c("PING"), c("PING hi"), c("ECHO there"), c("UNWATCH"), c("EXEC"))],
  "PUBLISH inside a transaction": [A(c("MULTI"), c("PUBLISH ch hi"), c("SET a 1"), c("EXEC"))],
  "transactions pipelined back to back": [A(c("MULTI"), c("INCR n"), c("EXEC"), c("MULTI"), c("INCR n"), c("INCR n"), c("EXEC"), c("GET n"))],
  "WATCH: a key unchanged runs": [A(c("SET k 1"), c("WATCH k")), A(c("MULTI"), c("INCR k"), c("EXEC"))],
  "WATCH: a key changed by another client aborts": [A(c("SET k 1"), c("WATCH k")), B(c("SET k 2")), A(c("MULTI"), c("INCR k"), c("EXEC"), c("GET k"))],
  "WATCH: a key set to the same value aborts": [A(c("SET k 1"), c("WATCH k")), B(c("SET k 1")), A(c("MULTI"), c("INCR k"), c("EXEC"))],
  "WATCH: a key deleted aborts": [A(c("SET k 1"), c("WATCH k")), B(c("DEL k")), A(c("MULTI"), c("SET k 5"), c("EXEC"), c("GET k"))],
  "WATCH: an absent key created aborts": [A(c("WATCH k")), B(c("SET k 1")), A(c("MULTI"), c("SET k 5"), c("EXEC"), c("GET k"))],
  "WATCH: an absent key created and deleted again aborts": [A(c("WATCH k")), B(c("SET k 1"), c("DEL k")), A(c("MULTI"), c("SET k 5"), c("EXEC"), c("GET k"))],
  "WATCH: an absent key left absent runs": [A(c("WATCH k")), A(c("MULTI"), c("SET k 5"), c("EXEC"), c("GET k"))],
  "WATCH: the client's own change after WATCH aborts": [A(c("WATCH k"), c("SET k 1"), c("MULTI"), c("GET k"), c("EXEC"))],
  "WATCH: a change before WATCH does not abort": [A(c("SET k 1"), c("WATCH k"), c("MULTI"), c("GET k"), c("EXEC"))],
  "WATCH: a key's TTL changed aborts": [A(c("SET k 1"), c("WATCH k")), B(c("EXPIRE k 100")), A(c("MULTI"), c("GET k"), c("EXEC"))],
  "WATCH: a key that expires aborts": [A(c("SET k 1 PX 150"), c("WATCH k")), { sleep: 400 }, A(c("MULTI"), c("SET k 2"), c("EXEC"), c("GET k"))],
  "UNWATCH forgets the keys": [A(c("SET k 1"), c("WATCH k")), B(c("SET k 2")), A(c("UNWATCH"), c("MULTI"), c("GET k"), c("EXEC"))],
  "EXEC forgets the keys (even aborted)": [A(c("WATCH k")), B(c("SET k 2")), A(c("MULTI"), c("GET k"), c("EXEC")), B(c("SET k 3")), A(c("MULTI"), c("GET k"), c("EXEC"))],
  "DISCARD forgets the keys": [A(c("WATCH k")), B(c("SET k 2")), A(c("MULTI"), c("DISCARD")), A(c("MULTI"), c("GET k"), c("EXEC"))],
  "EXECABORT forgets the keys": [A(c("WATCH k")), B(c("SET k 2")), A(c("MULTI"), c("NOSUCH"), c("EXEC")), A(c("MULTI"), c("GET k"), c("EXEC"))],
  "RESET forgets the watched keys and ends MULTI": [A(c("WATCH k")), B(c("SET k 2")), A(c("RESET"), c("MULTI"), c("GET k"), c("EXEC"), c("MULTI"), c("SET a 1"), c("RESET"), c("EXEC"), c("GET a"))],
  "WATCH of several keys, one changed": [A(c("MSET x 1 y 2"), c("WATCH x y z")), B(c("SET y 3")), A(c("MULTI"), c("MGET x y z"), c("EXEC"))],
  "WATCH twice, pipelined with MULTI and EXEC": [A(c("SET k 1"), c("WATCH k"), c("WATCH k2"), c("MULTI"), c("INCR k"), c("EXEC"))],
};

async function run(port: number, proto: 2 | 3, steps: Step[]): Promise<string[]> {
  const a = await RawResp.connect(port);
  const b = await RawResp.connect(port);
  try {
    if (proto === 3) {
      await a.call([["HELLO", "3"]]);
      await b.call([["HELLO", "3"]]);
    }
    expect(await b.call([["FLUSHALL"]])).toEqual(["+OK\r\n"]);
    const out: string[] = [];
    for (const s of steps) {
      if ("sleep" in s) await Bun.sleep(s.sleep);
      else if ("a" in s) out.push(...(await a.call(s.a, 10_000)));
      else out.push(...(await b.call(s.b, 10_000)).map((r) => `B ${r}`));
    }
    return out;
  } finally {
    a.close();
    b.close();
  }
}

for (const proto of [2, 3] as const) {
  test(`transactions: the same replies as redis-server, RESP${proto}`, async () => {
    for (const [name, steps] of Object.entries(SCENARIOS)) {
      const theirs = await run(redisPort, proto, steps);
      const ours = await run(kv!.port, proto, steps);
      expect(ours, name).toEqual(theirs);
    }
  }, 60_000);
}

test("the differential check can fail: a changed watched key aborts, an unchanged one does not", async () => {
  const aborted = await run(kv!.port, 2, SCENARIOS["WATCH: a key changed by another client aborts"]!);
  const ran = await run(kv!.port, 2, SCENARIOS["WATCH: a key unchanged runs"]!);
  expect(aborted).toContain("*-1\r\n");
  expect(ran).not.toContain("*-1\r\n");
  expect(ran).toContain("*1\r\n:2\r\n");
});
