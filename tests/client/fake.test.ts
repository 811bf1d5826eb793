// Client behaviour against scripted fake servers: MOVED, TRYAGAIN/CLUSTERDOWN/LOADING, timeouts,
// broken connections (outcome unknown vs. known not applied), seeds, close().
import { afterEach, describe, expect, test } from "bun:test";
import {
  ClientClosedError,
  ConnectionError,
  createClient,
  OutcomeUnknownError,
  ServerError,
  TimeoutError,
  type Client,
} from "../../src/client/index.ts";
import { bulk, type FakeServer, freePort, startFake } from "./_fake.ts";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});
function fake(...args: Parameters<typeof startFake>): FakeServer {
  const f = startFake(...args);
  cleanups.push(() => f.stop());
  return f;
}
function client(opts: Parameters<typeof createClient>[0]): Client {
  const c = createClient(opts);
  cleanups.push(() => c.destroy());
  return c;
}

/** A tiny in-memory store answering GET/SET/PING like a server would. */
function store(): (argv: string[]) => string {
  const m = new Map<string, string>();
  return (argv) => {
    const cmd = argv[0]!.toUpperCase();
    if (cmd === "SET") {
      m.set(argv[1]!, argv[2]!);
      return "+OK\r\n";
    }
    if (cmd === "GET") {
      const v = m.get(argv[1]!);
      return v === undefined ? "$-1\r\n" : bulk(v);
    }
    if (cmd === "PING") return "+PONG\r\n";
    return `-ERR unknown command '${argv[0]}'\r\n`;
  };
}

