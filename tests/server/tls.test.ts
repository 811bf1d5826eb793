// Client TLS of one node (Redis's flags): real clients over TLS (redis-cli, ioredis, node-redis, the
// project's library and CLI), client certificates checked as --tls-auth-clients says (another CA's
// and an expired one refused), plain and TLS ports side by side, certificates re-read on SIGHUP and
// CONFIG SET, and no key material in CONFIG GET, INFO, CLIENT LIST or the log.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Redis from "ioredis";
import { createClient as createNodeRedis } from "redis";
import { createClient } from "../../src/client/index.ts";
import { freeBasePort } from "../helpers/cluster-cli.ts";
import { KV_BIN, type KvProcess, startKv } from "../helpers/server.ts";
import { type CertPair, makeCa, makeExpired, makeLeaf } from "../helpers/tls-certs.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tmp = tempDirs("kv-tls-");
let dir: string;
let ca: CertPair;
let server: CertPair;
let server2: CertPair;
let client: CertPair;
let foreign: CertPair;
let expired: CertPair;

beforeAll(() => {
  dir = tmp();
  ca = makeCa(dir, "ca", "/CN=kv test CA");
  server = makeLeaf(dir, "server", ca, { cn: "kv test server" });
  server2 = makeLeaf(dir, "server2", ca, { cn: "kv test server renewed" });
  client = makeLeaf(dir, "client", ca, { cn: "kv test client" });
  const otherCa = makeCa(dir, "other-ca", "/CN=another CA");
  foreign = makeLeaf(dir, "foreign", otherCa, { cn: "foreign client" });
  expired = makeExpired(dir, "expired", ca, "expired client");
});

const servers: KvProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

async function startTls(authClients: "yes" | "no" | "optional", plain = false, certs: CertPair = server): Promise<KvProcess & { tlsPort: number }> {
  const base = freeBasePort(2);
  const tlsPort = base + 1;
  const s = await startKv(
    ["--tls-port", String(tlsPort), "--tls-cert-file", certs.cert, "--tls-key-file", certs.key, "--tls-ca-cert-file", ca.cert, "--tls-auth-clients", authClients],
    { port: plain ? base : 0 },
  );
  servers.push(s);
  return Object.assign(s, { tlsPort });
}

function redisCli(port: number, tls: string[], ...cmd: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["redis-cli", "-p", String(port), ...tls, ...cmd], { stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  return { code: r.exitCode ?? -1, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
}

/** Waits (up to 5 s) for the server's log to hold `what`, then returns the log. */
async function logged(s: KvProcess, what: string | RegExp): Promise<string> {
  const deadline = Date.now() + 5000;
  const has = () => (typeof what === "string" ? s.output().includes(what) : what.test(s.output()));
  while (!has() && Date.now() < deadline) await Bun.sleep(20);
  return s.output();
}

const tlsFlags = (c?: CertPair) => ["--tls", "--cacert", ca.cert, ...(c !== undefined ? ["--cert", c.cert, "--key", c.key] : [])];

/** The CN of the certificate the server presents to a new connection. */
async function servedCn(port: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { ca: readFileSync(ca.cert, "utf8"), cert: readFileSync(client.cert, "utf8"), key: readFileSync(client.key, "utf8"), serverName: "127.0.0.1" },
      socket: {
        open(s) {
          resolve(String((s.getPeerCertificate() as { subject?: { CN?: string } }).subject?.CN));
          s.end();
        },
        data() {},
        error(_s, e) {
          reject(e);
        },
        connectError(_s, e) {
          reject(e);
        },
      },
    }).catch(reject);
  });
}

