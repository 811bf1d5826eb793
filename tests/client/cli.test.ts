// The CLI as a user types it: every client subcommand and exit code, against the compiled ./kv.
// Exit codes: 0 ok, 1 nil/refused/usage, 2 server error reply, 3 no answer (unreachable, timeout).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, startFake } from "./_fake.ts";
import { KV_BIN, type Kv, removeDir, spawnKv } from "./_server.ts";

let kv: Kv;

beforeAll(async () => {
  kv = await spawnKv();
});
afterAll(async () => {
  await kv?.stop();
  if (kv) removeDir(kv.dataDir);
});

interface Run {
  code: number;
  out: Buffer;
  stdout: string;
  stderr: string;
  ms: number;
}

async function run(args: string[], opts: { stdin?: string | Uint8Array; env?: Record<string, string>; addr?: string | null } = {}): Promise<Run> {
  const addrArgs = opts.addr === null ? [] : ["--addr", opts.addr ?? kv.addr];
  const started = performance.now();
  const proc = Bun.spawn([KV_BIN, ...args, ...addrArgs], {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", KV_ADDR: "", ...opts.env },
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).arrayBuffer(), new Response(proc.stderr).text(), proc.exited]);
  const buf = Buffer.from(out);
  return { code, out: buf, stdout: buf.toString("utf8"), stderr: err, ms: performance.now() - started };
}

describe("kv ping", () => {
  test("prints PONG, exit 0", async () => {
    const r = await run(["ping"]);
    expect(r).toMatchObject({ code: 0, stdout: "PONG\n" });
  });
  test("--json", async () => {
    const r = await run(["ping", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ reply: "PONG", addr: kv.addr });
  });
  test("KV_ADDR is used when --addr is absent", async () => {
    const r = await run(["ping"], { addr: null, env: { KV_ADDR: kv.addr } });
    expect(r).toMatchObject({ code: 0, stdout: "PONG\n" });
  });
});

