// The compiled binary over raw sockets: inline and multibulk commands, pipelining, RESP3,
// bad input of every kind, limits, and many concurrent clients with every reply checked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rawConnect, startKv, type KvProcess } from "../helpers/server.ts";
import { encodeCommand } from "../../src/resp/request-parser.ts";

let kv: KvProcess;

beforeAll(async () => {
  kv = await startKv(["--client-output-buffer-limit", "1mb"]);
});

afterAll(async () => {
  await kv?.stop();
});

describe("as nc/telnet send it", () => {
  test("inline SET/GET with CRLF and bare LF", async () => {
    const c = await rawConnect(kv.port);
    c.write("SET foo bar\r\n");
    await c.waitFor((r) => r === "+OK\r\n");
    c.clear();
    c.write("GET foo\n");
    await c.waitFor((r) => r === "$3\r\nbar\r\n");
    c.clear();
    c.write('SET "key with space" \'v\'\nGET "key with space"\nDEL foo "key with space"\r\nGET foo\r\n');
    await c.waitFor((r) => r === "+OK\r\n$1\r\nv\r\n:2\r\n$-1\r\n");
    c.close();
  });

  test("QUIT answers +OK and closes", async () => {
    const c = await rawConnect(kv.port);
    c.write("PING\r\nQUIT\r\nPING\r\n");
    const got = await c.waitFor((_r, closed) => closed);
    expect(got).toBe("+PONG\r\n+OK\r\n");
  });

  test("a pipeline in one write gets every reply, in order, in one read", async () => {
    const c = await rawConnect(kv.port);
    let wire = "";
    let expected = "";
    for (let i = 0; i < 500; i++) {
      wire += `SET p${i} v${i}\r\nGET p${i}\r\nINCR n${i}\r\n`;
      expected += `+OK\r\n$${`v${i}`.length}\r\nv${i}\r\n:1\r\n`;
    }
    c.write(wire);
    const got = await c.waitFor((r) => r.length >= expected.length);
    expect(got).toBe(expected);
    c.close();
  });

  test("one byte at a time", async () => {
    const c = await rawConnect(kv.port);
    const wire = encodeCommand(["SET", "slow", "bytes\r\nwith\x00nul"]).toString("latin1") + "GET slow\r\n";
    for (const ch of wire) {
      c.write(ch);
      await Bun.sleep(0);
    }
    await c.waitFor((r) => r === "+OK\r\n$15\r\nbytes\r\nwith\x00nul\r\n");
    c.close();
  });
});

describe("RESP3", () => {
  test("HELLO 3 switches this connection only: maps and _ nulls", async () => {
    const a = await rawConnect(kv.port);
    const b = await rawConnect(kv.port);
    a.write("HELLO 3\r\n");
    const hello = await a.waitFor((r) => r.includes("modules"));
    expect(hello.startsWith("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")).toBe(true);
    expect(hello).toContain("$5\r\nproto\r\n:3\r\n");
    await a.waitFor((r) => r.endsWith("$7\r\nmodules\r\n*0\r\n"));
    a.clear();
    a.write("GET missing-key\r\n");
    await a.waitFor((r) => r === "_\r\n");
    b.write("GET missing-key\r\n");
    await b.waitFor((r) => r === "$-1\r\n");
    a.clear();
    a.write("HELLO 4\r\n");
    await a.waitFor((r) => r === "-NOPROTO unsupported protocol version\r\n");
    a.close();
    b.close();
  });
});