describe("client TLS, --tls-auth-clients yes", () => {
  let s: KvProcess & { tlsPort: number };
  beforeAll(async () => {
    s = await startTls("yes");
  });

  test("--port 0 serves TLS only: redis-cli over TLS with a client certificate works; plain text and no certificate do not", async () => {
    expect(s.output()).toContain(`listening on 127.0.0.1:${s.tlsPort} (TLS, client certificates: yes)`);
    expect(redisCli(s.tlsPort, tlsFlags(client), "SET", "cli:k", "v1").out).toBe("OK");
    expect(redisCli(s.tlsPort, tlsFlags(client), "GET", "cli:k").out).toBe("v1");
    const plain = redisCli(s.tlsPort, [], "GET", "cli:k");
    expect(plain.out).not.toBe("v1");
    const noCert = redisCli(s.tlsPort, tlsFlags(), "GET", "cli:k");
    expect(noCert.out).not.toBe("v1");
    expect(await logged(s, "no client certificate")).toContain("refused a TLS client from 127.0.0.1: no client certificate (--tls-auth-clients yes)");
  });

  test("a client certificate from another CA and an expired one are refused", async () => {
    const f = redisCli(s.tlsPort, tlsFlags(foreign), "GET", "cli:k");
    expect(f.out).not.toBe("v1");
    expect(await logged(s, "CN=foreign client")).toMatch(/refused a TLS client from 127\.0\.0\.1: client certificate CN=foreign client issued by CN=another CA refused \(\w+/);
    const e = redisCli(s.tlsPort, tlsFlags(expired), "GET", "cli:k");
    expect(e.out).not.toBe("v1");
    expect(await logged(s, "CN=expired client")).toContain("client certificate CN=expired client issued by CN=kv test CA refused (CERT_HAS_EXPIRED)");
  });

  test("ioredis and node-redis with tls options", async () => {
    const tls = { ca: readFileSync(ca.cert), cert: readFileSync(client.cert), key: readFileSync(client.key) };
    const io = new Redis({ host: "127.0.0.1", port: s.tlsPort, tls, lazyConnect: true, maxRetriesPerRequest: 1 });
    await io.connect();
    expect(await io.set("io:k", "from ioredis")).toBe("OK");
    expect(await io.get("io:k")).toBe("from ioredis");
    io.disconnect();
    const nr = createNodeRedis({ socket: { host: "127.0.0.1", port: s.tlsPort, tls: true, ca: tls.ca, cert: tls.cert, key: tls.key, reconnectStrategy: false } });
    nr.on("error", () => {});
    await nr.connect();
    expect(await nr.get("io:k")).toBe("from ioredis");
    expect(await nr.set("nr:k", "from node-redis")).toBe("OK");
    await nr.quit();
    // ioredis with a certificate of another CA does not get in.
    const bad = new Redis({ host: "127.0.0.1", port: s.tlsPort, tls: { ...tls, cert: readFileSync(foreign.cert), key: readFileSync(foreign.key) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    bad.on("error", () => {});
    let got: unknown = null;
    try {
      await bad.connect();
      got = await bad.get("io:k");
    } catch (e) {
      got = e;
    }
    bad.disconnect();
    expect(got).toBeInstanceOf(Error);
  });

  test("the project's client library and CLI", async () => {
    const c = createClient({ addrs: `127.0.0.1:${s.tlsPort}`, tls: { ca: readFileSync(ca.cert, "utf8"), cert: readFileSync(client.cert, "utf8"), key: readFileSync(client.key, "utf8") }, timeoutMs: 5000 });
    expect(await c.set("lib:k", "from the library")).toBe(true);
    expect(await c.get("lib:k")).toBe("from the library");
    c.destroy();
    const addr = ["--addr", `127.0.0.1:${s.tlsPort}`];
    const set = Bun.spawnSync([KV_BIN, "set", "cli2:k", "from kv", ...addr, ...tlsFlags(client)], { stdout: "pipe", stderr: "pipe" });
    expect(set.stderr.toString()).toBe("");
    expect(set.exitCode).toBe(0);
    const get = Bun.spawnSync([KV_BIN, "get", "nr:k", ...addr, ...tlsFlags(client)], { stdout: "pipe", stderr: "pipe" });
    expect(get.stdout.toString().trim()).toBe("from node-redis");
    const cli = Bun.spawnSync([KV_BIN, "cli", ...addr, ...tlsFlags(client), "GET", "cli2:k"], { stdout: "pipe", stderr: "pipe" });
    expect(cli.stdout.toString()).toContain("from kv");
    // Without --tls the CLI reaches nothing on a TLS-only port.
    const plain = Bun.spawnSync([KV_BIN, "get", "nr:k", ...addr], { stdout: "pipe", stderr: "pipe" });
    expect(plain.exitCode).not.toBe(0);
    expect(plain.stdout.toString()).not.toContain("from node-redis");
  });

  test("CONFIG GET shows the TLS settings as paths; no key material in CONFIG GET, INFO, CLIENT LIST or the log", () => {
    const cfg = redisCli(s.tlsPort, tlsFlags(client), "CONFIG", "GET", "*").out;
    expect(cfg).toContain("tls-cert-file");
    expect(cfg).toContain(server.cert);
    expect(cfg).toContain(String(s.tlsPort));
    const keyPem = readFileSync(server.key, "utf8");
    const keyBody = keyPem.split("\n")[1]!;
    for (const text of [cfg, redisCli(s.tlsPort, tlsFlags(client), "INFO", "everything").out, redisCli(s.tlsPort, tlsFlags(client), "CLIENT", "LIST").out, s.output()]) {
      expect(text).not.toContain("PRIVATE KEY");
      expect(text).not.toContain(keyBody);
    }
  });

  test("SIGHUP re-reads the certificate: new connections get the new one, an open connection keeps working", async () => {
    const c = createClient({ addrs: `127.0.0.1:${s.tlsPort}`, tls: { ca: readFileSync(ca.cert, "utf8"), cert: readFileSync(client.cert, "utf8"), key: readFileSync(client.key, "utf8") }, timeoutMs: 5000 });
    expect(await c.set("hup:k", "before")).toBe(true);
    expect(await servedCn(s.tlsPort)).toBe("kv test server");
    // Rotate in place: the same paths, new files.
    const live = join(dir, "live");
    copyFileSync(server.cert, `${live}.crt`);
    copyFileSync(server.key, `${live}.key`);
    const r = await startTls("yes", false, { cert: `${live}.crt`, key: `${live}.key` });
    expect(await servedCn(r.tlsPort)).toBe("kv test server");
    const held = createClient({ addrs: `127.0.0.1:${r.tlsPort}`, tls: { ca: readFileSync(ca.cert, "utf8"), cert: readFileSync(client.cert, "utf8"), key: readFileSync(client.key, "utf8") }, timeoutMs: 5000 });
    expect(await held.set("hup:k", "before")).toBe(true);
    copyFileSync(server2.cert, `${live}.crt`);
    copyFileSync(server2.key, `${live}.key`);
    r.proc.kill("SIGHUP");
    const deadline = Date.now() + 5000;
    while (!r.output().includes("TLS certificates re-read") && Date.now() < deadline) await Bun.sleep(20);
    expect(r.output()).toContain("TLS certificates re-read: CN=kv test server renewed");
    expect(await servedCn(r.tlsPort)).toBe("kv test server renewed");
    expect(await held.set("hup:k", "after")).toBe(true);
    expect(await held.get("hup:k")).toBe("after");
    expect(r.proc.exitCode).toBeNull();
    held.destroy();
    c.destroy();
  });

  test("CONFIG SET tls-cert-file/tls-key-file switches certificates without a restart; a bad file is refused and the old one stays", async () => {
    const bad = redisCli(s.tlsPort, tlsFlags(client), "CONFIG", "SET", "tls-cert-file", join(dir, "missing.crt"));
    expect(bad.out).toContain("ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - --tls-cert-file");
    expect(await servedCn(s.tlsPort)).toBe("kv test server");
    const mismatched = redisCli(s.tlsPort, tlsFlags(client), "CONFIG", "SET", "tls-cert-file", server2.cert);
    expect(mismatched.out).toContain("is not the key of the certificate");
    expect(redisCli(s.tlsPort, tlsFlags(client), "CONFIG", "SET", "tls-cert-file", server2.cert, "tls-key-file", server2.key).out).toBe("OK");
    expect(await servedCn(s.tlsPort)).toBe("kv test server renewed");
    expect(redisCli(s.tlsPort, tlsFlags(client), "CONFIG", "GET", "tls-cert-file").out).toContain(server2.cert);
  });
});

describe("--tls-auth-clients optional and no; plain and TLS ports side by side", () => {
  test("optional: no certificate or a valid one gets in, an invalid one does not", async () => {
    const s = await startTls("optional");
    expect(redisCli(s.tlsPort, tlsFlags(), "SET", "opt:k", "v").out).toBe("OK");
    expect(redisCli(s.tlsPort, tlsFlags(client), "GET", "opt:k").out).toBe("v");
    expect(redisCli(s.tlsPort, tlsFlags(foreign), "GET", "opt:k").out).not.toBe("v");
    expect(redisCli(s.tlsPort, tlsFlags(expired), "GET", "opt:k").out).not.toBe("v");
    expect(await logged(s, "CN=foreign client")).toContain("client certificate CN=foreign client issued by CN=another CA refused");
  });

  test("no: no certificate asked; the plain port serves alongside", async () => {
    const s = await startTls("no", true);
    expect(s.output()).toContain(`listening on 127.0.0.1:${s.port} and 127.0.0.1:${s.tlsPort} (TLS, client certificates: no)`);
    expect(redisCli(s.tlsPort, tlsFlags(), "SET", "no:k", "tls").out).toBe("OK");
    expect(redisCli(s.port, [], "GET", "no:k").out).toBe("tls");
    expect(redisCli(s.port, [], "CONFIG", "GET", "tls-port").out).toBe(`tls-port\n${s.tlsPort}`);
  });

  test("a bad certificate file stops the start with the file named, not its content", async () => {
    const base = freeBasePort(1);
    const r = Bun.spawnSync([KV_BIN, "serve", "--port", "0", "--tls-port", String(base), "--tls-cert-file", server.key, "--tls-key-file", server.key, "--tls-auth-clients", "no", "--data-dir", join(tmp(), "d")], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    const text = r.stdout.toString() + r.stderr.toString();
    expect(r.exitCode).not.toBe(0);
    expect(text).toContain(`--tls-cert-file ${server.key}: not a PEM certificate`);
    expect(text).not.toContain("PRIVATE KEY");
    const noCa = Bun.spawnSync([KV_BIN, "serve", "--port", "0", "--tls-port", String(base), "--tls-cert-file", server.cert, "--tls-key-file", server.key, "--data-dir", join(tmp(), "d")], { stdout: "pipe", stderr: "pipe", timeout: 10_000 });
    expect(noCa.exitCode).not.toBe(0);
    expect(noCa.stdout.toString() + noCa.stderr.toString()).toContain("--tls-auth-clients yes needs --tls-ca-cert-file");
  });
});
