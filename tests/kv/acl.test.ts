// ACL rules (src/kv/acl.ts): every rule kind allowed and denied, the canonical text round trip,
// KV.ACL applied through the state machine, and the snapshot meta's ACL section (old files readable).
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { ACL_STATE_BYTES_MAX, ACL_USERS_MAX, AclRuleError, AclState, applyRules, channelAllowed, commandAllowed, keyPatternReadable, describeUser, keyAllowed, newUser, type AclNames } from "../../src/kv/acl.ts";
import { KvStateMachine } from "../../src/kv/fsm.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { decodeSnapshotMeta, encodeSnapshotMeta } from "../../src/node/kv-payload.ts";
import { restoreAcl, SnapshotMetaError, splitAclSection, withAclSection } from "../../src/node/snapshot-meta.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const NAMES: AclNames = {
  isCommand: (n) => ["get", "set", "flushall", "client", "client|list", "client|id", "del", "keys", "incr"].includes(n),
  isCategory: (n) => ["read", "write", "dangerous", "admin", "string", "keyspace", "fast", "slow", "connection"].includes(n),
};
const GET = ["get", ["@read", "@string", "@fast"]] as const;
const SET = ["set", ["@write", "@string", "@slow"]] as const;
const FLUSHALL = ["flushall", ["@keyspace", "@write", "@slow", "@dangerous"]] as const;
const CLIENT_LIST = ["client|list", ["@admin", "@slow", "@dangerous", "@connection"]] as const;
const CLIENT_ID = ["client|id", ["@slow", "@connection"]] as const;

function user(...rules: string[]) {
  return applyRules(newUser("u"), rules, NAMES);
}
const may = (u: ReturnType<typeof user>, c: readonly [string, readonly string[]]) => commandAllowed(u, c[0], c[1]);

describe("command rules", () => {
  test("a new user may run nothing", () => {
    const u = user();
    expect(may(u, GET)).toBe(false);
    expect(may(u, SET)).toBe(false);
  });
  test("+@all and allcommands allow everything; -@all and nocommands nothing", () => {
    for (const r of ["+@all", "allcommands"]) {
      expect(may(user(r), FLUSHALL)).toBe(true);
      expect(may(user(r), CLIENT_LIST)).toBe(true);
    }
    for (const r of ["-@all", "nocommands"]) expect(may(user("+@all", r), GET)).toBe(false);
  });
  test("+@category allows its commands only; -@category removes them", () => {
    const u = user("+@read");
    expect(may(u, GET)).toBe(true);
    expect(may(u, SET)).toBe(false);
    const w = user("+@write", "-@dangerous");
    expect(may(w, SET)).toBe(true);
    expect(may(w, FLUSHALL)).toBe(false);
  });
  test("+cmd and -cmd; the later rule wins", () => {
    expect(may(user("+get"), GET)).toBe(true);
    expect(may(user("+get"), SET)).toBe(false);
    expect(may(user("+@read", "-get"), GET)).toBe(false);
    expect(may(user("-get", "+@read"), GET)).toBe(true);
    expect(may(user("+@all", "-flushall"), FLUSHALL)).toBe(false);
    expect(may(user("+@all", "-flushall"), SET)).toBe(true);
  });
  test("+cmd covers its subcommands; +cmd|sub only that one", () => {
    expect(may(user("+client"), CLIENT_LIST)).toBe(true);
    expect(may(user("+client|id"), CLIENT_ID)).toBe(true);
    expect(may(user("+client|id"), CLIENT_LIST)).toBe(false);
    expect(may(user("+client", "-client|list"), CLIENT_LIST)).toBe(false);
    expect(may(user("+client", "-client|list"), CLIENT_ID)).toBe(true);
  });
  test("unknown names and categories, and bad syntax, are refused with Redis's texts", () => {
    expect(() => user("+nosuch")).toThrow("Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL");
    expect(() => user("+@nosuch")).toThrow("Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name in ACL");
    expect(() => user("bogus")).toThrow("Error in ACL SETUSER modifier 'bogus': Syntax error");
    expect(() => user("%X~k")).toThrow(AclRuleError);
    expect(() => user("#abc")).toThrow(AclRuleError);
    expect(() => user(">clear")).toThrow(AclRuleError); // the server hashes before the rules reach here
  });
});