describe("MOVED", () => {
  test("follows -MOVED to the named node and stays there", async () => {
    const leader = fake(store());
    const follower = fake(() => `-MOVED 0 ${leader.addr}\r\n`);
    const kv = client({ addrs: follower.addr, timeoutMs: 3000 });
    expect(await kv.set("k", "v")).toBe(true);
    expect(await kv.get("k")).toBe("v");
    expect(kv.connectedAddr).toBe(leader.addr);
    // One refused SET on the follower; everything else on the leader.
    expect(follower.log.map((e) => e.argv[0])).toEqual(["SET"]);
    expect(leader.log.map((e) => e.argv[0])).toEqual(["SET", "GET"]);
  });

  test("a redirect loop stops after redirectsMax hops with ServerError MOVED", async () => {
    let self = "";
    const loop = fake(() => `-MOVED 0 ${self}\r\n`);
    self = loop.addr;
    const kv = client({ addrs: loop.addr, timeoutMs: 3000, redirectsMax: 3 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe("KV_SERVER");
    expect(err.prefix).toBe("MOVED");
    expect(loop.log.length).toBe(4);
  });

  test("pipelined calls all follow the redirect, in order", async () => {
    const leader = fake(store());
    const follower = fake(() => `-MOVED 0 ${leader.addr}\r\n`);
    const kv = client({ addrs: follower.addr, timeoutMs: 3000 });
    const calls = [];
    for (let i = 0; i < 100; i++) calls.push(kv.set(`k${i}`, String(i)));
    expect((await Promise.all(calls)).every((x) => x === true)).toBe(true);
    const gets = await Promise.all(Array.from({ length: 100 }, (_, i) => kv.get(`k${i}`)));
    expect(gets).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });
});

describe("retryable refusals", () => {
  for (const prefix of ["TRYAGAIN", "CLUSTERDOWN", "LOADING"]) {
    test(`-${prefix} is retried with backoff until it succeeds`, async () => {
      const s = store();
      const f = fake((argv, _c, n) => (n < 3 ? `-${prefix} not now\r\n` : s(argv)));
      const kv = client({ addrs: f.addr, timeoutMs: 5000, backoffMsMin: 5 });
      expect(await kv.set("k", "v")).toBe(true);
      expect(f.log.length).toBe(4);
    });

    test(`-${prefix} past the deadline rejects with its ServerError`, async () => {
      const f = fake(() => `-${prefix} still not\r\n`);
      const kv = client({ addrs: f.addr, timeoutMs: 300, backoffMsMin: 10, backoffMsMax: 50 });
      const started = performance.now();
      const err = await kv.get("k").catch((e) => e);
      // Either the last refusal itself, or (when the last retry was in flight at the deadline)
      // a TimeoutError whose cause is that refusal.
      const refusal = err instanceof TimeoutError ? err.cause : err;
      expect(refusal).toBeInstanceOf(ServerError);
      expect((refusal as ServerError).prefix).toBe(prefix);
      expect(performance.now() - started).toBeLessThan(2000);
      expect(f.log.length).toBeGreaterThan(1);
    });
  }

  test("-TRYAGAIN node shutting down: the connection is left at once, the retry goes to the next seed", async () => {
    const s = store();
    const going = fake(() => "-TRYAGAIN node shutting down: retry on another node\r\n");
    const other = fake(s);
    const kv = client({ addrs: [going.addr, other.addr], timeoutMs: 3000, backoffMsMin: 5 });
    expect(await kv.set("k", "v")).toBe(true);
    expect(await kv.get("k")).toBe("v");
    // One refusal, nothing more sent to the node going away.
    expect(going.log.map((e) => e.argv[0])).toEqual(["SET"]);
    expect(other.log.map((e) => e.argv[0])).toEqual(["SET", "GET"]);
    expect(kv.connectedAddr).toBe(other.addr);
  });

  test("-REMOVED (a node removed from its cluster): the connection is left, the retry goes to the next seed; with one seed, the error", async () => {
    const s = store();
    const removed = fake(() => "-REMOVED node 1 was removed from cluster c at log index 9: it serves no more; use another member\r\n");
    const other = fake(s);
    const kv = client({ addrs: [removed.addr, other.addr], timeoutMs: 3000, backoffMsMin: 5 });
    expect(await kv.set("k", "v")).toBe(true);
    expect(await kv.get("k")).toBe("v");
    expect(removed.log.map((e) => e.argv[0])).toEqual(["SET"]);
    expect(other.log.map((e) => e.argv[0])).toEqual(["SET", "GET"]);
    expect(kv.connectedAddr).toBe(other.addr);
    const alone = client({ addrs: removed.addr, timeoutMs: 3000, backoffMsMin: 5 });
    const err = await alone.get("k").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.prefix).toBe("REMOVED");
  });

  test("other errors are not retried and carry their prefix", async () => {
    const f = fake(() => "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    const kv = client({ addrs: f.addr, timeoutMs: 1000 });
    const err = await kv.get("k").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.prefix).toBe("WRONGTYPE");
    expect(f.log.length).toBe(1);
  });

  test("-UNCERTAIN becomes OutcomeUnknownError with the ServerError as cause", async () => {
    const f = fake(() => "-UNCERTAIN leadership lost after proposing\r\n");
    const kv = client({ addrs: f.addr, timeoutMs: 1000 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.code).toBe("KV_OUTCOME_UNKNOWN");
    expect(err.outcomeUnknown).toBe(true);
    expect(err.cause).toBeInstanceOf(ServerError);
  });
});

describe("broken connections", () => {
  test("a write in flight when the connection drops fails with OutcomeUnknownError and is not re-sent", async () => {
    const s = store();
    const f = fake((argv, _c, n) => (n === 0 ? { drop: true } : s(argv)));
    const kv = client({ addrs: f.addr, timeoutMs: 3000 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.outcomeUnknown).toBe(true);
    expect(err.cause).toBeInstanceOf(ConnectionError);
    expect(err.cause.code).toBe("KV_CONNECTION");
    // The client reconnects; the next call works; the SET was sent exactly once.
    expect(await kv.ping()).toBe("PONG");
    expect(f.log.filter((e) => e.argv[0] === "SET").length).toBe(1);
  });

  test("a read in flight when the connection drops is re-sent on a new connection", async () => {
    const s = store();
    const f = fake((argv, _c, n) => (n === 0 ? { drop: true } : s(argv)));
    const kv = client({ addrs: f.addr, timeoutMs: 3000 });
    expect(await kv.get("k")).toBe(null);
    expect(f.log.map((e) => [e.conn, e.argv[0]])).toEqual([
      [1, "GET"],
      [2, "GET"],
    ]);
  });

  test("calls behind a dropped write on the same connection: sent writes unknown, reads retried", async () => {
    const s = store();
    let dropped = false;
    const f = fake((argv) => {
      if (!dropped && argv[0] === "SET" && argv[1] === "b") {
        dropped = true;
        return { drop: true };
      }
      return s(argv);
    });
    const kv = client({ addrs: f.addr, timeoutMs: 3000 });
    await kv.ping();
    const [a, b, g] = await Promise.allSettled([kv.set("a", "1"), kv.set("b", "2"), kv.get("a")]);
    expect(a.status).toBe("fulfilled");
    expect(b.status === "rejected" && b.reason instanceof OutcomeUnknownError).toBe(true);
    expect(g.status === "fulfilled" && g.value === "1").toBe(true);
  });

  test("a malformed reply drops the connection; the write's outcome is unknown", async () => {
    const f = fake(() => "?garbage\r\n");
    const kv = client({ addrs: f.addr, timeoutMs: 1000 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.cause.code).toBe("KV_PROTOCOL");
  });
});

describe("timeouts", () => {
  test("a read that gets no reply rejects with TimeoutError (outcome known)", async () => {
    const f = fake(() => ({ hang: true }));
    const kv = client({ addrs: f.addr, timeoutMs: 200 });
    const started = performance.now();
    const err = await kv.get("k").catch((e) => e);
    const took = performance.now() - started;
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.code).toBe("KV_TIMEOUT");
    expect(err.outcomeUnknown).toBe(false);
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1500);
  });

  test("a write that gets no reply times out with outcomeUnknown", async () => {
    const f = fake(() => ({ hang: true }));
    const kv = client({ addrs: f.addr, timeoutMs: 150 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.outcomeUnknown).toBe(true);
  });

  test("per-call timeoutMs overrides the client's", async () => {
    const f = fake(() => ({ hang: true }));
    const kv = client({ addrs: f.addr, timeoutMs: 10_000 });
    const started = performance.now();
    const err = await kv.command(["GET", "k"], { timeoutMs: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  test("a late reply after a timeout is discarded; the next call gets its own reply", async () => {
    let first = true;
    const f = fake((argv, c) => {
      if (first) {
        first = false;
        setTimeout(() => c.socket.write(bulk("late")), 300);
        return { hang: true };
      }
      return bulk(`reply-to-${argv[1]}`);
    });
    const kv = client({ addrs: f.addr, timeoutMs: 100 });
    expect(await kv.get("a").catch((e) => e)).toBeInstanceOf(TimeoutError);
    await Bun.sleep(350);
    expect(await kv.command(["GET", "b"], { timeoutMs: 1000 })).toBe("reply-to-b");
  });

  test("no server: waiting calls fail with ConnectionError naming the address at their deadline", async () => {
    const port = freePort();
    const kv = client({ addrs: `127.0.0.1:${port}`, timeoutMs: 300, backoffMsMin: 10 });
    const started = performance.now();
    const err = await kv.get("k").catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.code).toBe("KV_CONNECTION");
    expect(err.outcomeUnknown).toBe(false);
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  test("failFast: a refused connection fails the call at once", async () => {
    const port = freePort();
    const kv = client({ addrs: `127.0.0.1:${port}`, timeoutMs: 10_000, failFast: true });
    const started = performance.now();
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.addr).toBe(`127.0.0.1:${port}`);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("seeds and lifecycle", () => {
  test("with several seeds, finds one that answers", async () => {
    const alive = fake(store());
    const kv = client({ addrs: [`127.0.0.1:${freePort()}`, `127.0.0.1:${freePort()}`, alive.addr], timeoutMs: 3000 });
    expect(await kv.ping()).toBe("PONG");
    expect(kv.connectedAddr).toBe(alive.addr);
  });

  test("a seed that stops answering is dropped and the next seed is used", async () => {
    const hung = fake(() => ({ hang: true }));
    const alive = fake(store());
    const kv = client({ addrs: [hung.addr, alive.addr], timeoutMs: 300 });
    const err = await kv.set("k", "v").catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.outcomeUnknown).toBe(true);
    await Bun.sleep(50);
    expect(await kv.ping()).toBe("PONG");
    expect(kv.connectedAddr).toBe(alive.addr);
    expect(hung.log.map((e) => e.argv[0])).toEqual(["SET"]);
  });

  test("pub/sub and MONITOR are refused up front (they would desynchronise the pipeline)", async () => {
    const f = fake(store());
    const kv = client({ addrs: f.addr, timeoutMs: 1000 });
    for (const cmd of ["SUBSCRIBE", "psubscribe", "MONITOR"]) {
      expect(await kv.command([cmd, "ch"]).catch((e) => e)).toBeInstanceOf(TypeError);
    }
    expect(await kv.ping()).toBe("PONG");
    expect(f.log.map((e) => e.argv[0])).toEqual(["PING"]);
  });

  test("url option", async () => {
    const f = fake(store());
    const kv = client({ url: `redis://${f.addr}`, timeoutMs: 1000 });
    expect(await kv.ping()).toBe("PONG");
  });

  test("close() lets calls in flight finish, then rejects new ones with ClientClosedError", async () => {
    const s = store();
    const f = fake((argv, c) => {
      const r = s(argv);
      setTimeout(() => c.socket.write(r), 50);
      return { hang: true };
    });
    const kv = client({ addrs: f.addr, timeoutMs: 3000 });
    const calls = [kv.set("a", "1"), kv.get("a"), kv.ping()];
    const closed = kv.close();
    const err = await kv.get("a").catch((e) => e);
    expect(err).toBeInstanceOf(ClientClosedError);
    expect(err.code).toBe("KV_CLOSED");
    expect(await Promise.all(calls)).toEqual([true, "1", "PONG"]);
    await closed;
  });

  test("destroy() fails calls in flight at once; sent writes are marked outcomeUnknown", async () => {
    const f = fake(() => ({ hang: true }));
    const kv = client({ addrs: f.addr, timeoutMs: 5000 });
    await Bun.sleep(0);
    const w = kv.set("a", "1").catch((e) => e);
    const r = kv.get("a").catch((e) => e);
    while (f.log.length < 2) await Bun.sleep(5);
    kv.destroy();
    const [we, re] = await Promise.all([w, r]);
    expect(we).toBeInstanceOf(ClientClosedError);
    expect(we.outcomeUnknown).toBe(true);
    expect(re).toBeInstanceOf(ClientClosedError);
    expect(re.outcomeUnknown).toBe(false);
  });
});
