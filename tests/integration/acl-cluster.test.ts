// ACL users in a 3-node process cluster: users set on one node reach every node through the log;
// every rule kind is enforced on the leader and on a follower (a follower refuses before it
// forwards: the leader never sees the denied write); users survive a restart of every node and
// reach a node that joins from a snapshot; `kv cluster up N --requirepass` and the cluster's own
// commands (status, restart, add) authenticate.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { clusterCliHarness, freeBasePort, until } from "../helpers/cluster-cli.ts";
import { ProcCluster } from "../helpers/proc-cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const NOPERM_KEY = "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
const noPermCmd = (c: string) => `-NOPERM this user has no permissions to run the '${c}' command\r\n`;
const WRONGPASS = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/** Runs `cmds` on one connection to `port`, after AUTH user pass. */
async function as(port: number, user: string, pass: string, cmds: string[][]): Promise<string[]> {
  const c = await RawResp.connect(port);
  try {
    const r = await c.call([["AUTH", user, pass], ...cmds], 10_000);
    return r;
  } finally {
    c.close();
  }
}

describe("ACL on a 3-node process cluster", () => {
  const dir = mkdtempSync(join(tmpdir(), "kv-acl-cluster-"));
  let cluster: ProcCluster;
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("SETUSER on a follower reaches every node; rules are enforced on the leader and on a follower alike", async () => {
    cluster = await ProcCluster.start({ dir, extraArgs: ["--requirepass", "pw"], password: "pw" });
    const leader = await cluster.waitLeader();
    const follower = [1, 2, 3].find((i) => i !== leader)!;
    const port = (i: number) => cluster.node(i).port;
    // Set on a follower: forwarded to the leader as a KV.ACL entry, applied by every member.
    const set = await as(port(follower), "default", "pw", [
      ["ACL", "SETUSER", "alice", "on", ">secret", "~app:*", "%R~ro:*", "+@read", "+@write", "-@dangerous", "+client|id"],
      ["ACL", "SETUSER", "carl", "on", "nopass", "allkeys", "+@all", "-flushall"],
      ["ACL", "SETUSER", "dave", "off", ">d", "allkeys", "+@all"],
      ["ACL", "SETUSER", "erin", "on", ">e", "allkeys", "resetkeys", "~e:*", "nocommands", "+get", "+set"],
      ["ACL", "SETUSER", "frank", "on", `#${sha("f")}`, "%W~w:*", "%R~r:*", "allcommands", "-@dangerous"],
      ["ACL", "SETUSER", "gina", "reset", "on", ">g1", ">g2", "<g1", "~*", "+@all", "-@all", "+ping"],
      ["ACL", "SETUSER", "hank", "on", ">h1", "resetpass", `#${sha("h2")}`, `!${sha("h2")}`, ">h3", "~*", "+@read"],
    ]);
    expect(set.slice(1)).toEqual(Array(7).fill("+OK\r\n"));
    for (const i of [1, 2, 3]) {
      await until(`node ${i} holds the users`, 10_000, async () => {
        const [, users] = await as(port(i), "default", "pw", [["ACL", "USERS"]]);
        return users === "*8\r\n$5\r\nalice\r\n$4\r\ncarl\r\n$4\r\ndave\r\n$7\r\ndefault\r\n$4\r\nerin\r\n$5\r\nfrank\r\n$4\r\ngina\r\n$4\r\nhank\r\n" ? true : undefined;
      });
      const [, line] = await as(port(i), "default", "pw", [["ACL", "GETUSER", "alice"]]);
      expect(line).toContain(sha("secret"));
    }

    for (const [role, i] of [["leader", leader], ["follower", follower]] as const) {
      const k = `${role}`;
      const alice = await as(port(i), "alice", "secret", [
        ["SET", `app:${k}`, "v"], // key pattern + @write: allowed (forwarded from the follower)
        ["GET", `app:${k}`], // @read: allowed
        ["SET", `other:${k}`, "v"], // outside ~app:*
        ["GET", "ro:1"], // %R~: read allowed
        ["SET", "ro:1", "v"], // %R~: write denied
        ["FLUSHALL"], // -@dangerous
        ["KEYS", "*"], // -@dangerous
        ["CLIENT", "ID"], // +client|id
        ["CLIENT", "LIST"], // not client|list
        ["ACL", "WHOAMI"], // no @slow/@connection category granted
      ]);
      expect({ role, r: alice.slice(0, 8) }).toEqual({ role, r: ["+OK\r\n", "+OK\r\n", "$1\r\nv\r\n", NOPERM_KEY, "$-1\r\n", NOPERM_KEY, noPermCmd("flushall"), noPermCmd("keys")] });
      expect(alice[8]).toMatch(/^:\d+\r\n$/);
      expect(alice.slice(9)).toEqual([noPermCmd("client|list"), noPermCmd("acl|whoami")]);
      const carl = await as(port(i), "carl", "anything", [["SET", `c:${k}`, "1"], ["INCR", `c:${k}`], ["FLUSHALL"], ["ACL", "WHOAMI"]]);
      expect({ role, carl }).toEqual({ role, carl: ["+OK\r\n", "+OK\r\n", ":2\r\n", noPermCmd("flushall"), "$4\r\ncarl\r\n"] });
      expect({ role, dave: await as(port(i), "dave", "d", [["GET", "x"]]) }).toEqual({ role, dave: [WRONGPASS, "-NOAUTH Authentication required.\r\n"] });
      const erin = await as(port(i), "erin", "e", [["SET", `e:${k}`, "1"], ["SET", `a:${k}`, "1"], ["DEL", `e:${k}`], ["GET", `e:${k}`]]);
      expect({ role, erin }).toEqual({ role, erin: ["+OK\r\n", "+OK\r\n", NOPERM_KEY, noPermCmd("del"), "$1\r\n1\r\n"] });
      // #hash password; %W~ write-only and %R~ read-only patterns; allcommands then -@dangerous.
      const frank = await as(port(i), "frank", "f", [["SET", `w:${k}`, "1"], ["GET", `w:${k}`], ["GET", `r:${k}`], ["SET", `r:${k}`, "1"], ["FLUSHALL"], ["ACL", "WHOAMI"]]);
      expect({ role, frank }).toEqual({ role, frank: ["+OK\r\n", "+OK\r\n", NOPERM_KEY, "$-1\r\n", NOPERM_KEY, noPermCmd("flushall"), "$5\r\nfrank\r\n"] });
      // reset, then <password removes one of two; +@all then -@all then +ping.
      const gina = await as(port(i), "gina", "g2", [["PING"], ["GET", "x"], ["AUTH", "gina", "g1"]]);
      expect({ role, gina }).toEqual({ role, gina: ["+OK\r\n", "+PONG\r\n", noPermCmd("get"), WRONGPASS] });
      // resetpass drops >h1; !hash drops #hash; only h3 is left. +@read alone: no writes.
      const hank = await as(port(i), "hank", "h3", [["GET", "x"], ["SET", "x", "1"], ["AUTH", "hank", "h1"], ["AUTH", "hank", "h2"]]);
      expect({ role, hank }).toEqual({ role, hank: ["+OK\r\n", "$-1\r\n", noPermCmd("set"), WRONGPASS, WRONGPASS] });
    }

    // The follower refused alice's denied writes itself: they reached neither the log nor the leader's ACL LOG.
    const [, leaderLog] = await as(port(leader), "default", "pw", [["ACL", "LOG", "128"]]);
    const [, followerLog] = await as(port(follower), "default", "pw", [["ACL", "LOG", "128"]]);
    expect(followerLog).toContain("other:follower");
    expect(leaderLog).not.toContain("other:follower");
    expect(leaderLog).toContain("other:leader");
    const [, none] = await as(port(leader), "default", "pw", [["EXISTS", "other:follower", "other:leader", "ro:1"]]);
    expect(none).toBe(":0\r\n");
  });

  test("DELUSER on the leader locks the user out everywhere; users survive SAVE and a restart of every node", async () => {
    const leader = await cluster.waitLeader();
    const port = (i: number) => cluster.node(i).port;
    // dave, turned off earlier, can no longer log in; a client of his on every node is made by
    // turning him on for a moment, then off again: those clients stay (as Redis) until DELUSER.
    expect(await as(port(leader), "default", "pw", [["ACL", "SETUSER", "dave", "on"]])).toEqual(["+OK\r\n", "+OK\r\n"]);
    const daves: RawResp[] = [];
    for (const i of [1, 2, 3]) {
      const c = await RawResp.connect(port(i));
      daves.push(c);
      // Only once the node applied "on" (a failed AUTH would count toward the failed-login limit).
      await until(`node ${i} turned dave on`, 10_000, async () => ((await as(port(i), "default", "pw", [["ACL", "LIST"]]))[1]!.includes("user dave on ") ? true : undefined));
      expect(await c.call([["AUTH", "dave", "d"]], 10_000)).toEqual(["+OK\r\n"]);
    }
    expect(await as(port(leader), "default", "pw", [["ACL", "SETUSER", "dave", "off"]])).toEqual(["+OK\r\n", "+OK\r\n"]);
    for (const i of [1, 2, 3]) await until(`node ${i} turned dave off`, 10_000, async () => ((await as(port(i), "default", "pw", [["ACL", "LIST"]]))[1]!.includes("user dave off ") ? true : undefined));
    for (const c of daves) expect(await c.call([["SET", "dave:still", "1"]], 10_000)).toEqual(["+OK\r\n"]);
    expect(await as(port(leader), "default", "pw", [["ACL", "DELUSER", "dave"], ["SAVE"]])).toEqual(["+OK\r\n", ":1\r\n", "+OK\r\n"]);
    for (const i of [1, 2, 3]) {
      await until(`node ${i} dropped dave`, 10_000, async () => ((await as(port(i), "default", "pw", [["ACL", "GETUSER", "dave"]]))[1] === "$-1\r\n" ? true : undefined));
      // Every node closed its client of the deleted user when it applied the deletion.
      await until(`node ${i} closed dave's client`, 10_000, async () => (daves[i - 1]!.isClosed ? true : undefined));
      expect((await as(port(i), "default", "pw", [["SAVE"]]))[1]).toBe("+OK\r\n");
    }
    for (const i of [1, 2, 3]) await cluster.kill(i);
    for (const i of [1, 2, 3]) await cluster.restart(i);
    await cluster.waitLeader();
    for (const i of [1, 2, 3]) {
      const r = await as(port(i), "alice", "secret", [["SET", `app:after-restart-${i}`, "v"], ["SET", "x", "v"]]);
      expect({ i, r }).toEqual({ i, r: ["+OK\r\n", "+OK\r\n", NOPERM_KEY] });
      expect({ i, dave: (await as(port(i), "dave", "d", []))[0] }).toEqual({ i, dave: WRONGPASS });
    }
    // The nodes restored the users from their snapshots (taken after the ACL entries, the log compacted behind them).
    const snapLines = readFileSync(cluster.node(1).logFile, "latin1");
    expect(snapLines).toMatch(/snapshot at index [1-9]\d*/);
  });
});