describe("key rules", () => {
  test("no pattern: no key", () => {
    expect(keyAllowed(user("+@all"), "k", true, false)).toBe(false);
  });
  test("~pattern, allkeys and ~*; resetkeys", () => {
    const u = user("~app:*");
    expect(keyAllowed(u, "app:1", true, true)).toBe(true);
    expect(keyAllowed(u, "other", true, false)).toBe(false);
    for (const r of ["allkeys", "~*"]) expect(keyAllowed(user(r), "anything", true, true)).toBe(true);
    expect(keyAllowed(user("allkeys", "resetkeys"), "k", true, false)).toBe(false);
  });
  test("%R~ reads only, %W~ writes only, %RW~ both; read and write patterns combine", () => {
    const u = user("%R~ro:*", "%W~wo:*", "%RW~rw:*");
    expect(keyAllowed(u, "ro:1", true, false)).toBe(true);
    expect(keyAllowed(u, "ro:1", false, true)).toBe(false);
    expect(keyAllowed(u, "wo:1", false, true)).toBe(true);
    expect(keyAllowed(u, "wo:1", true, false)).toBe(false);
    expect(keyAllowed(u, "rw:1", true, true)).toBe(true);
    const both = user("%R~x*", "%W~x*");
    expect(keyAllowed(both, "x1", true, true)).toBe(true);
    expect(describeUser(both)).toContain("~x*"); // merged into one read-write pattern
  });
});

describe("channel rules", () => {
  test("&pattern matches channels; a pattern (PSUBSCRIBE) needs the same pattern; allchannels and resetchannels", () => {
    const u = user("&news:*");
    expect(channelAllowed(u, "news:1", false)).toBe(true);
    expect(channelAllowed(u, "other", false)).toBe(false);
    expect(channelAllowed(u, "news:*", true)).toBe(true);
    expect(channelAllowed(u, "news:1*", true)).toBe(false);
    expect(channelAllowed(user("allchannels"), "n*", true)).toBe(true);
    expect(channelAllowed(user("allchannels", "resetchannels"), "x", false)).toBe(false);
    expect(channelAllowed(user(), "x", false)).toBe(false); // a new user has none, as Redis 7's default
  });
  test("KV.WATCH of a key pattern needs a read pattern * or that same pattern", () => {
    expect(keyPatternReadable(user("~app:*"), "app:*")).toBe(true);
    expect(keyPatternReadable(user("~app:*"), "*")).toBe(false);
    expect(keyPatternReadable(user("%W~app:*"), "app:*")).toBe(false);
    expect(keyPatternReadable(user("%R~*"), "anything*")).toBe(true);
  });
});

describe("flags and passwords", () => {
  test("on/off, nopass, #hash, !hash, resetpass, reset", () => {
    const h = sha("secret");
    let u = user("on", `#${h}`);
    expect(u.enabled).toBe(true);
    expect(u.passwords).toEqual([h]);
    u = applyRules(u, ["off"], NAMES);
    expect(u.enabled).toBe(false);
    u = applyRules(u, [`!${h}`], NAMES);
    expect(u.passwords).toEqual([]);
    expect(() => applyRules(u, [`!${h}`], NAMES)).toThrow(AclRuleError);
    u = applyRules(u, ["nopass"], NAMES);
    expect(u.nopass).toBe(true);
    u = applyRules(u, [`#${h}`], NAMES);
    expect(u.nopass).toBe(false);
    u = applyRules(u, ["resetpass"], NAMES);
    expect(u.passwords).toEqual([]);
    u = applyRules(user("on", "allkeys", "+@all"), ["reset"], NAMES);
    expect(describeUser(u)).toBe("user u off resetchannels -@all");
  });
  test("a failed SETUSER leaves the user unchanged", () => {
    const st = new AclState();
    st.setUser("a", ["on", "+get"], NAMES);
    expect(() => st.setUser("a", ["off", "+nosuch"], NAMES)).toThrow(AclRuleError);
    expect(st.get("a")!.enabled).toBe(true);
  });
});

