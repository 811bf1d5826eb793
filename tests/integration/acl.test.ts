// Authentication and ACL users on one node: replies differential against redis-server 7 (the same
// ACL file on both), pipelined AUTH, the failed-login limit, real clients authenticating, and
// secrets kept out of INFO, CONFIG GET, CLIENT LIST, ACL LIST/LOG, logs and the data dir.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { createClient } from "redis";
import { type RedisProcess, startRedisServer } from "../helpers/redis-server.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { KV_BIN, startKv, type KvProcess } from "../helpers/server.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const ACL_FILE = [
  "user default on >pw ~* &* +@all",
  `user alice on #${sha("secret")} ~app:* %R~ro:* +@read +@write -@dangerous`,
  "user bob off nopass ~* +get",
  "user carl on >c1 >c2 allkeys -@all +get +set +client|id",
  "user pat on >p ~* &news:* +@all",
  "user tx on >t ~* &* +@all -exec",
].join("\n");

let dir = "";
let redis: RedisProcess | null = null;
let redisPort = 0;
let kv: KvProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kv-acl-"));
  writeFileSync(join(dir, "users.acl"), ACL_FILE + "\n");
  writeFileSync(join(dir, "redis-users.acl"), ACL_FILE + "\n");
  kv = await startKv(["--aclfile", join(dir, "users.acl"), "--log-level", "debug"]);
  redis = await startRedisServer(dir, ["--aclfile", join(dir, "redis-users.acl")], [["AUTH", "pw"]]);
  redisPort = redis.port;
});