describe("members' links authenticate", () => {
  const dir = mkdtempSync(join(tmpdir(), "kv-acl-links-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const users = join(dir, "users.acl");
  writeFileSync(users, "user default off\nuser admin on >apw ~* &* +@all\nuser app on >app-pw ~* +@all -@admin\n");

  for (const [name, extra, expected] of [
    ["without --masteruser/--masterauth a follower's link is refused: its writes fail, certainly not applied", [], "refused"],
    ["a link as a user without kv.peer (@admin) is refused too", ["--masteruser", "app", "--masterauth", "app-pw"], "refused"],
    ["with --masteruser/--masterauth a follower forwards writes", ["--masteruser", "admin", "--masterauth", "apw"], "ok"],
  ] as const) {
    test(name, async () => {
      const c = await ProcCluster.start({ dir: join(dir, String(extra.length) + String(extra[1] ?? "")), extraArgs: ["--aclfile", users, ...extra], user: "admin", password: "apw" });
      try {
        const leader = await c.waitLeader();
        const follower = [1, 2, 3].find((i) => i !== leader)!;
        const [, r] = await as(c.node(follower).port, "admin", "apw", [["SET", "k", "v"]]);
        const [, onLeader] = await as(c.node(leader).port, "admin", "apw", [["GET", "k"]]);
        if (expected === "ok") {
          expect([r, onLeader]).toEqual(["+OK\r\n", "$1\r\nv\r\n"]);
        } else {
          // Refused, never carried out: TRYAGAIN or CLUSTERDOWN (not UNCERTAIN).
          expect(r).toMatch(/^-(TRYAGAIN|CLUSTERDOWN) the leader at 127\.0\.0\.1:\d+ refused this node: -(NOAUTH Authentication required\.|NOPERM this user has no permissions to run the 'kv\.peer' command): retry\r\n$/);
          expect(onLeader).toBe("$-1\r\n");
        }
      } finally {
        await c.stop();
      }
    });
  }
});

describe("kv cluster up --requirepass", () => {
  const h = clusterCliHarness("kv-acl-cli-");

  test("the cluster's own commands authenticate; a node added from a snapshot holds the users", async () => {
    const dir = h.clusterDir();
    const base = freeBasePort(4); // room for the node added below
    const up = await h.kv("cluster", "up", "3", "--base-port", String(base), "--data-dir", dir, "--detach", "--requirepass", "cl-pw");
    expect({ code: up.code, err: up.stderr }).toEqual({ code: 0, err: "" });
    for (const node of readClusterFile(dir)!.nodes) h.started.push(node.pid);
    const addr = (i: number) => `127.0.0.1:${base + i - 1}`;
    // Without the password a client gets NOAUTH; the CLI with -a works on any node.
    const noauth = await h.kv("get", "k", "--addr", addr(2));
    expect(noauth).toMatchObject({ code: 2, stderr: "(error) NOAUTH Authentication required.\n" });
    expect(await h.kv("cli", "--addr", addr(2), "-a", "cl-pw", "ACL", "SETUSER", "ops", "on", ">ops-pw", "~*", "+@all")).toMatchObject({ code: 0 });
    for (let i = 0; i < 50; i++) expect((await h.kv("set", `k${i}`, "x".repeat(100), "--addr", addr(1 + (i % 3)), "--user", "ops", "--pass", "ops-pw")).code).toBe(0);
    const status = await h.kv("cluster", "status", "--data-dir", dir);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("healthy: 3/3 voters up");
    // SAVE on every node: the log behind the ACL entry is compacted, so a new member gets the users from a snapshot.
    for (let i = 1; i <= 3; i++) expect(await h.kv("cli", "--addr", addr(i), "-a", "cl-pw", "SAVE")).toMatchObject({ code: 0, stdout: "OK\n" });
    const add = await h.kv("cluster", "add", "--data-dir", dir);
    expect({ code: add.code, err: add.stderr }).toEqual({ code: 0, err: "" });
    for (const node of readClusterFile(dir)!.nodes) h.started.push(node.pid);
    const n4 = addr(4);
    const who = await until("node 4 knows ops", 20_000, async () => {
      const r = await h.kv("cli", "--addr", n4, "--user", "ops", "--pass", "ops-pw", "ACL", "WHOAMI");
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(who).toBe('"ops"\n');
    expect(readFileSync(join(dir, "n4", "kv.log"), "latin1")).toContain("installed the leader's snapshot");
    const restart = await h.kv("cluster", "restart", "--data-dir", dir);
    expect({ code: restart.code, err: restart.stderr }).toEqual({ code: 0, err: "" });
    for (const node of readClusterFile(dir)!.nodes) h.started.push(node.pid);
    for (let i = 1; i <= 4; i++) {
      expect(await h.kv("get", "k7", "--addr", addr(i), "--user", "ops", "--pass", "ops-pw")).toMatchObject({ code: 0 });
    }
    // The password is not in the nodes' logs (the launch lines are redacted).
    for (let i = 1; i <= 4; i++) expect(readFileSync(join(dir, `n${i}`, "kv.log"), "latin1")).not.toContain("cl-pw");
    expect(await h.kv("cluster", "down", "--data-dir", dir)).toMatchObject({ code: 0 });
  });
});