describe("the canonical text", () => {
  test("describeUser's line loads back to the same user", () => {
    const st = new AclState();
    st.setUser("alice", ["on", `#${sha("pw")}`, "~app:*", "%R~ro:*", "&chan", "+@read", "+@write", "-@dangerous", "+client|id"], NAMES);
    const lines = st.lines();
    const back = new AclState();
    back.load(lines, NAMES);
    expect(back.lines()).toEqual(lines);
    expect(lines).toContain(`user alice on #${sha("pw")} ~app:* %R~ro:* &chan -@all +@read +@write -@dangerous +client|id`);
    expect(lines).toContain("user default on nopass ~* &* +@all");
  });
  test("DELUSER never deletes default; LOAD keeps default when the lines have none", () => {
    const st = new AclState();
    st.setUser("a", ["on"], NAMES);
    expect(st.delUsers(["a", "default", "nobody"])).toBe(1);
    st.load(["user b on nopass +get"], NAMES);
    expect([...st.users.keys()].sort()).toEqual(["b", "default"]);
  });
});

function apply(fsm: KvStateMachine, argv: string[]): string {
  const out = new ReplyBuffer(64);
  fsm.apply(argv, 1, out);
  return out.view().toString("latin1");
}

describe("limits", () => {
  test("past ACL_USERS_MAX users, or ACL_STATE_BYTES_MAX bytes of lines, SETUSER is refused and nothing changes", () => {
    const st = new AclState();
    for (let i = 1; i < ACL_USERS_MAX; i++) st.setUser(`u${i}`, ["on"], NAMES);
    expect(() => st.setUser("one-more", ["on"], NAMES)).toThrow(`at most ${ACL_USERS_MAX} users`);
    st.setUser("u1", ["+get"], NAMES); // changing an existing user is fine
    const big = new AclState();
    const pattern = "~" + "p".repeat(1024 * 1024);
    let made = 0;
    expect(() => {
      for (; made < 10; made++) big.setUser(`b${made}`, [pattern], NAMES);
    }).toThrow(`past ${ACL_STATE_BYTES_MAX}`);
    expect(made).toBe(7);
    expect(big.get(`b${made}`)).toBeUndefined();
    expect(big.delUsers(["b0"])).toBe(1);
    big.setUser("b7", [pattern], NAMES); // room again after a DELUSER
  });
  test("names and rules are single words", () => {
    const st = new AclState();
    expect(() => st.setUser("a b", ["on"], NAMES)).toThrow("Usernames can't contain spaces or null characters");
    expect(() => st.setUser("ab", ["~a b"], NAMES)).toThrow("Error in ACL SETUSER modifier '~a b': Syntax error");
    expect(() => st.setUser("x".repeat(257), ["on"], NAMES)).toThrow("a user name is at most 256 bytes");
  });
});