describe("kv set / get", () => {
  test("set prints OK; get prints the raw value with no newline when piped", async () => {
    expect(await run(["set", "cli:a", "hello world"])).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await run(["get", "cli:a"])).toMatchObject({ code: 0, stdout: "hello world" });
    expect(await run(["get", "cli:a", "--json"])).toMatchObject({ code: 0, stdout: '"hello world"\n' });
  });

  test("get of a missing key: exit 1, nothing on stdout", async () => {
    const r = await run(["get", "cli:missing"]);
    expect(r.code).toBe(1);
    expect(r.out.length).toBe(0);
  });

  test("--nx / --xx: refused sets exit 1 with nothing on stdout", async () => {
    await run(["set", "cli:nx", "1"]);
    const r1 = await run(["set", "cli:nx", "2", "--nx"]);
    expect(r1.code).toBe(1);
    expect(r1.stdout).toBe("");
    expect(await run(["get", "cli:nx"])).toMatchObject({ stdout: "1" });
    const r2 = await run(["set", "cli:xx-missing", "2", "--xx"]);
    expect(r2.code).toBe(1);
    expect(await run(["set", "cli:nx", "3", "--xx"])).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await run(["set", "cli:new", "3", "--nx"])).toMatchObject({ code: 0, stdout: "OK\n" });
    const both = await run(["set", "cli:x", "1", "--nx", "--xx"]);
    expect(both.code).toBe(1);
    expect(both.stderr).toContain("--nx");
  });

  test("--ex and --px set a time to live", async () => {
    expect((await run(["set", "cli:ex", "v", "--ex", "100"])).code).toBe(0);
    const ttl = Number((await run(["ttl", "cli:ex"])).stdout);
    expect(ttl).toBeGreaterThan(90);
    expect((await run(["set", "cli:px", "v", "--px", "200000"])).code).toBe(0);
    const pttl = Number((await run(["ttl", "cli:px", "--ms"])).stdout);
    expect(pttl).toBeGreaterThan(150_000);
    const bad = await run(["set", "cli:bad", "v", "--ex", "soon"]);
    expect(bad.code).toBe(1);
  });

  test("a misspelled flag is refused and nothing is written", async () => {
    const r = await run(["set", "cli:typo", "v", "--exx", "100"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("unknown option: --exx");
    expect((await run(["get", "cli:typo"])).code).toBe(1); // the key was not set
  });

  test("binary values through --stdin and get, byte for byte", async () => {
    const all = new Uint8Array(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    expect(await run(["set", "cli:bin", "--stdin"], { stdin: all })).toMatchObject({ code: 0, stdout: "OK\n" });
    const r = await run(["get", "cli:bin"]);
    expect(r.code).toBe(0);
    expect(Array.from(r.out)).toEqual(Array.from(all));
  });

  test("set without a value is a usage error (exit 1)", async () => {
    const r = await run(["set", "cli:only"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("VALUE");
  });

  test("get without a key is a usage error (exit 1)", async () => {
    expect((await run(["get"])).code).toBe(1);
  });
});

describe("kv del / ttl / keys / incr", () => {
  test("del prints how many keys existed", async () => {
    await run(["set", "cli:d1", "1"]);
    await run(["set", "cli:d2", "1"]);
    expect(await run(["del", "cli:d1", "cli:d2", "cli:d3"])).toMatchObject({ code: 0, stdout: "2\n" });
    expect(await run(["del", "cli:d1"])).toMatchObject({ code: 0, stdout: "0\n" });
  });

  test("ttl: -2 missing, -1 no expiry", async () => {
    expect(await run(["ttl", "cli:nokey"])).toMatchObject({ code: 0, stdout: "-2\n" });
    await run(["set", "cli:t", "1"]);
    expect(await run(["ttl", "cli:t"])).toMatchObject({ code: 0, stdout: "-1\n" });
  });

  test("keys: one per line; --json array; default pattern *", async () => {
    await run(["set", "kk:1", "a"]);
    await run(["set", "kk:2", "b"]);
    const r = await run(["keys", "kk:*"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(["kk:1", "kk:2"]);
    const j = await run(["keys", "kk:*", "--json"]);
    expect((JSON.parse(j.stdout) as string[]).sort()).toEqual(["kk:1", "kk:2"]);
    const all = await run(["keys"]);
    expect(all.stdout.split("\n")).toContain("kk:1");
    expect(await run(["keys", "nothing-matches-*"])).toMatchObject({ code: 0, stdout: "" });
  });

  test("incr prints the new value; a non-integer value exits 2 with the server's error", async () => {
    expect(await run(["incr", "cli:n"])).toMatchObject({ code: 0, stdout: "1\n" });
    expect(await run(["incr", "cli:n"])).toMatchObject({ code: 0, stdout: "2\n" });
    expect(await run(["incr", "cli:n", "--by", "10"])).toMatchObject({ code: 0, stdout: "12\n" });
    await run(["set", "cli:s", "abc"]);
    const r = await run(["incr", "cli:s"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim()).toBe("(error) ERR value is not an integer or out of range");
  });
});

describe("kv cli", () => {
  test("one-shot: replies formatted like redis-cli", async () => {
    expect(await run(["cli", "SET", "rc:a", "b"])).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await run(["cli", "GET", "rc:a"])).toMatchObject({ code: 0, stdout: '"b"\n' });
    expect(await run(["cli", "GET", "rc:none"])).toMatchObject({ code: 0, stdout: "(nil)\n" });
    expect(await run(["cli", "INCR", "rc:n"])).toMatchObject({ code: 0, stdout: "(integer) 1\n" });
    const e = await run(["cli", "INCR", "rc:a"]);
    expect(e).toMatchObject({ code: 2, stdout: "(error) ERR value is not an integer or out of range\n" });
    expect(await run(["cli", "--raw", "GET", "rc:a"])).toMatchObject({ code: 0, stdout: "b\n" });
    expect(await run(["cli", "--json", "MGET", "rc:a", "rc:none"])).toMatchObject({ code: 0, stdout: '["b",null]\n' });
  });

  test("piped session: any command, quoting, arrays, nil, errors, quit", async () => {
    const script = [
      "set rc:q \"hello\\nworld\"",
      "get rc:q",
      "set 'rc:sp ace' '1'",
      "mget rc:q \"rc:sp ace\" rc:none",
      "keys rc:nomatch*",
      "del rc:q",
      "get rc:q",
      "nosuchcommand x",
      "set \"unbalanced",
      "quit",
      "ping",
    ].join("\n");
    const r = await run(["cli"], { stdin: script + "\n" });
    const lines = r.stdout.split("\n");
    expect(lines[9]).toStartWith("(error) ERR unknown command");
    lines[9] = "<error>";
    expect(lines).toEqual([
      "OK",
      '"hello\\nworld"',
      "OK",
      '1) "hello\\nworld"',
      '2) "1"',
      "3) (nil)",
      "(empty array)",
      "(integer) 1",
      "(nil)",
      "<error>",
      "Invalid argument(s): unbalanced quotes",
      "",
    ]);
  });

  test("nested arrays are indented as redis-cli does", async () => {
    const { formatReply } = await import("../../src/cli/client-format.ts");
    const b = (s: string) => new TextEncoder().encode(s);
    expect(formatReply([b("a"), [1, b("x")], []])).toBe('1) "a"\n2) 1) (integer) 1\n   2) "x"\n3) (empty array)\n');
    const ten = Array.from({ length: 10 }, (_, i) => i);
    expect(formatReply(ten).split("\n")[0]).toBe(" 1) (integer) 0");
    expect(formatReply(ten).split("\n")[9]).toBe("10) (integer) 9");
    expect(formatReply(b('q"\\\x00\xff'))).toBe('"q\\"\\\\\\x00\\xc3\\xbf"\n');
  });
});

describe("no server", () => {
  const cases: string[][] = [["ping"], ["get", "k"], ["set", "k", "v"], ["del", "k"], ["ttl", "k"], ["keys"], ["incr", "k"], ["cli", "PING"]];
  for (const args of cases) {
    test(`kv ${args.join(" ")}: one-line error naming the address, exit 3, within seconds`, async () => {
      const addr = `127.0.0.1:${freePort()}`;
      const r = await run(args, { addr });
      expect(r.code).toBe(3);
      expect(r.stdout).toBe("");
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(addr);
      expect(r.ms).toBeLessThan(3000);
    });
  }

  test("a server that never answers: --timeout bounds the wait, exit 3", async () => {
    const f = startFake(() => ({ hang: true }));
    try {
      const r = await run(["get", "k", "--timeout", "300"], { addr: f.addr });
      expect(r.code).toBe(3);
      expect(r.stderr).toContain("timed out");
      expect(r.ms).toBeLessThan(3000);
    } finally {
      f.stop();
    }
  });
});
