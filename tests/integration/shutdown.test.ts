// Graceful shutdown on SIGTERM/SIGINT: stop accepting, answer what was received, exit 0 with a
// log line; a second signal exits at once.
import { describe, expect, test } from "bun:test";
import { rawConnect, startKv } from "../helpers/server.ts";

/** A client that does not read 120 MB of replies it asked for: it keeps a shutdown flushing. */
async function holdShutdownOpen(port: number) {
  const slow = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
  slow.pause();
  const setter = await rawConnect(port);
  setter.write(`SET big ${"x".repeat(60_000)}\r\n`);
  await setter.waitFor((r) => r === "+OK\r\n");
  setter.close();
  slow.write("GET big\r\n".repeat(2000));
  await Bun.sleep(100);
  return slow;
}

describe("shutdown", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: replies to commands already received are sent, then exit 0`, async () => {
      const kv = await startKv();
      const c = await rawConnect(kv.port);
      // Make sure the server has accepted this connection (not just the kernel's backlog).
      c.write("PING\r\n");
      await c.waitFor((r) => r === "+PONG\r\n");
      c.clear();
      let wire = "";
      let expected = "";
      for (let i = 0; i < 2000; i++) {
        wire += `SET k${i} ${i}\r\n`;
        expected += "+OK\r\n";
      }
      c.write(wire + "PING\r\n");
      kv.proc.kill(signal);
      const got = await c.waitFor((_r, closed) => closed, 10_000);
      expect(got).toBe(expected + "+PONG\r\n");
      expect(await kv.proc.exited).toBe(0);
      await kv.stop();
      expect(kv.output()).toContain(`${signal} received`);
      expect(kv.output()).toMatch(/shutdown complete in \d+ ms/);
    });
  }

  test("a client that keeps sending is refused with -TRYAGAIN node shutting down (never carried out); once it stops, shutdown completes", async () => {
    const kv = await startKv(["--shutdown-timeout", "30"]);
    const c = await rawConnect(kv.port);
    c.write("PING\r\n");
    await c.waitFor((r) => r === "+PONG\r\n");
    c.clear();
    kv.proc.kill("SIGTERM");
    // INCR every 10 ms (bounded: 300 times, 5 s) until refused.
    const deadline = Date.now() + 5_000;
    let sent = 0;
    const refused = "-TRYAGAIN node shutting down: retry on another node\r\n";
    while (!c.received().includes(refused) && !c.isClosed() && sent < 300 && Date.now() < deadline) {
      c.write("INCR n\r\n");
      sent++;
      await Bun.sleep(10);
    }
    const got = await c.waitFor((r, closed) => closed || r.split("\r\n").length - 1 === sent, 5_000);
    const replies = got.split("\r\n").slice(0, -1);
    const done = replies.filter((r) => r.startsWith(":"));
    // The INCRs carried out answered 1, 2, 3...; every one after the first refusal was refused too.
    expect(done).toEqual(done.map((_, i) => `:${i + 1}`));
    expect(replies.length).toBeGreaterThan(done.length);
    expect(replies.slice(done.length).every((r) => `${r}\r\n` === refused)).toBe(true);
    expect(await kv.proc.exited).toBe(0);
    await kv.stop();
    expect(kv.output()).toMatch(/shutdown complete in \d+ ms/);
  });

  test("after the signal, new connections are refused", async () => {
    const kv = await startKv(["--shutdown-timeout", "5"]);
    const slow = await holdShutdownOpen(kv.port);
    kv.proc.kill("SIGTERM");
    await Bun.sleep(200);
    let refused = false;
    try {
      const c = await rawConnect(kv.port);
      const r = await c.waitFor((_r, closed) => closed, 3_000);
      refused = r === "" || r.startsWith("-ERR");
    } catch {
      refused = true;
    }
    expect(refused).toBe(true);
    slow.end(); // the last client leaves: shutdown completes
    expect(await kv.proc.exited).toBe(0);
    await kv.stop();
  });

  test("a second signal exits at once", async () => {
    const kv = await startKv(["--shutdown-timeout", "60"]);
    const slow = await holdShutdownOpen(kv.port);
    kv.proc.kill("SIGTERM");
    await Bun.sleep(200);
    expect(kv.proc.exitCode).toBeNull(); // still flushing to the slow client
    const t0 = Date.now();
    kv.proc.kill("SIGTERM");
    const code = await kv.proc.exited;
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(code).toBe(1);
    expect(kv.output()).toContain("second SIGTERM");
    slow.end();
    await kv.stop();
  });
});