describe("bad input gets a clear error; everyone else keeps being served", () => {
  const cases: [string, string, string][] = [
    ["garbage multibulk", "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"],
    ["missing $", "*1\r\n:12\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"],
    ["bulk length past proto-max-bulk-len", "*2\r\n$3\r\nGET\r\n$9999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"],
    ["unbalanced quotes", 'SET "oops\r\n', "-ERR Protocol error: unbalanced quotes in request\r\n"],
    ["too many arguments", "*99999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"],
  ];
  for (const [name, input, reply] of cases) {
    test(`${name}: error, then the connection closes`, async () => {
      const bystander = await rawConnect(kv.port);
      const c = await rawConnect(kv.port);
      c.write("PING\r\n" + input);
      const got = await c.waitFor((_r, closed) => closed);
      expect(got).toBe("+PONG\r\n" + reply);
      bystander.write("PING\r\n");
      await bystander.waitFor((r) => r === "+PONG\r\n");
      bystander.close();
    });
  }

  test("a protocol error behind unapplied writes: their replies first, then the error, then the close", async () => {
    const c = await rawConnect(kv.port);
    c.write("SET pe 1\r\nINCR pe\r\nGET pe\r\n*x\r\n");
    const got = await c.waitFor((_r, closed) => closed);
    expect(got).toBe("+OK\r\n:2\r\n$1\r\n2\r\n-ERR Protocol error: invalid multibulk length\r\n");
  });

  test("an unterminated inline line past 64 KiB", async () => {
    const c = await rawConnect(kv.port);
    for (let i = 0; i < 70 && !c.isClosed(); i++) {
      c.write("x".repeat(1024));
      await Bun.sleep(1);
    }
    const got = await c.waitFor((_r, closed) => closed);
    expect(got).toBe("-ERR Protocol error: too big inline request\r\n");
  });

  test("unknown commands and wrong arity, as Redis words them", async () => {
    const c = await rawConnect(kv.port);
    c.write("FOO bar baz\r\nFOO\r\nGET\r\nGET a b\r\nset k\r\nPING\r\n");
    await c.waitFor((r) => r.endsWith("+PONG\r\n"));
    expect(c.received()).toBe(
      "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n" +
        "-ERR unknown command 'FOO', with args beginning with: \r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n" +
        "-ERR wrong number of arguments for 'set' command\r\n" +
        "+PONG\r\n",
    );
    c.close();
  });

  test("AUTH and HELLO AUTH as a Redis whose only user has no password; CLIENT SETINFO refuses what would forge CLIENT LIST", async () => {
    const c = await rawConnect(kv.port);
    c.write("AUTH default secret\r\nAUTH bob secret\r\nAUTH secret\r\nHELLO 2 AUTH bob secret\r\n");
    c.write('CLIENT SETINFO LIB-NAME "x\\nid=999 name=admin"\r\nCLIENT SETINFO lib-ver "1 2"\r\nCLIENT SETINFO lib-name ioredis\r\nPING\r\n');
    await c.waitFor((r) => r.endsWith("+PONG\r\n"));
    expect(c.received()).toBe(
      "+OK\r\n" +
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n" +
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n" +
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n" +
        "-ERR lib-name cannot contain spaces, newlines or special characters.\r\n" +
        "-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n" +
        "+OK\r\n+PONG\r\n",
    );
    c.clear();
    c.write("CLIENT INFO\r\n");
    await c.waitFor((r) => r.includes("\r\n", r.indexOf("\r\n") + 2));
    expect(c.received()).toContain("lib-name=ioredis");
    expect(c.received()).not.toContain("name=admin");
    c.close();
  });

  test("a client that never reads its replies is paused; others are served; nothing is lost", async () => {
    // Fill the store with a value whose GET replies pile up unread.
    const setter = await rawConnect(kv.port);
    const big = "v".repeat(64 * 1024);
    setter.write(encodeCommand(["SET", "bigval", big]));
    await setter.waitFor((r) => r === "+OK\r\n");
    setter.close();

    // A raw socket that stops reading: pause the test client's reads with Bun's socket.pause().
    let receivedBytes = 0;
    let resolveDone: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const requests = 2000; // 2000 x 64 KiB = 128 MiB of replies, far past the 1 MiB limit
    const expectedBytes = requests * (big.length + `$${big.length}\r\n\r\n`.length);
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port: kv.port,
      socket: {
        data(_s, chunk) {
          receivedBytes += chunk.length;
          if (receivedBytes >= expectedBytes) resolveDone();
        },
      },
    });
    sock.pause();
    const oneGet = "GET bigval\r\n";
    const wire = oneGet.repeat(requests);
    let off = 0;
    const deadline = Date.now() + 10_000;
    while (off < wire.length && Date.now() < deadline) {
      const n = sock.write(wire.slice(off));
      if (n > 0) off += n;
      else await Bun.sleep(5);
    }
    await Bun.sleep(200);

    // The server keeps serving others meanwhile, and its memory stays bounded.
    const other = await rawConnect(kv.port);
    other.write("PING\r\n");
    await other.waitFor((r) => r === "+PONG\r\n");
    other.write("CLIENT LIST\r\n");
    const list = await other.waitFor((r) => r.includes("cmd=client"));
    const omems = [...list.matchAll(/omem=(\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...omems)).toBeLessThan(8 * 1024 * 1024);
    other.close();

    // Once the slow client reads again it receives every reply.
    sock.resume();
    const timeout = setTimeout(() => resolveDone(), 30_000);
    await done;
    clearTimeout(timeout);
    expect(receivedBytes).toBe(expectedBytes);
    sock.end();
  }, 60_000);

  test("reads queued behind a write whose replies pass the output limit: the client is closed, others go on", async () => {
    const setter = await rawConnect(kv.port);
    const big = "q".repeat(100 * 1024);
    setter.write(encodeCommand(["SET", "bigq", big]));
    await setter.waitFor((r) => r === "+OK\r\n");
    setter.write("INFO stats\r\n");
    const before = Number(/client_output_buffer_limit_disconnections:(\d+)/.exec(await setter.waitFor((r) => r.includes("kv_idle")))![1]);
    setter.clear();

    // One write: a SET, then 300 GETs of 100 KB (30 MB of replies against a 1 MiB limit) that wait
    // behind it for its fsync, then another SET and more GETs behind that.
    const c = await rawConnect(kv.port);
    c.write("SET qa 1\r\n" + "GET bigq\r\n".repeat(300) + "SET qb 2\r\n" + "GET bigq\r\n".repeat(10));
    const got = await c.waitFor((_r, closed) => closed, 10_000);
    // What the kernel took before the limit was reached, then the close: a prefix of the replies.
    const stream = "+OK\r\n" + `$${big.length}\r\n${big}\r\n`.repeat(300);
    expect(got.length).toBeLessThan(10 * 1024 * 1024);
    expect(stream.startsWith(got)).toBe(true);

    // The server is up; both writes were applied (their outcome was unknown to that client).
    setter.write("PING\r\nGET qa\r\nGET qb\r\nINFO stats\r\n");
    const after = await setter.waitFor((r) => r.includes("kv_idle"));
    expect(after.startsWith("+PONG\r\n$1\r\n1\r\n$1\r\n2\r\n")).toBe(true);
    expect(Number(/client_output_buffer_limit_disconnections:(\d+)/.exec(after)![1])).toBe(before + 1);
    setter.close();
  }, 30_000);

  test("behind a write, one reply larger than the limit still goes out; replies of writes themselves are bounded too", async () => {
    const setter = await rawConnect(kv.port);
    const huge = "h".repeat(8 * 1024 * 1024); // one value far past the 1 MiB limit
    for (let i = 0; i < 8; i++) {
      setter.write(encodeCommand(["APPEND", "hugeq", huge.slice(i * 1024 * 1024, (i + 1) * 1024 * 1024)]));
      await setter.waitFor((r) => r === `:${(i + 1) * 1024 * 1024}\r\n`, 10_000);
      setter.clear();
    }
    // A client that reads only once the server has produced everything: the kernel cannot hold
    // 8 MB for it, so most of the reply is still unsent when PING runs behind it.
    const want = `+OK\r\n$${huge.length}\r\n${huge}\r\n+PONG\r\n`;
    const chunks: Buffer[] = [];
    let closed = false;
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port: kv.port,
      socket: { data: (_s, d) => void chunks.push(Buffer.from(d)), close: () => void (closed = true) },
    });
    sock.pause();
    sock.write("SET qc 1\r\nGET hugeq\r\nPING\r\n");
    await Bun.sleep(300);
    sock.resume();
    for (let i = 0; i < 1000 && !closed && chunks.reduce((n, c) => n + c.length, 0) < want.length; i++) await Bun.sleep(10);
    expect(closed).toBe(false);
    expect(Buffer.concat(chunks).toString("latin1")).toBe(want);
    sock.end();

    // GETEX with an option is a logged write that returns the value: 300 of 100 KB pipelined.
    setter.write(encodeCommand(["SET", "bigw", "w".repeat(100 * 1024)]));
    await setter.waitFor((r) => r === "+OK\r\n");
    const w = await rawConnect(kv.port);
    w.write("GETEX bigw PERSIST\r\n".repeat(300));
    const got = await w.waitFor((_r, closed) => closed, 10_000);
    expect(got.length).toBeLessThan(10 * 1024 * 1024); // of 30 MB
    expect(`$${100 * 1024}\r\n${"w".repeat(100 * 1024)}\r\n`.repeat(300).startsWith(got)).toBe(true);
    setter.clear();
    setter.write("PING\r\n");
    await setter.waitFor((r) => r === "+PONG\r\n");
    setter.close();
  }, 30_000);

  test("more clients than --maxclients are refused with Redis's error", async () => {
    const small = await startKv(["--maxclients", "20"]);
    const clients = [];
    for (let i = 0; i < 20; i++) clients.push(await rawConnect(small.port));
    clients[19]!.write("PING\r\n");
    await clients[19]!.waitFor((r) => r === "+PONG\r\n");
    const extra = await rawConnect(small.port);
    const got = await extra.waitFor((_r, closed) => closed);
    expect(got).toBe("-ERR max number of clients reached\r\n");
    for (const c of clients) c.close();
    // Slots free up again.
    const deadline = Date.now() + 5_000;
    let ok = false;
    while (!ok && Date.now() < deadline) {
      const c = await rawConnect(small.port);
      c.write("PING\r\n");
      const r = await c.waitFor((r, closed) => r.length > 0 || closed);
      ok = r === "+PONG\r\n";
      c.close();
      if (!ok) await Bun.sleep(50);
    }
    expect(ok).toBe(true);
    await small.stop();
  }, 30_000);
});