describe("KV.ACL through the state machine", () => {
  test("SETUSER, DELUSER and LOAD change the users the same way on every replica", () => {
    const a = new KvStateMachine();
    const b = new KvStateMachine();
    const log = [
      ["KV.ACL", "SETUSER", "alice", "on", `#${sha("pw")}`, "~k*", "+get"],
      ["KV.ACL", "SETUSER", "bob", "on", "nopass", "+@all"],
      ["KV.ACL", "DELUSER", "bob"],
      ["KV.ACL", "SETUSER", "alice", "+set"],
    ];
    const replies = log.map((e) => apply(a, [...e]));
    expect(replies).toEqual(["+OK\r\n", "+OK\r\n", ":1\r\n", "+OK\r\n"]);
    for (const e of log) apply(b, [...e]);
    expect(b.acl.lines()).toEqual(a.acl.lines());
    expect(a.acl.replicated).toBe(true);
    expect(a.acl.get("alice")!.commands).toEqual(["-@all", "+get", "+set"]);
  });
  test("a bad entry answers its error and changes nothing", () => {
    const a = new KvStateMachine();
    expect(apply(a, ["KV.ACL", "SETUSER", "x", ">clear"])).toContain("ERR Error in ACL SETUSER modifier '>clear'");
    expect(apply(a, ["KV.ACL", "DELUSER", "default"])).toBe("-ERR The 'default' user cannot be removed\r\n");
    expect(a.acl.get("x")).toBeUndefined();
  });
  test("configured users (the node's flags) are the base; a snapshot without an ACL section restores them", () => {
    const a = new KvStateMachine();
    a.acl.configure([`user default on #${sha("pw")} ~* &* +@all`], NAMES);
    expect(a.acl.authRequired).toBe(true);
    apply(a, ["KV.ACL", "SETUSER", "x", "on"]);
    restoreAcl(a, null);
    expect(a.acl.get("x")).toBeUndefined();
    expect(a.acl.get("default")!.passwords).toEqual([sha("pw")]);
    expect(a.acl.replicated).toBe(false);
    restoreAcl(a, ["user y on nopass +get"]);
    expect(a.acl.get("y")).toBeDefined();
    expect(a.acl.replicated).toBe(true);
  });
  test("beginSnapshot carries the users only once they are replicated", () => {
    const a = new KvStateMachine();
    const v1 = a.beginSnapshot();
    v1.snapshot.close();
    expect(v1.acl).toBeNull();
    apply(a, ["KV.ACL", "SETUSER", "x", "on"]);
    const v2 = a.beginSnapshot();
    v2.snapshot.close();
    expect(v2.acl).toEqual(a.acl.lines());
  });
});

describe("snapshot meta", () => {
  test("without users the meta is the state machine's alone, byte for byte; older metas read with no users", () => {
    const kv = encodeSnapshotMeta(1733440000123, 7, [["k", 5]]);
    expect(withAclSection(kv, null)).toBe(kv);
    expect(splitAclSection(kv)).toEqual({ kvMeta: kv, acl: null });
    const old = new TextEncoder().encode("1733440000123"); // a format 3 file's meta
    expect(splitAclSection(old)).toEqual({ kvMeta: old, acl: null });
    expect(decodeSnapshotMeta(splitAclSection(old).kvMeta)).toMatchObject({ appliedMs: 1733440000123 });
  });
  test("the ACL section round-trips next to the state machine's meta (tombstones included) and is versioned", () => {
    const lines = ["user default on nopass ~* &* +@all", `user a on #${sha("x")} ~k* -@all +get`];
    const kv = encodeSnapshotMeta(42, 9, [["gone", 3], ["k\u0000\u00ff", 8]]);
    const both = withAclSection(kv, lines);
    expect(Buffer.from(both).subarray(0, 11).toString("latin1")).toBe("sections 1\n");
    const back = splitAclSection(both);
    expect(back.acl).toEqual(lines);
    expect(Buffer.from(back.kvMeta).equals(Buffer.from(kv))).toBe(true);
    expect(decodeSnapshotMeta(back.kvMeta)).toEqual({ appliedMs: 42, deleteFloor: 9, tombstones: [["gone", 3], ["k\u0000\u00ff", 8]] });
    expect(splitAclSection(withAclSection(kv, [])).acl).toEqual([]);
    const damaged = Buffer.from(both);
    expect(() => splitAclSection(damaged.subarray(0, damaged.length - 1))).toThrow(SnapshotMetaError);
    expect(() => splitAclSection(Buffer.from("sections 2\nxxxx"))).toThrow(SnapshotMetaError);
    const v2 = Buffer.from(both);
    v2.write("acl 2", 11 + 4 + kv.length + 4, "latin1");
    expect(() => splitAclSection(v2)).toThrow("not 'acl 1'");
  });
});