afterAll(async () => {
  await redis?.stop();
  await kv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function onBoth(cmds: string[][]): Promise<{ kv: string[]; redis: string[] }> {
  const a = await RawResp.connect(kv.port);
  const b = await RawResp.connect(redisPort);
  try {
    return { kv: await a.call(cmds), redis: await b.call(cmds) };
  } finally {
    a.close();
    b.close();
  }
}

describe("replies as redis-server 7 gives them", () => {
  const scenarios: Record<string, string[][]> = {
    "unauthenticated: NOAUTH for everything but AUTH, HELLO, QUIT; unknown names and bad arity answered first": [
      ["PING"], ["GET", "k"], ["SET", "k", "v"], ["ACL", "WHOAMI"], ["CLIENT", "ID"], ["NOSUCH", "x"], ["GET"], ["HELLO", "3"],
      ["AUTH", "nope"], ["AUTH", "alice", "wrong"], ["AUTH", "bob", "anything"], ["AUTH", "a", "b", "c"], ["AUTH", "nobody", "x"], ["GET", "k"],
    ],
    "alice: key patterns, read-only patterns and categories": [
      ["AUTH", "alice", "secret"], ["SET", "app:1", "v"], ["GET", "app:1"], ["SET", "x", "1"], ["GET", "x"], ["GET", "ro:1"], ["SET", "ro:1", "1"],
      ["MGET", "app:1", "ro:1"], ["MGET", "app:1", "x"], ["MSET", "app:2", "a", "app:3", "b"], ["MSET", "app:2", "a", "ro:3", "b"],
      ["DEL", "app:2"], ["EXISTS", "ro:1", "app:1"], ["INCR", "app:n"], ["APPEND", "app:1", "w"], ["RENAME", "app:1", "x"],
      ["FLUSHALL"], ["KEYS", "*"], ["ACL", "WHOAMI"], ["CLIENT", "LIST"], ["CONFIG", "GET", "maxclients"], ["PING"], ["DEL", "app:1", "app:3", "app:n"],
    ],
    "carl: several passwords, +cmd and +cmd|subcommand": [
      ["AUTH", "carl", "c2"], ["AUTH", "carl", "c1"], ["SET", "k", "v"], ["GET", "k"], ["DEL", "k"], ["CLIENT", "ID"], ["CLIENT", "GETNAME"], ["ACL", "WHOAMI"],
    ],
    "default: ACL commands and their errors": [
      ["AUTH", "pw"], ["ACL", "WHOAMI"], ["ACL", "USERS"], ["ACL", "GETUSER", "nobody"], ["ACL", "GETUSER", "default"], ["ACL", "CAT"], ["ACL", "GETUSER", "bob"], ["ACL", "CAT", "nosuch"], ["ACL", "CAT", "a", "b"],
      ["ACL", "SETUSER", "dora", "bogus"], ["ACL", "SETUSER", "dora", "+nosuch"], ["ACL", "SETUSER", "dora", "+@nosuch"], ["ACL", "SETUSER", "dora", "%X~k"], ["ACL", "SETUSER", "a b", "on"], ["ACL", "SETUSER", "dora", "~a b"],
      ["ACL", "DELUSER", "default"], ["ACL", "NOSUCH"], ["ACL"],
      ["ACL", "SETUSER", "dora", "on", ">d1", "~d*", "+get", "+@keyspace", "-del"], ["ACL", "USERS"],
      ["AUTH", "dora", "d1"], ["ACL", "WHOAMI"], ["GET", "dx"], ["GET", "x"], ["SET", "dx", "1"], ["EXISTS", "dx"], ["DEL", "dx"], ["TYPE", "dx"],
      ["AUTH", "default", "pw"], ["ACL", "SETUSER", "dora", "off"], ["AUTH", "dora", "d1"], ["ACL", "SETUSER", "dora", "on", "<d1"], ["AUTH", "dora", "d1"],
      ["ACL", "SETUSER", "dora", "nopass"], ["AUTH", "dora", "whatever"], ["AUTH", "default", "pw"],
      ["ACL", "DELUSER", "dora", "nobody"], ["AUTH", "dora", "whatever"],
    ],
    "channel rules: &pattern for PUBLISH and SUBSCRIBE, the same pattern for PSUBSCRIBE": [
      ["AUTH", "pat", "p"], ["PUBLISH", "news:1", "x"], ["PUBLISH", "other", "x"], ["SPUBLISH", "other", "x"], ["SUBSCRIBE", "news:1", "other"],
      ["SSUBSCRIBE", "other"], ["PSUBSCRIBE", "n*"], ["PSUBSCRIBE", "news:1"], ["AUTH", "carl", "c1"], ["PUBLISH", "news:1", "x"],
      ["AUTH", "pat", "p"], ["PSUBSCRIBE", "news:*"], ["SUBSCRIBE", "news:2"],
    ],
    "MULTI: a command refused while queuing fails EXEC; a refused EXEC discards": [
      ["AUTH", "pat", "p"], ["MULTI"], ["SET", "txa", "1"], ["PUBLISH", "other", "x"], ["EXEC"], ["GET", "txa"],
      ["AUTH", "tx", "t"], ["MULTI"], ["SET", "txb", "1"], ["EXEC"], ["GET", "txb"], ["DISCARD"],
    ],
    "RESET returns to the default user, unauthenticated when it has a password": [["AUTH", "carl", "c1"], ["RESET"], ["GET", "k"], ["ACL", "WHOAMI"]],
    "HELLO AUTH": [["HELLO", "2", "AUTH", "alice", "wrong"], ["HELLO", "2", "AUTH", "nobody", "x"], ["GET", "app:1"], ["HELLO", "3", "AUTH", "alice"]],
  };
  for (const [name, cmds] of Object.entries(scenarios)) {
    test(name, async () => {
      const r = await onBoth(cmds);
      // Client ids differ between the servers: only that one is an integer is compared.
      const norm = (c: string[], reply: string | undefined) => (c.join(" ") === "CLIENT ID" ? reply?.replace(/^:\d+/, ":<id>") : reply);
      const pairs = cmds.map((c, i) => ({ cmd: c.join(" "), kv: norm(c, r.kv[i]), redis: norm(c, r.redis[i]) }));
      expect(pairs.filter((p) => p.kv !== p.redis)).toEqual([]);
    });
  }

  test("HELLO 3 AUTH authenticates and switches protocol", async () => {
    const c = await RawResp.connect(kv.port);
    const [hello, who] = await c.call([["HELLO", "3", "AUTH", "carl", "c1"], ["ACL", "WHOAMI"]]);
    c.close();
    expect(hello).toStartWith("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n");
    expect(who).toBe("-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n");
  });

  test("ACL LOG records denials as Redis does (reason, context, object, username, count)", async () => {
    const fields = async (port: number) => {
      const c = await RawResp.connect(port);
      await c.call([["AUTH", "pw"], ["ACL", "LOG", "RESET"]]);
      const d = await RawResp.connect(port);
      await d.call([["AUTH", "alice", "secret"], ["SET", "x", "1"], ["SET", "x", "1"], ["FLUSHALL"], ["AUTH", "alice", "bad"], ["auth", "nobody", "bad"], ["HELLO", "2", "AUTH", "bob", "x"]]);
      d.close();
      const [log] = await c.call([["ACL", "LOG"]]);
      c.close();
      // Everything but age-seconds and client-info (ids and buffer sizes differ).
      return [...log!.matchAll(/\$\d+\r\n(count|reason|context|object|username)\r\n(:\d+|\$\d+\r\n[^\r]*)\r\n/g)].map((m) => `${m[1]}=${m[2]}`);
    };
    const k = await fields(kv.port);
    expect(k.length).toBe(25);
    expect(k).toEqual(await fields(redisPort));
  });

  test("ACL LIST and GETUSER give the users in the ACL file's syntax, passwords as #sha256", async () => {
    const c = await RawResp.connect(kv.port);
    const [, list, get] = await c.call([["AUTH", "pw"], ["ACL", "LIST"], ["ACL", "GETUSER", "carl"]]);
    c.close();
    expect(list).toContain(`user carl on #${sha("c1")} #${sha("c2")} ~* resetchannels -@all +get +set +client|id\r\n`);
    expect(list).toContain(`user alice on #${sha("secret")} ~app:* %R~ro:* resetchannels -@all +@read +@write -@dangerous\r\n`);
    expect(get).toContain(`$5\r\nflags\r\n*1\r\n$2\r\non\r\n$9\r\npasswords\r\n*2\r\n$64\r\n${sha("c1")}\r\n$64\r\n${sha("c2")}\r\n`);
  });
});

describe("pipelining", () => {
  test("commands after a pipelined AUTH run as the new user, also behind a write not yet applied", async () => {
    const c = await RawResp.connect(kv.port);
    const r = await c.call([["AUTH", "pw"], ["SET", "p:1", "v"], ["AUTH", "alice", "secret"], ["SET", "p:2", "v"], ["SET", "app:p", "v"], ["AUTH", "pw"], ["SET", "p:3", "v"]]);
    c.close();
    expect(r).toEqual(["+OK\r\n", "+OK\r\n", "+OK\r\n", "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n", "+OK\r\n", "+OK\r\n", "+OK\r\n"]);
  });
  test("KV.WATCH needs read permission on the whole pattern it watches", async () => {
    const c = await RawResp.connect(kv.port);
    const r = await c.call([["AUTH", "pw"], ["ACL", "SETUSER", "watcher", "on", ">w", "~app:*", "+kv.watch"], ["AUTH", "watcher", "w"], ["KV.WATCH", "*"], ["KV.WATCH", "other:*"], ["KV.WATCH", "app:*"]]);
    c.close();
    expect(r.slice(0, 5)).toEqual(["+OK\r\n", "+OK\r\n", "+OK\r\n", "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n", "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"]);
    expect(r[5]).not.toStartWith("-");
    const d = await RawResp.connect(kv.port);
    const [, , info] = await d.call([["AUTH", "pw"], ["ACL", "DELUSER", "watcher"], ["INFO", "stats"]]);
    d.close();
    expect(info).toMatch(/acl_access_denied_channel:[1-9]/); // the channel scenario above
  });
  test("KV.ACL and KV.FWD cannot be sent by a client to skip the checks", async () => {
    const c = await RawResp.connect(kv.port);
    const r = await c.call([["KV.ACL", "SETUSER", "x", "on", "nopass", "+@all"], ["AUTH", "alice", "secret"], ["KV.FWD", "2", "FLUSHALL"], ["KV.ACL", "SETUSER", "x", "on"], ["KV.PEER", "c", "1"]]);
    c.close();
    expect(r[0]).toBe("-NOAUTH Authentication required.\r\n");
    expect(r[2]).toStartWith("-ERR unknown command 'KV.FWD'");
    expect(r[3]).toBe("-NOPERM this user has no permissions to run the 'kv.acl' command\r\n");
    expect(r[4]).toBe("-NOPERM this user has no permissions to run the 'kv.peer' command\r\n");
    const d = await RawResp.connect(kv.port);
    const [, e] = await d.call([["AUTH", "pw"], ["KV.ACL", "SETUSER", "x", "on", "nopass", "+@all"]]);
    d.close();
    expect(e).toBe("-ERR KV.ACL is the logged form of ACL SETUSER, DELUSER and LOAD: send those\r\n");
  });
});

describe("clients authenticate", () => {
  function redisCli(args: string[]): string {
    const p = Bun.spawnSync(["redis-cli", "-h", "127.0.0.1", "-p", String(kv.port), "--no-auth-warning", ...args], { stdout: "pipe", stderr: "pipe" });
    return p.stdout.toString() + p.stderr.toString();
  }
  test("redis-cli -a, --user/--pass, and RESP3", () => {
    expect(redisCli(["-a", "pw", "ACL", "WHOAMI"])).toBe("default\n");
    expect(redisCli(["--user", "alice", "--pass", "secret", "SET", "app:cli", "1"])).toBe("OK\n");
    expect(redisCli(["-3", "--user", "alice", "--pass", "secret", "GET", "app:cli"])).toBe("1\n");
    expect(redisCli(["--user", "alice", "--pass", "wrong", "GET", "app:cli"])).toContain("WRONGPASS");
    expect(redisCli(["GET", "app:cli"])).toContain("NOAUTH Authentication required.");
  });
  test("ioredis with username and password", async () => {
    const r = new Redis({ host: "127.0.0.1", port: kv.port, username: "alice", password: "secret", lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    expect(await r.set("app:io", "v")).toBe("OK");
    await expect(r.set("x", "v")).rejects.toThrow("NOPERM");
    r.disconnect();
    const bad = new Redis({ host: "127.0.0.1", port: kv.port, username: "alice", password: "nope", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const errors: string[] = [];
    bad.on("error", (e: Error) => errors.push(e.message));
    await expect(bad.connect().then(() => bad.get("app:io"))).rejects.toThrow();
    expect(errors.join("\n")).toContain("WRONGPASS invalid username-password pair or user is disabled.");
    bad.disconnect();
  });
  test("node-redis with username and password (HELLO 3 AUTH)", async () => {
    const c = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false }, username: "carl", password: "c2", RESP: 3 });
    await c.connect();
    expect(await c.set("nr", "v")).toBe("OK");
    expect(await c.get("nr")).toBe("v");
    await expect(c.del("nr")).rejects.toThrow("NOPERM");
    await c.quit();
  });
  test("kv get/set/cli with --user/--pass, -a, and KV_PASSWORD", () => {
    const run = (args: string[], env: Record<string, string> = {}, stdin?: string) => {
      const p = Bun.spawnSync([KV_BIN, ...args, "--addr", `127.0.0.1:${kv.port}`], { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...env } });
      return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
    };
    expect(run(["set", "app:kv", "hello", "--user", "alice", "--pass", "secret"])).toMatchObject({ code: 0, out: "OK\n" });
    expect(run(["get", "app:kv", "--user", "alice", "-a", "secret"])).toMatchObject({ code: 0 });
    expect(run(["get", "app:kv", "--user", "alice", "-a", "secret"]).out).toStartWith("hello");
    expect(run(["cli", "ACL", "WHOAMI"], { KV_PASSWORD: "pw" })).toMatchObject({ code: 0, out: '"default"\n' });
    expect(run(["get", "app:kv"])).toMatchObject({ code: 2, err: "(error) NOAUTH Authentication required.\n" });
    // --askpass reads the password from stdin (the terminal, not echoed, when there is one).
    expect(run(["get", "app:kv", "--user", "alice", "--askpass"], {}, "secret\n")).toMatchObject({ code: 0, out: "hello" });
    expect(run(["set", "x", "1", "--user", "alice", "--pass", "secret"])).toMatchObject({ code: 2, err: "(error) NOPERM this user has no permissions to access one of the keys used as arguments\n" });
  });
});

describe("ACL SAVE and ACL LOAD", () => {
  test("SAVE writes the users (hashed) to the ACL file; LOAD reads it back", async () => {
    const c = await RawResp.connect(kv.port);
    const file = join(dir, "users.acl");
    const before = readFileSync(file, "latin1");
    try {
      const r = await c.call([["AUTH", "pw"], ["ACL", "SETUSER", "eve", "on", ">eve-pw", "~e*", "+get"], ["ACL", "SAVE"]]);
      expect(r).toEqual(["+OK\r\n", "+OK\r\n", "+OK\r\n"]);
      const saved = readFileSync(file, "latin1");
      expect(saved).toContain(`user eve on #${sha("eve-pw")} ~e* resetchannels -@all +get\n`);
      expect(saved).not.toContain("eve-pw");
      expect(statSync(file).mode & 0o077).toBe(0);
      writeFileSync(file, saved.replace(/^user eve .*$/m, "user eve on >new-pw ~e* +get"));
      const [load, users, bad] = await c.call([["ACL", "LOAD"], ["ACL", "USERS"], ["AUTH", "eve", "new-pw"]]);
      expect(load).toBe("+OK\r\n");
      expect(users).toContain("eve");
      expect(bad).toBe("+OK\r\n");
      writeFileSync(file, "user broken on +nosuch\n");
      const [, err] = await c.call([["AUTH", "pw"], ["ACL", "LOAD"]]);
      expect(err).toStartWith("-ERR Error loading ACLs, aborting:");
    } finally {
      c.close();
      writeFileSync(file, before);
      const d = await RawResp.connect(kv.port);
      await d.call([["AUTH", "pw"], ["ACL", "LOAD"]]);
      d.close();
    }
  });
});

describe("a large user table", () => {
  test("users past the 64 KiB a snapshot header read used to take survive SAVE and a restart", async () => {
    const node = await startKv(["--requirepass", "pw"]);
    const users = 600;
    try {
      const c = await RawResp.connect(node.port);
      const cmds: string[][] = [["AUTH", "pw"]];
      for (let i = 0; i < users; i++) cmds.push(["ACL", "SETUSER", `user-${i}`, "on", `>pw-${i}`, `~app:${i}:*`, `%R~shared:${i}:*`, "+@read", "+@write", "-@dangerous", "+client|id", "-getdel"]);
      cmds.push(["SAVE"]);
      const r = await c.call(cmds, 30_000);
      c.close();
      expect(r.filter((x) => x !== "+OK\r\n")).toEqual([]);
      await node.stop({ keepData: true });
      const again = await startKv(["--requirepass", "pw"], { dataDir: node.dataDir });
      try {
        const d = await RawResp.connect(again.port);
        const [, list, auth, set] = await d.call([["AUTH", "pw"], ["ACL", "LIST"], ["AUTH", "user-599", "pw-599"], ["SET", "app:599:x", "1"]]);
        d.close();
        expect(list!.length).toBeGreaterThan(64 * 1024);
        expect(list!.startsWith(`*${users + 1}\r\n`)).toBe(true);
        expect([auth, set]).toEqual(["+OK\r\n", "+OK\r\n"]);
        expect(again.output()).toMatch(/snapshot at index [1-9]/);
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(node.dataDir, { recursive: true, force: true });
    }
  });
});

describe("the failed-login limit", () => {
  test("after 5 failures from an address its AUTH is refused, counted in INFO, and a success later clears it", async () => {
    const node = await startKv(["--requirepass", "right"]);
    try {
      const c = await RawResp.connect(node.port);
      const wrong = await c.call(Array.from({ length: 5 }, (_, i) => ["AUTH", `guess${i}`]));
      expect(wrong.every((r) => r === "-WRONGPASS invalid username-password pair or user is disabled.\r\n")).toBe(true);
      // The right password is not even checked now, on this connection or a new one from the same address.
      const [refused] = await c.call([["AUTH", "right"]]);
      expect(refused).toMatch(/^-WRONGPASS too many failed authentication attempts from 127\.0\.0\.1: AUTH refused for \d+ ms\r\n$/);
      const d = await RawResp.connect(node.port);
      const [refused2, noauth] = await d.call([["AUTH", "right"], ["GET", "k"]]);
      expect(refused2).toStartWith("-WRONGPASS too many failed authentication attempts");
      expect(noauth).toBe("-NOAUTH Authentication required.\r\n");
      // The refusal window after the 5th failure is AUTH_REFUSAL_MS_MIN (1 s).
      await Bun.sleep(1100);
      const [ok, info] = await d.call([["AUTH", "right"], ["INFO", "stats"]]);
      expect(ok).toBe("+OK\r\n");
      expect(info).toContain("acl_access_denied_auth:5\r\n");
      expect(info).toContain("kv_auth_rate_limited:2\r\n");
      // A success cleared the count: one more failure is answered normally.
      const [again] = await d.call([["AUTH", "bad"]]);
      expect(again).toBe("-WRONGPASS invalid username-password pair or user is disabled.\r\n");
      c.close();
      d.close();
    } finally {
      await node.stop();
    }
  });
});

describe("secrets", () => {
  test("never in INFO, CONFIG GET, CLIENT LIST, ACL LIST/GETUSER/LOG, the log output, the WAL or snapshots", async () => {
    const PASS = "Pa55-requirepass-7f3a";
    const USERPW = "Us3r-password-91bc";
    const node = await startKv(["--requirepass", PASS, "--log-level", "debug"]);
    try {
      const c = await RawResp.connect(node.port);
      const replies = await c.call([
        ["AUTH", "wrong-guess"],
        ["AUTH", PASS],
        ["ACL", "SETUSER", "u", "on", `>${USERPW}`, "~*", "+@all"],
        ["CLIENT", "SETNAME", "probe"],
        ["AUTH", "u", USERPW],
        ["SET", "k", "v"],
        ["AUTH", "u", "bad-guess"],
        ["INFO", "all"],
        ["CONFIG", "GET", "*"],
        ["CLIENT", "LIST"],
        ["ACL", "LIST"],
        ["ACL", "GETUSER", "u"],
        ["ACL", "GETUSER", "default"],
        ["ACL", "LOG"],
        ["SAVE"],
      ]);
      c.close();
      expect(replies[1]).toBe("+OK\r\n");
      expect(replies[4]).toBe("+OK\r\n");
      const all = replies.join("");
      expect(all).not.toContain(PASS);
      expect(all).not.toContain(USERPW);
      // CONFIG GET shows that a password is set, as its SHA-256, never the password.
      expect(replies[8]).toContain(`$11\r\nrequirepass\r\n$65\r\n#${sha(PASS)}\r\n`);
      expect(replies[14]).toBe("+OK\r\n");
      const files: string[] = [];
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          if (e.isDirectory()) walk(join(d, e.name));
          else files.push(join(d, e.name));
        }
      };
      walk(node.dataDir);
      expect(files.some((f) => f.endsWith(".snap"))).toBe(true);
      for (const f of files) {
        const bytes = readFileSync(f, "latin1");
        expect({ f, pass: bytes.includes(PASS), user: bytes.includes(USERPW) }).toEqual({ f, pass: false, user: false });
      }
      // The snapshot carries the user, hashed.
      const snap = files.find((f) => f.endsWith(".snap"))!;
      expect(readFileSync(snap, "latin1")).toContain(`user u on #${sha(USERPW)}`);
    } finally {
      await node.stop({ keepData: false });
      expect(node.output()).not.toContain(PASS);
      expect(node.output()).not.toContain(USERPW);
    }
  });

  test("a startup failure does not print the password", () => {
    const PASS = "Pa55-startup-3c9d";
    const p = Bun.spawnSync([KV_BIN, "serve", "--port", "0", "--host", "127.0.0.1", "--requirepass", PASS, "--aclfile", "/nonexistent"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    const text = p.stdout.toString() + p.stderr.toString();
    expect(p.exitCode).not.toBe(0);
    expect(text).toContain("--requirepass and --aclfile do not go together");
    expect(text).not.toContain(PASS);
  });

  test("AUTH without a password configured answers Redis's error; AUTH default <anything> succeeds", async () => {
    const node = await startKv([]);
    try {
      const c = await RawResp.connect(node.port);
      const r = await c.call([["AUTH", "x"], ["AUTH", "default", "x"], ["AUTH", "alice", "x"], ["CONFIG", "GET", "requirepass"]]);
      c.close();
      expect(r).toEqual([
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
        "+OK\r\n",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n",
      ]);
    } finally {
      await node.stop();
    }
  });
});

describe("clients of a user that changes under them, as redis-server treats them", () => {
  /** A connection that records what it receives and whether the server closed it. */
  async function watcher(port: number) {
    const got: string[] = [];
    let closed = false;
    const s = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => void got.push(d.toString("latin1")),
        close: () => void (closed = true),
      },
    });
    return {
      got,
      closed: () => closed,
      send: (...cmds: string[][]) => s.write(cmds.map((c) => c.join(" ") + "\r\n").join("")),
      end: () => s.end(),
      /** Waits (bounded) until `n` replies of one line each have arrived. */
      async lines(n: number): Promise<void> {
        for (const deadline = Date.now() + 5000; got.join("").split("\r\n").length - 1 < n && Date.now() < deadline; ) await Bun.sleep(5);
      },
    };
  }

  /** Turned off, deleted, and a subscriber whose channel is taken away: which clients stay, what they get. */
  async function scenario(port: number, prefix: string): Promise<Record<string, { closed: boolean; got: string }>> {
    const admin = await watcher(port);
    const u = (n: string) => `${prefix}${n}`;
    admin.send(["AUTH", "default", "pw"], ["ACL", "SETUSER", u("off"), "on", ">x", "~*", "&*", "+@all"], ["ACL", "SETUSER", u("sub"), "on", ">x", "~*", "&news", "+@all"], ["ACL", "SETUSER", u("del"), "on", ">x", "~*", "+@all"]);
    await admin.lines(4); // the users exist (on kv: applied) before anyone logs in
    const off = await watcher(port);
    const sub = await watcher(port);
    const del = await watcher(port);
    const bystander = await watcher(port);
    off.send(["AUTH", u("off"), "x"]);
    sub.send(["AUTH", u("sub"), "x"], ["SUBSCRIBE", "news"]);
    del.send(["AUTH", u("del"), "x"]);
    bystander.send(["AUTH", u("sub"), "x"]);
    await Bun.sleep(300);
    admin.send(["ACL", "SETUSER", u("off"), "off"], ["ACL", "SETUSER", u("sub"), "resetchannels"], ["ACL", "DELUSER", u("del")]);
    await admin.lines(7);
    await Bun.sleep(200);
    off.send(["GET", "nothing"]);
    del.send(["GET", "nothing"]);
    bystander.send(["GET", "nothing"]);
    await Bun.sleep(300);
    const out: Record<string, { closed: boolean; got: string }> = {};
    for (const [name, c] of Object.entries({ off, sub, del, bystander })) out[name] = { closed: c.closed(), got: c.got.join("") };
    for (const c of [admin, off, sub, del, bystander]) c.end();
    return out;
  }

  test("a user turned off keeps its logged-in clients; a deleted user's clients and a subscriber that lost its channel are closed", async () => {
    const ours = await scenario(kv.port, "kvchg-");
    const theirs = await scenario(redisPort, "kvchg-");
    expect(ours).toEqual(theirs);
    // What that is, spelled out (so the comparison cannot pass on two servers that both do nothing).
    expect(ours.off).toEqual({ closed: false, got: "+OK\r\n$-1\r\n" });
    expect(ours.del!.closed).toBe(true);
    expect(ours.sub!.closed).toBe(true);
    expect(ours.bystander).toEqual({ closed: false, got: "+OK\r\n$-1\r\n" });
  });
});
