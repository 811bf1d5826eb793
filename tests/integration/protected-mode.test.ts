// Protected mode, as Redis's: with no password for the default user, a client connecting from a
// non-loopback address gets -DENIED and is disconnected; loopback clients are served. Tested from
// this host's own non-loopback address (the peer address the server sees is then not loopback).
// This test alone binds 0.0.0.0; it connects only to this host's own address.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { KV_BIN } from "../helpers/server.ts";

/** This host's first non-loopback IPv4 address. */
function hostAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal && !a.address.startsWith("127.")) return a.address;
  }
  throw new Error(
    "protected mode test: this host has no non-loopback IPv4 address, so no client can connect from a non-loopback address " +
      "(127.0.0.2 and the like are loopback); run it on a host with one, or in a network namespace with a veth pair",
  );
}

const started: { proc: Subprocess; dir: string }[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) {
    s.proc.kill("SIGKILL");
    await s.proc.exited;
    rmSync(s.dir, { recursive: true, force: true });
  }
});

async function startOnAllAddresses(extra: string[]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "kv-protected-"));
  const proc = Bun.spawn([KV_BIN, "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", dir, ...extra], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  started.push({ proc, dir });
  let text = "";
  void (async () => {
    for await (const c of proc.stdout) text += Buffer.from(c).toString();
  })();
  void (async () => {
    for await (const c of proc.stderr) text += Buffer.from(c).toString();
  })();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const m = /listening on 0\.0\.0\.0:(\d+)/.exec(text);
    if (m) return Number(m[1]);
    if (proc.exitCode !== null) break;
    await Bun.sleep(10);
  }
  throw new Error(`kv did not start: ${text}`);
}

/** Sends `wire` from a connection to host:port; resolves with what came back and whether the server closed it. */
async function exchange(host: string, port: number, wire: string, waitMs = 2000): Promise<{ text: string; closed: boolean }> {
  let text = "";
  let closed = false;
  const s = await Bun.connect({
    hostname: host,
    port,
    socket: {
      data(_s, c) {
        text += Buffer.from(c).toString("latin1");
      },
      close() {
        closed = true;
      },
      error() {
        closed = true;
      },
    },
  });
  s.write(wire);
  const deadline = Date.now() + waitMs;
  while (!closed && Date.now() < deadline) await Bun.sleep(10);
  s.end();
  return { text, closed };
}

describe("protected mode", () => {
  const host = hostAddress();

  test("no password: a client from a non-loopback address gets Redis's DENIED text and is closed; loopback is served", async () => {
    const port = await startOnAllAddresses([]);
    const remote = await exchange(host, port, "PING\r\n");
    expect(remote.text).toStartWith("-DENIED kv is running in protected mode because protected mode is enabled and no password is set for the default user.");
    expect(remote.text).toContain("'--protected-mode no'");
    expect(remote.text).toContain("'--requirepass <password>'");
    expect(remote.text).toEndWith("\r\n");
    expect(remote.text).not.toContain("PONG");
    expect(remote.closed).toBe(true);
    const local = await exchange("127.0.0.1", port, "PING\r\nINFO stats\r\nQUIT\r\n");
    expect(local.text).toStartWith("+PONG\r\n");
    expect(local.text).toContain("rejected_connections:1\r\n");
  });

  test("--protected-mode no: the same client is served (and the server saw its non-loopback address)", async () => {
    const port = await startOnAllAddresses(["--protected-mode", "no"]);
    const remote = await exchange(host, port, "PING\r\nCLIENT INFO\r\nQUIT\r\n");
    expect(remote.text).toStartWith("+PONG\r\n");
    expect(remote.text).toContain(`addr=${host}:`);
  });

  test("with a password: no DENIED; the client must AUTH", async () => {
    const port = await startOnAllAddresses(["--requirepass", "pw"]);
    const remote = await exchange(host, port, "GET k\r\nAUTH pw\r\nPING\r\nQUIT\r\n");
    expect(remote.text).toBe("-NOAUTH Authentication required.\r\n+OK\r\n+PONG\r\n+OK\r\n");
  });
});
