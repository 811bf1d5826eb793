// Transactions on one node, where kv answers on its own (no redis-server to compare with): the
// queue limit, commands refused inside MULTI, KV.TXN sent directly, and transactions pipelined
// behind the connection's own writes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TXN_COMMANDS_MAX } from "../../src/kv/txn.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { startKv, type KvProcess } from "../helpers/server.ts";

let kv: KvProcess;
beforeAll(async () => {
  kv = await startKv();
});
afterAll(async () => {
  await kv?.stop();
});

const EXECABORT = "-EXECABORT Transaction discarded because of previous errors.\r\n";

test(`past ${TXN_COMMANDS_MAX} queued commands: an error, then EXECABORT; nothing runs`, async () => {
  const c = await RawResp.connect(kv.port);
  try {
    const cmds: string[][] = [["MULTI"]];
    for (let i = 0; i <= TXN_COMMANDS_MAX; i++) cmds.push(["INCR", "lim"]);
    cmds.push(["EXEC"], ["EXISTS", "lim"]);
    const r = await c.call(cmds, 30_000);
    expect(r[TXN_COMMANDS_MAX]).toBe("+QUEUED\r\n");
    expect(r[TXN_COMMANDS_MAX + 1]).toBe(`-ERR transaction past ${TXN_COMMANDS_MAX} queued commands\r\n`);
    expect(r[TXN_COMMANDS_MAX + 2]).toBe(EXECABORT);
    expect(r[TXN_COMMANDS_MAX + 3]).toBe(":0\r\n");
    // At the limit exactly, it runs.
    const ok: string[][] = [["MULTI"]];
    for (let i = 0; i < TXN_COMMANDS_MAX; i++) ok.push(["INCR", "lim"]);
    ok.push(["EXEC"], ["GET", "lim"]);
    const r2 = await c.call(ok, 30_000);
    expect(r2[TXN_COMMANDS_MAX + 1]!.startsWith(`*${TXN_COMMANDS_MAX}\r\n:1\r\n:2\r\n`)).toBe(true);
    expect(r2[TXN_COMMANDS_MAX + 2]).toBe(`$${String(TXN_COMMANDS_MAX).length}\r\n${TXN_COMMANDS_MAX}\r\n`);
  } finally {
    c.close();
  }
}, 60_000);

test("server and connection commands are refused inside MULTI (EXECABORT); QUIT is not queued", async () => {
  const c = await RawResp.connect(kv.port);
  try {
    for (const cmd of [["CLIENT", "SETNAME", "x"], ["INFO"], ["SAVE"], ["CONFIG", "GET", "maxclients"], ["KV.TXN", "0"], ["HELLO", "3"]]) {
      expect(await c.call([["MULTI"], ["SET", "ref", "1"], cmd, ["EXEC"]]), cmd.join(" ")).toEqual(["+OK\r\n", "+QUEUED\r\n", "-ERR Command not allowed inside a transaction\r\n", EXECABORT]);
    }
    expect(await c.call([["EXISTS", "ref"]])).toEqual([":0\r\n"]);
    expect(await c.call([["MULTI"], ["SET", "q", "1"], ["QUIT"]])).toEqual(["+OK\r\n", "+QUEUED\r\n", "+OK\r\n"]);
  } finally {
    c.close();
  }
  const d = await RawResp.connect(kv.port);
  try {
    expect(await d.call([["EXISTS", "q"]])).toEqual([":0\r\n"]); // the connection closed mid-transaction: nothing ran
  } finally {
    d.close();
  }
});

test("KV.TXN sent directly is one atomic write; KV.TXNREAD refuses writes; KV.REV of a missing key is 0", async () => {
  const c = await RawResp.connect(kv.port);
  try {
    expect(await c.call([["KV.TXN", "0", "3", "SET", "d", "1", "2", "INCR", "d", "2", "GET", "d"]])).toEqual(["*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n"]);
    expect(await c.call([["KV.TXNREAD", "0", "3", "SET", "d", "1"]])).toEqual(["-ERR command 'set' is not allowed in this transaction\r\n"]);
    const [rev] = await c.call([["KV.REV", "d"]]);
    expect(await c.call([["KV.TXN", "1", "d", rev!.slice(1, -2), "1", "2", "INCR", "d"]])).toEqual(["*1\r\n:3\r\n"]);
    expect(await c.call([["KV.TXN", "1", "d", rev!.slice(1, -2), "1", "2", "INCR", "d"]])).toEqual(["*-1\r\n"]); // d changed since
    expect(await c.call([["KV.REV", "never-set"]])).toEqual([":0\r\n"]);
  } finally {
    c.close();
  }
});

test("pipelined: transactions behind the connection's own writes and WATCHes keep their order", async () => {
  const c = await RawResp.connect(kv.port);
  try {
    const r = await c.call([["SET", "p", "1"], ["WATCH", "p"], ["INCR", "p"], ["MULTI"], ["GET", "p"], ["EXEC"], ["WATCH", "p"], ["MULTI"], ["INCR", "p"], ["EXEC"], ["GET", "p"]]);
    expect(r).toEqual(["+OK\r\n", "+OK\r\n", ":2\r\n", "+OK\r\n", "+QUEUED\r\n", "*-1\r\n", "+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n:3\r\n", "$1\r\n3\r\n"]);
  } finally {
    c.close();
  }
});
