// The fault-injecting proxy (tests/helpers/fault-proxy.ts) alone, in front of an echo server.
import { afterAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { FaultProxy } from "../helpers/fault-proxy.ts";

/** An echo server that counts the connections and bytes it saw. */
function echoServer(): { listener: TCPSocketListener<undefined>; seen: { conns: number; bytes: number } } {
  const seen = { conns: 0, bytes: 0 };
  const listener = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: () => {
        seen.conns++;
      },
      data: (s, chunk) => {
        seen.bytes += chunk.length;
        // Tests send little at a time, except the large one, which reads as it goes: loopback takes it.
        let off = 0;
        while (off < chunk.length) {
          const n = s.write(chunk, off, chunk.length - off);
          if (n <= 0) break;
          off += n;
        }
        if (off < chunk.length) pendingEcho.set(s, Buffer.concat([pendingEcho.get(s) ?? Buffer.alloc(0), chunk.subarray(off)]));
      },
      drain: (s) => {
        const rest = pendingEcho.get(s);
        if (!rest) return;
        const n = s.write(rest);
        if (n >= rest.length) pendingEcho.delete(s);
        else if (n > 0) pendingEcho.set(s, rest.subarray(n));
      },
    },
  });
  return { listener, seen };
}
const pendingEcho = new Map<Socket<undefined>, Buffer>();

interface TestConn {
  send(b: Uint8Array | string): void;
  received(): Buffer;
  closed(): boolean;
  waitFor(pred: () => boolean, ms: number): Promise<boolean>;
  close(): void;
}

async function connect(port: number): Promise<TestConn> {
  const st = { chunks: [] as Buffer[], closed: false, out: [] as Buffer[] };
  const s = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, chunk) => void st.chunks.push(Buffer.from(chunk)),
      drain: (sock) => {
        while (st.out.length > 0) {
          const head = st.out[0] as Buffer;
          const n = sock.write(head);
          if (n < head.length) {
            if (n > 0) st.out[0] = head.subarray(n);
            return;
          }
          st.out.shift();
        }
      },
      close: () => void (st.closed = true),
      error: () => void (st.closed = true),
    },
  });
  return {
    send(b) {
      const buf = Buffer.from(b);
      if (st.out.length > 0) return void st.out.push(buf);
      const n = s.write(buf);
      if (n < buf.length) st.out.push(buf.subarray(Math.max(n, 0)));
    },
    received: () => Buffer.concat(st.chunks),
    closed: () => st.closed,
    async waitFor(pred, ms) {
      const deadline = performance.now() + ms;
      while (!pred()) {
        if (performance.now() > deadline) return false;
        await Bun.sleep(5);
      }
      return true;
    },
    close: () => s.end(),
  };
}

const proxies: FaultProxy[] = [];
const servers: TCPSocketListener<undefined>[] = [];
afterAll(() => {
  for (const p of proxies) p.stop();
  for (const s of servers) s.stop(true);
});

function setup(): { proxy: FaultProxy; seen: { conns: number; bytes: number } } {
  const { listener, seen } = echoServer();
  servers.push(listener);
  const proxy = FaultProxy.start({ targetPort: listener.port, name: "test" });
  proxies.push(proxy);
  return { proxy, seen };
}

describe("fault proxy", () => {
  test("pass: bytes go through both ways unchanged, 8 MiB included (backpressure)", async () => {
    const { proxy } = setup();
    const c = await connect(proxy.port);
    c.send("hello");
    expect(await c.waitFor(() => c.received().toString() === "hello", 5000)).toBe(true);
    const big = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >>> 11)) & 0xff;
    c.send(big);
    expect(await c.waitFor(() => c.received().length === 5 + big.length, 20_000)).toBe(true);
    expect(c.received().subarray(5).equals(big)).toBe(true);
    expect(proxy.stats.bytesForwarded).toBe(2 * (5 + big.length));
    c.close();
  }, 30_000);

  test("drop: open connections are cut, new ones accepted and swallowed; back to pass, links work again", async () => {
    const { proxy, seen } = setup();
    const before = await connect(proxy.port);
    before.send("x");
    expect(await before.waitFor(() => before.received().length === 1, 5000)).toBe(true);
    expect(seen.conns).toBe(1);

    proxy.setMode({ kind: "drop" });
    expect(await before.waitFor(() => before.closed(), 5000)).toBe(true);
    const hole = await connect(proxy.port);
    hole.send("into the void");
    // Nothing reaches the target and nothing comes back, while the connection stays open.
    expect(await hole.waitFor(() => proxy.stats.bytesDropped === 13, 5000)).toBe(true);
    await Bun.sleep(100);
    expect(hole.received().length).toBe(0);
    expect(hole.closed()).toBe(false);
    expect(seen.conns).toBe(1);
    expect(seen.bytes).toBe(1);

    proxy.setMode({ kind: "pass" });
    expect(await hole.waitFor(() => hole.closed(), 5000)).toBe(true);
    const after = await connect(proxy.port);
    after.send("back");
    expect(await after.waitFor(() => after.received().toString() === "back", 5000)).toBe(true);
    expect(seen.conns).toBe(2);
    expect(proxy.stats.cut).toBe(2);
    after.close();
  });

  test("delay: each direction is held the delay, in order", async () => {
    const { proxy } = setup();
    const c = await connect(proxy.port);
    c.send("warm");
    expect(await c.waitFor(() => c.received().length === 4, 5000)).toBe(true);
    proxy.setMode({ kind: "delay", ms: 150 });
    const t0 = performance.now();
    let expected = "warm";
    for (let i = 0; i < 50; i++) {
      c.send(`<${i}>`);
      expected += `<${i}>`;
    }
    expect(await c.waitFor(() => c.received().length === expected.length, 10_000)).toBe(true);
    // Held once on the way in and once on the way back: never sooner than twice the delay.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(300);
    expect(c.received().toString()).toBe(expected);
    // Back to pass: what is still held goes first, then the rest, in order.
    c.send("a");
    proxy.setMode({ kind: "pass" });
    c.send("b");
    expect(await c.waitFor(() => c.received().length === expected.length + 2, 10_000)).toBe(true);
    expect(c.received().toString()).toBe(`${expected}ab`);
    expect(c.closed()).toBe(false);
    c.close();
  });

  test("a target that is down: the connection is closed; cut() closes without changing the mode", async () => {
    const { listener } = echoServer();
    const port = listener.port;
    listener.stop(true);
    const proxy = FaultProxy.start({ targetPort: port });
    proxies.push(proxy);
    const c = await connect(proxy.port);
    expect(await c.waitFor(() => c.closed(), 5000)).toBe(true);

    const { proxy: p2 } = setup();
    const d = await connect(p2.port);
    d.send("1");
    expect(await d.waitFor(() => d.received().length === 1, 5000)).toBe(true);
    p2.cut();
    expect(await d.waitFor(() => d.closed(), 5000)).toBe(true);
    expect(p2.mode.kind).toBe("pass");
    const e = await connect(p2.port);
    e.send("2");
    expect(await e.waitFor(() => e.received().toString() === "2", 5000)).toBe(true);
    e.close();
  });

  test("stop: the port is released and connections closed", async () => {
    const { proxy } = setup();
    const c = await connect(proxy.port);
    const port = proxy.port;
    proxy.stop();
    expect(await c.waitFor(() => c.closed(), 5000)).toBe(true);
    expect(() => proxy.port).toThrow("closed");
    let refused = false;
    try {
      const again = await connect(port);
      again.close();
    } catch {
      refused = true;
    }
    expect(refused).toBe(true);
  });
});