describe("concurrency", () => {
  test("100 concurrent clients x 1,000 operations, every reply checked", async () => {
    const clients = await Promise.all(Array.from({ length: 100 }, () => rawConnect(kv.port)));
    clients[0]!.write("FLUSHALL\r\n");
    await clients[0]!.waitFor((r) => r === "+OK\r\n");
    await Promise.all(
      clients.map(async (c, ci) => {
        // 10 batches of 100 pipelined operations: SET, GET, INCR on keys of this client
        // and INCR on one shared counter.
        for (let batch = 0; batch < 10; batch++) {
          c.clear();
          let wire = "";
          let expected = "";
          for (let j = 0; j < 25; j++) {
            const k = `c${ci}:k${batch * 25 + j}`;
            const v = `value-${ci}-${batch}-${j}`;
            wire += `SET ${k} ${v}\r\nGET ${k}\r\nINCR c${ci}:n\r\nINCR shared\r\n`;
            expected += `+OK\r\n$${v.length}\r\n${v}\r\n:${batch * 25 + j + 1}\r\n`;
            expected += "SHARED";
          }
          c.write(wire);
          // Wait for all 100 replies (each GET reply has two CRLFs, the rest one).
          const got = await c.waitFor((r) => (r.match(/\r\n/g)?.length ?? 0) >= 25 * 5, 20_000);
          // Check each reply; the shared counter's value depends on interleaving, so check its shape.
          const parts = expected.split("SHARED");
          let rest = got;
          for (const p of parts) {
            if (p === "") continue;
            expect(rest.startsWith(p)).toBe(true);
            rest = rest.slice(p.length);
            const m = /^:(\d+)\r\n/.exec(rest);
            expect(m).not.toBeNull();
            rest = rest.slice(m![0].length);
          }
          expect(rest).toBe("");
        }
      }),
    );
    const check = clients[0]!;
    check.clear();
    check.write("GET shared\r\nDBSIZE\r\n");
    // 100 clients x 250 INCR shared; keys: 100 x 250 values + 100 counters + shared
    await check.waitFor((r) => r === `$5\r\n25000\r\n:${100 * 250 + 100 + 1}\r\n`);
    for (const c of clients) c.close();
  }, 60_000);
});
