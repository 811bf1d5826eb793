// INFO commandstats / errorstats, CLIENT LIST and COMMAND LIST through the compiled binary, driven
// by redis-cli as an operator would: exact counts after a known sequence of commands.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startKv, type KvProcess } from "../helpers/server.ts";

let kv: KvProcess;

beforeAll(async () => {
  kv = await startKv();
});

afterAll(async () => {
  await kv?.stop();
});

async function cli(...args: string[]): Promise<string> {
  const p = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(kv.port), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  return out;
}

function fields(info: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

describe("statistics through redis-cli", () => {
  test("3 SETs, 2 wrong arity, 1 failed INCR, 1 NOPROTO: exact commandstats, errorstats and total_error_replies", async () => {
    for (const k of ["a", "b", "c"]) expect(await cli("set", k, "v")).toBe("OK\n");
    expect(await cli("set", "x")).toContain("ERR wrong number of arguments for 'set' command");
    expect(await cli("get")).toContain("ERR wrong number of arguments for 'get' command");
    expect(await cli("incr", "a")).toContain("ERR value is not an integer or out of range");
    expect(await cli("hello", "4")).toContain("NOPROTO");

    const f = fields(await cli("info", "commandstats", "errorstats", "stats"));
    expect(f.get("cmdstat_set")).toMatch(/^calls=3,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=1,failed_calls=0$/);
    expect(f.get("cmdstat_get")).toMatch(/^calls=0,usec=0,usec_per_call=0\.00,rejected_calls=1,failed_calls=0$/);
    expect(f.get("cmdstat_incr")).toMatch(/^calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=1$/);
    expect(f.get("cmdstat_hello")).toMatch(/^calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=1$/);
    expect(f.get("errorstat_ERR")).toBe("count=3");
    expect(f.get("errorstat_NOPROTO")).toBe("count=1");
    expect(f.get("total_error_replies")).toBe("4");
    expect(f.get("total_commands_processed")).toBe("5");

    const every = await cli("info", "everything");
    expect([...every.matchAll(/^# (\w+)/gm)].map((m) => m[1])).toEqual(
      ["Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Modules", "Commandstats", "Errorstats", "Cluster", "Keyspace", "Raft"],
    );
    expect(await cli("config", "resetstat")).toBe("OK\n");
    const g = fields(await cli("info", "errorstats", "stats", "commandstats"));
    expect(g.get("total_error_replies")).toBe("0");
    expect(g.has("errorstat_ERR")).toBe(false);
    expect(g.has("cmdstat_set")).toBe(false);
  });

  test("CLIENT LIST shows cmd=client|list and Redis 7.2's fields; COMMAND LIST FILTERBY filters", async () => {
    const line = (await cli("client", "list")).trim();
    expect(line.split(" ").map((kv) => kv.slice(0, kv.indexOf("=")))).toEqual(
      "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp lib-name lib-ver".split(" "),
    );
    expect(line).toContain(" cmd=client|list ");
    expect(line).toContain(` laddr=127.0.0.1:${kv.port} `);
    expect((await cli("command", "list", "filterby", "pattern", "config*")).split("\n").filter(Boolean).sort()).toEqual(
      ["config", "config|get", "config|help", "config|resetstat", "config|set"],
    );
    const keyspace = (await cli("command", "list", "filterby", "aclcat", "keyspace")).split("\n");
    expect(keyspace).toContain("flushall");
    expect(keyspace).not.toContain("get");
    expect((await cli("--no-raw", "command", "list", "filterby", "module", "json")).trim()).toBe("(empty array)");
  });
});
