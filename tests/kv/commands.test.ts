// The KV command table through exec, without sockets: exact RESP bytes for every command,
// option and error, in RESP2 and RESP3, with time given explicitly.
import { describe, expect, test } from "bun:test";
import { isWriteCommand, KV_COMMANDS, lookupKvCommand } from "../../src/kv/commands.ts";
import { bulk, bulks, Kv, T0 } from "./helpers.ts";

const NIL2 = "$-1\r\n";
const NIL3 = "_\r\n";
const OK = "+OK\r\n";
const SYNTAX = "-ERR syntax error\r\n";
const NOT_INT = "-ERR value is not an integer or out of range\r\n";
const int = (n: number | bigint) => `:${n}\r\n`;

describe("command table", () => {
  test("arity, flags and key positions are Redis 7's (COMMAND INFO of redis-server 7.0.15)", () => {
    // name arity flags(without denyoom) firstKey lastKey keyStep
    const redis = `get 2 readonly,fast 1 1 1
set -3 write 1 1 1
setnx 3 write,fast 1 1 1
getset 3 write,fast 1 1 1
getdel 2 write,fast 1 1 1
getex -2 write,fast 1 1 1
mget -2 readonly,fast 1 -1 1
mset -3 write 1 -1 2
msetnx -3 write 1 -1 2
strlen 2 readonly,fast 1 1 1
append 3 write,fast 1 1 1
incr 2 write,fast 1 1 1
decr 2 write,fast 1 1 1
incrby 3 write,fast 1 1 1
decrby 3 write,fast 1 1 1
incrbyfloat 3 write,fast 1 1 1
del -2 write 1 -1 1
exists -2 readonly,fast 1 -1 1
type 2 readonly,fast 1 1 1
keys 2 readonly 0 0 0
scan -2 readonly 0 0 0
dbsize 1 readonly,fast 0 0 0
flushall -1 write 0 0 0
expire -3 write,fast 1 1 1
pexpire -3 write,fast 1 1 1
expireat -3 write,fast 1 1 1
pexpireat -3 write,fast 1 1 1
ttl 2 readonly,fast 1 1 1
pttl 2 readonly,fast 1 1 1
persist 2 write,fast 1 1 1
setex 4 write 1 1 1
psetex 4 write 1 1 1
getrange 4 readonly 1 1 1
substr 4 readonly 1 1 1
setrange 4 write 1 1 1
unlink -2 write,fast 1 -1 1
touch -2 readonly,fast 1 -1 1
rename 3 write 1 2 1
renamenx 3 write,fast 1 2 1
copy -3 write 1 2 1
flushdb -1 write 0 0 0
expiretime 2 readonly,fast 1 1 1
pexpiretime 2 readonly,fast 1 1 1`;
    // kv's own commands (KV.TXN, KV.REV...) are not Redis's.
    const ours = KV_COMMANDS.filter((s) => !s.name.startsWith("kv.")).map((s) => `${s.name} ${s.arity} ${s.flags.join(",")} ${s.firstKey} ${s.lastKey} ${s.keyStep}`);
    expect(ours).toEqual(redis.split("\n"));
  });

  test("lookup is case-insensitive and unknown names are undefined", () => {
    expect(lookupKvCommand("get")!.name).toBe("get");
    expect(lookupKvCommand("GET")!.name).toBe("get");
    expect(lookupKvCommand("gEt")!.name).toBe("get");
    expect(lookupKvCommand("PExpireAt")!.name).toBe("pexpireat");
    expect(lookupKvCommand("nosuch")).toBeUndefined();
    expect(lookupKvCommand("")).toBeUndefined();
  });

  test("isWriteCommand follows the write flag", () => {
    const writes = KV_COMMANDS.filter(isWriteCommand).map((s) => s.name);
    expect(writes).toEqual([
      "set", "setnx", "getset", "getdel", "getex", "mset", "msetnx", "append", "incr", "decr", "incrby", "decrby",
      "incrbyfloat", "del", "flushall", "expire", "pexpire", "expireat", "pexpireat", "persist",
      "setex", "psetex", "setrange", "unlink", "rename", "renamenx", "copy", "flushdb", "kv.txn",
    ]);
    expect(isWriteCommand(lookupKvCommand("get")!)).toBe(false);
    expect(KV_COMMANDS.every((s) => s.flags.includes("write") !== s.flags.includes("readonly"))).toBe(true);
  });
});

describe("GET / SET", () => {
  test("set then get; missing key is a null bulk in RESP2 and _ in RESP3", () => {
    const kv = new Kv();
    expect(kv.run("SET", "foo", "bar")).toBe(OK);
    expect(kv.run("GET", "foo")).toBe("$3\r\nbar\r\n");
    expect(kv.run("GET", "nope")).toBe(NIL2);
    expect(kv.run3("GET", "nope")).toBe(NIL3);
    expect(kv.run3("GET", "foo")).toBe("$3\r\nbar\r\n");
    expect(kv.run("SET", "foo", "")).toBe(OK);
    expect(kv.run("GET", "foo")).toBe("$0\r\n\r\n");
  });

  test("every byte value round-trips in keys and values", () => {
    const kv = new Kv();
    let all = "";
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    expect(kv.run("SET", all, all)).toBe(OK);
    const reply = kv.run("GET", all);
    expect(reply).toBe(`$256\r\n${all}\r\n`);
    const bytes = Buffer.from(reply, "latin1");
    expect(bytes.length).toBe(6 + 256 + 2);
    for (let i = 0; i < 256; i++) expect(bytes[6 + i]).toBe(i);
    expect(kv.run("STRLEN", all)).toBe(int(256));
    expect(kv.run("SET", "\r\n", "\0")).toBe(OK);
    expect(kv.run("MGET", "\r\n", all)).toBe(`*2\r\n$1\r\n\0\r\n$256\r\n${all}\r\n`);
    expect(kv.run("KEYS", "\r*")).toBe(bulks("\r\n"));
  });

  test("large values (1 MiB) round-trip", () => {
    const kv = new Kv();
    const big = "x".repeat(1 << 20);
    expect(kv.run("SET", "big", big)).toBe(OK);
    expect(kv.run("GET", "big")).toBe(`$${1 << 20}\r\n${big}\r\n`);
  });

  test("NX and XX", () => {
    const kv = new Kv();
    expect(kv.run("SET", "k", "1", "XX")).toBe(NIL2);
    expect(kv.run3("SET", "k", "1", "XX")).toBe(NIL3);
    expect(kv.run("GET", "k")).toBe(NIL2);
    expect(kv.run("SET", "k", "1", "nx")).toBe(OK);
    expect(kv.run("SET", "k", "2", "NX")).toBe(NIL2);
    expect(kv.run("GET", "k")).toBe(bulk("1"));
    expect(kv.run("SET", "k", "3", "xX")).toBe(OK);
    expect(kv.run("GET", "k")).toBe(bulk("3"));
    expect(kv.run("SET", "k", "4", "NX", "XX")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "4", "XX", "NX")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "4", "NX", "NX")).toBe(NIL2);
  });

  test("GET option returns the old value, also with NX/XX", () => {
    const kv = new Kv();
    expect(kv.run("SET", "k", "1", "GET")).toBe(NIL2);
    expect(kv.run3("SET", "k", "2", "GET")).toBe(bulk("1"));
    expect(kv.run("SET", "k", "3", "get", "XX")).toBe(bulk("2"));
    expect(kv.run("SET", "k", "4", "NX", "GET")).toBe(bulk("3"));
    expect(kv.run("GET", "k")).toBe(bulk("3"));
    expect(kv.run("SET", "n", "1", "XX", "GET")).toBe(NIL2);
    expect(kv.run3("SET", "n", "1", "XX", "GET")).toBe(NIL3);
    expect(kv.run("EXISTS", "n")).toBe(int(0));
  });

  test("expiry options set absolute times from nowMs", () => {
    const kv = new Kv();
    expect(kv.run("SET", "ex", "v", "EX", "10")).toBe(OK);
    expect(kv.run("SET", "px", "v", "PX", "1500")).toBe(OK);
    expect(kv.run("SET", "exat", "v", "EXAT", String(T0 / 1000 + 20))).toBe(OK);
    expect(kv.run("SET", "pxat", "v", "PXAT", String(T0 + 2500))).toBe(OK);
    expect(kv.db.expireAt("ex")).toBe(T0 + 10_000);
    expect(kv.db.expireAt("px")).toBe(T0 + 1500);
    expect(kv.db.expireAt("exat")).toBe(T0 + 20_000);
    expect(kv.db.expireAt("pxat")).toBe(T0 + 2500);
    expect(kv.at(T0 + 1499, "GET", "px")).toBe(bulk("v"));
    expect(kv.at(T0 + 1500, "GET", "px")).toBe(NIL2);
    expect(kv.at(T0 + 9999, "GET", "ex")).toBe(bulk("v"));
    expect(kv.at(T0 + 10_000, "GET", "ex")).toBe(NIL2);
    expect(kv.at(T0 + 10_000, "EXISTS", "ex", "exat", "pxat", "px")).toBe(int(1));
  });

  test("a plain SET clears the TTL; KEEPTTL keeps it", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v", "EX", "100");
    expect(kv.run("SET", "k", "w", "KEEPTTL")).toBe(OK);
    expect(kv.run("TTL", "k")).toBe(int(100));
    expect(kv.run("SET", "k", "x")).toBe(OK);
    expect(kv.run("TTL", "k")).toBe(int(-1));
    expect(kv.db.expiresCount()).toBe(0);
  });

  test("an absolute time already past sets nothing and removes the old value", () => {
    const kv = new Kv();
    kv.run("SET", "k", "old");
    expect(kv.run("SET", "k", "v", "PXAT", String(T0))).toBe(OK);
    expect(kv.run("GET", "k")).toBe(NIL2);
    expect(kv.db.dbsize()).toBe(0);
    expect(kv.run("SET", "k", "v", "EXAT", "1", "GET")).toBe(NIL2);
    expect(kv.db.dbsize()).toBe(0);
  });

  test("expiry syntax and value errors, in Redis's order", () => {
    const kv = new Kv();
    const invalid = "-ERR invalid expire time in 'set' command\r\n";
    expect(kv.run("SET", "k", "v", "EX")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "v", "EX", "0")).toBe(invalid);
    expect(kv.run("SET", "k", "v", "PX", "-5")).toBe(invalid);
    expect(kv.run("SET", "k", "v", "EXAT", "0")).toBe(invalid);
    expect(kv.run("SET", "k", "v", "EX", "1.5")).toBe(NOT_INT);
    expect(kv.run("SET", "k", "v", "EX", " 1")).toBe(NOT_INT);
    expect(kv.run("SET", "k", "v", "EX", "9223372036854775808")).toBe(NOT_INT);
    expect(kv.run("SET", "k", "v", "EX", "9223372036854776")).toBe(invalid); // * 1000 overflows
    expect(kv.run("SET", "k", "v", "PX", "9223372036854775807")).toBe(invalid); // + now overflows
    expect(kv.run("SET", "k", "v", "EX", "-1", "foo")).toBe(SYNTAX); // syntax first
    expect(kv.run("SET", "k", "v", "EX", "10", "PX", "10")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "v", "EX", "10", "KEEPTTL")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "v", "KEEPTTL", "PXAT", "10")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "v", "PERSIST")).toBe(SYNTAX);
    expect(kv.run("SET", "k", "v", "EXX")).toBe(SYNTAX);
    expect(kv.run("DBSIZE")).toBe(int(0));
    // The same option twice is accepted; the last value wins.
    expect(kv.run("SET", "k", "v", "EX", "10", "EX", "20")).toBe(OK);
    expect(kv.run("TTL", "k")).toBe(int(20));
    // A huge absolute time is valid.
    expect(kv.run("SET", "k", "v", "PXAT", "9223372036854775807")).toBe(OK);
    expect(kv.run("GET", "k")).toBe(bulk("v"));
  });

  test("arity is checked with Redis's text", () => {
    const kv = new Kv();
    expect(kv.run("GET")).toBe("-ERR wrong number of arguments for 'get' command\r\n");
    expect(kv.run("SET", "k")).toBe("-ERR wrong number of arguments for 'set' command\r\n");
    expect(kv.run("MSET", "a", "1", "b")).toBe("-ERR wrong number of arguments for 'mset' command\r\n");
    expect(kv.run("MSETNX", "a", "1", "b")).toBe("-ERR wrong number of arguments for 'msetnx' command\r\n");
  });
});

describe("string family", () => {
  test("SETNX", () => {
    const kv = new Kv();
    expect(kv.run("SETNX", "k", "1")).toBe(int(1));
    expect(kv.run("SETNX", "k", "2")).toBe(int(0));
    expect(kv.run("GET", "k")).toBe(bulk("1"));
  });

  test("GETSET returns the old value and clears the TTL", () => {
    const kv = new Kv();
    expect(kv.run("GETSET", "k", "1")).toBe(NIL2);
    expect(kv.run3("GETSET", "j", "1")).toBe(NIL3);
    kv.run("EXPIRE", "k", "100");
    expect(kv.run("GETSET", "k", "2")).toBe(bulk("1"));
    expect(kv.run("GET", "k")).toBe(bulk("2"));
    expect(kv.run("TTL", "k")).toBe(int(-1));
  });

  test("GETDEL", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("GETDEL", "k")).toBe(bulk("v"));
    expect(kv.run("GETDEL", "k")).toBe(NIL2);
    expect(kv.run3("GETDEL", "k")).toBe(NIL3);
    expect(kv.db.dbsize()).toBe(0);
  });

  test("GETEX sets, changes and removes TTLs", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("GETEX", "k")).toBe(bulk("v"));
    expect(kv.run("TTL", "k")).toBe(int(-1));
    expect(kv.run("GETEX", "k", "EX", "100")).toBe(bulk("v"));
    expect(kv.run("TTL", "k")).toBe(int(100));
    expect(kv.run("GETEX", "k", "PX", "5000")).toBe(bulk("v"));
    expect(kv.run("PTTL", "k")).toBe(int(5000));
    expect(kv.run("GETEX", "k", "EXAT", String(T0 / 1000 + 50))).toBe(bulk("v"));
    expect(kv.run("PTTL", "k")).toBe(int(50_000));
    expect(kv.run("GETEX", "k", "PXAT", String(T0 + 7))).toBe(bulk("v"));
    expect(kv.run("PTTL", "k")).toBe(int(7));
    expect(kv.run("GETEX", "k", "PERSIST")).toBe(bulk("v"));
    expect(kv.run("PTTL", "k")).toBe(int(-1));
    // An absolute time in the past returns the value and deletes the key.
    expect(kv.run("GETEX", "k", "PXAT", String(T0))).toBe(bulk("v"));
    expect(kv.run("EXISTS", "k")).toBe(int(0));
    expect(kv.run("GETEX", "k")).toBe(NIL2);
    expect(kv.run3("GETEX", "k")).toBe(NIL3);
  });

  test("GETEX errors", () => {
    const kv = new Kv();
    const invalid = "-ERR invalid expire time in 'getex' command\r\n";
    kv.run("SET", "k", "v");
    for (const opt of ["NX", "XX", "GET", "KEEPTTL", "FOO"]) expect(kv.run("GETEX", "k", opt)).toBe(SYNTAX);
    expect(kv.run("GETEX", "k", "EX")).toBe(SYNTAX);
    expect(kv.run("GETEX", "k", "EX", "10", "PERSIST")).toBe(SYNTAX);
    expect(kv.run("GETEX", "k", "PERSIST", "PX", "10")).toBe(SYNTAX);
    expect(kv.run("GETEX", "k", "EX", "0")).toBe(invalid);
    expect(kv.run("GETEX", "k", "PXAT", "-1")).toBe(invalid);
    expect(kv.run("GETEX", "k", "EX", "x")).toBe(NOT_INT);
    // On a missing key the value is not checked (Redis looks the key up first).
    expect(kv.run("GETEX", "nokey", "EX", "-1")).toBe(NIL2);
    expect(kv.run("GETEX", "nokey", "FOO")).toBe(SYNTAX);
    expect(kv.run("TTL", "k")).toBe(int(-1));
  });

  test("MSET, MSETNX, MGET", () => {
    const kv = new Kv();
    expect(kv.run("MSET", "a", "1", "b", "2")).toBe(OK);
    expect(kv.run("MGET", "a", "b", "c")).toBe(`*3\r\n${bulk("1")}${bulk("2")}${NIL2}`);
    expect(kv.run3("MGET", "a", "c")).toBe(`*2\r\n${bulk("1")}${NIL3}`);
    expect(kv.run("MSETNX", "c", "3", "a", "9")).toBe(int(0));
    expect(kv.run("EXISTS", "c")).toBe(int(0));
    expect(kv.run("MSETNX", "c", "3", "d", "4")).toBe(int(1));
    expect(kv.run("MGET", "c", "d")).toBe(bulks("3", "4"));
    kv.run("EXPIRE", "a", "100");
    expect(kv.run("MSET", "a", "5", "a", "6")).toBe(OK);
    expect(kv.run("GET", "a")).toBe(bulk("6"));
    expect(kv.run("TTL", "a")).toBe(int(-1));
  });

  test("APPEND and STRLEN keep the TTL", () => {
    const kv = new Kv();
    expect(kv.run("STRLEN", "k")).toBe(int(0));
    expect(kv.run("APPEND", "k", "hello")).toBe(int(5));
    kv.run("EXPIRE", "k", "100");
    expect(kv.run("APPEND", "k", " world")).toBe(int(11));
    expect(kv.run("GET", "k")).toBe(bulk("hello world"));
    expect(kv.run("STRLEN", "k")).toBe(int(11));
    expect(kv.run("TTL", "k")).toBe(int(100));
    expect(kv.run("APPEND", "k", "")).toBe(int(11));
    expect(kv.run("APPEND", "bin", "\0\xff")).toBe(int(2));
    expect(kv.run("APPEND", "bin", "\r\n")).toBe(int(4));
    expect(kv.run("GET", "bin")).toBe("$4\r\n\0\xff\r\n\r\n");
  });

  test("INCR, DECR, INCRBY, DECRBY", () => {
    const kv = new Kv();
    expect(kv.run("INCR", "n")).toBe(int(1));
    expect(kv.run("INCRBY", "n", "41")).toBe(int(42));
    expect(kv.run("DECR", "n")).toBe(int(41));
    expect(kv.run("DECRBY", "n", "50")).toBe(int(-9));
    expect(kv.run("GET", "n")).toBe(bulk("-9"));
    expect(kv.run("DECR", "m")).toBe(int(-1));
    expect(kv.run("DECRBY", "o", "-5")).toBe(int(5));
    expect(kv.run("INCRBY", "n", "0")).toBe(int(-9));
    expect(kv.run("DECRBY", "n", "0")).toBe(int(-9));
    expect(kv.run("GET", "n")).toBe(bulk("-9"));
    kv.run("EXPIRE", "n", "100");
    expect(kv.run("INCR", "n")).toBe(int(-8));
    expect(kv.run("TTL", "n")).toBe(int(100));
  });

  test("INCR family: Redis's integer syntax", () => {
    const kv = new Kv();
    for (const bad of ["", "abc", " 1", "1 ", "+1", "01", "-0", "1.0", "1e3", "0x10", "-", "12345678901234567890"]) {
      kv.run("SET", "s", bad);
      expect(kv.run("INCR", "s")).toBe(NOT_INT);
      expect(kv.run("GET", "s")).toBe(bulk(bad));
      expect(kv.run("INCRBY", "n", bad)).toBe(NOT_INT);
      expect(kv.run("DECRBY", "n", bad)).toBe(NOT_INT);
    }
    expect(kv.run("EXISTS", "n")).toBe(int(0));
    kv.run("SET", "s", "0");
    expect(kv.run("INCR", "s")).toBe(int(1));
    kv.run("SET", "s", "-10");
    expect(kv.run("INCR", "s")).toBe(int(-9));
  });

  test("INCR family: exact 64-bit arithmetic and overflow", () => {
    const kv = new Kv();
    const overflow = "-ERR increment or decrement would overflow\r\n";
    kv.run("SET", "n", "9007199254740991"); // 2^53 - 1
    expect(kv.run("INCR", "n")).toBe(int(9007199254740992n));
    expect(kv.run("INCR", "n")).toBe(int(9007199254740993n));
    expect(kv.run("GET", "n")).toBe(bulk("9007199254740993"));
    expect(kv.run("DECRBY", "n", "9007199254740993")).toBe(int(0));
    expect(kv.run("INCRBY", "n", "9223372036854775807")).toBe(int(9223372036854775807n));
    expect(kv.run("INCR", "n")).toBe(overflow);
    expect(kv.run("INCRBY", "n", "1")).toBe(overflow);
    expect(kv.run("GET", "n")).toBe(bulk("9223372036854775807"));
    expect(kv.run("INCRBY", "n", "-9223372036854775807")).toBe(int(0));
    expect(kv.run("INCRBY", "n", "-9223372036854775808")).toBe(int(-9223372036854775808n));
    expect(kv.run("DECR", "n")).toBe(overflow);
    expect(kv.run("DECRBY", "n", "-9223372036854775807")).toBe(int(-1));
    expect(kv.run("DECRBY", "n", "-9223372036854775808")).toBe("-ERR decrement would overflow\r\n");
    expect(kv.run("INCRBY", "n", "9223372036854775808")).toBe(NOT_INT);
    expect(kv.run("INCRBY", "n", "-9223372036854775809")).toBe(NOT_INT);
    kv.run("SET", "m", "-9007199254740991");
    expect(kv.run("DECR", "m")).toBe(int(-9007199254740992n));
    expect(kv.run("DECRBY", "m", "1")).toBe(int(-9007199254740993n));
    expect(kv.run("GET", "m")).toBe(bulk("-9007199254740993"));
  });

  test("INCRBYFLOAT: every reply as redis-server 7.0.15 gives it, long double rounding included", () => {
    const FLOAT = "-ERR value is not a valid float\r\n";
    const NAN_INF = "-ERR increment would produce NaN or Infinity\r\n";
    // [stored value (null: no key), increment, redis-server's reply]
    const cases: [string | null, string, string][] = [
      [null, "10.5", bulk("10.5")],
      ["10.50", "0.1", bulk("10.6")],
      ["5.0e3", "2.0e2", bulk("5200")],
      ["1000.1", "0.1", bulk("1000.19999999999999996")],
      ["0.1", "0.2", bulk("0.3")],
      ["3", "-3", bulk("0")],
      ["-0", "0", bulk("0")],
      ["1e-4940", "0", bulk("0")],
      ["12345678901234567890123", "1", bulk("12345678901234567889920")],
      ["0x1p3", "0.5", bulk("8.5")],
      [".5", "5.", bulk("5.5")],
      ["+3", "1E2", bulk("103")],
      ["1", "1e-17", bulk("1.00000000000000001")],
      ["1", "5e-18", bulk("1")],
      ["1", "1.5e-17", bulk("1.00000000000000001")],
      ["99999999999999999999.99", "0.01", bulk("100000000000000000000")],
      ["123456789.123456789", "0.000000001", bulk("123456789.12345678999554366")],
      ["1.18e4932", "1e4932", NAN_INF],
      ["inf", "1", NAN_INF],
      ["1e-5000", "1", FLOAT],
      ["1", "nan", FLOAT],
      [" 1", "1", FLOAT],
      ["1", "", FLOAT],
      ["abc", "1", FLOAT],
    ];
    for (const [stored, incr, reply] of cases) {
      const kv = new Kv();
      if (stored !== null) kv.run("SET", "f", stored);
      expect([stored, incr, kv.run("INCRBYFLOAT", "f", incr)]).toEqual([stored, incr, reply]);
    }
    // 1e4000 + 1 prints every digit of the long double nearest to 1e4000.
    const kv = new Kv();
    kv.run("SET", "f", "1e4000");
    const big = kv.run("INCRBYFLOAT", "f", "1");
    expect(big.slice(0, 80)).toBe("$4000\r\n9999999999999999999965463873099623784932492583506957631301508333043261943");
    // The result is stored as the string replied, and the TTL is kept.
    kv.run("SET", "t", "1.5", "PX", "10000");
    expect(kv.run("INCRBYFLOAT", "t", "2")).toBe(bulk("3.5"));
    expect(kv.run("GET", "t")).toBe(bulk("3.5"));
    expect(kv.run("PTTL", "t")).toBe(int(10000));
  });
});

describe("keyspace", () => {
  test("COPY: value and TTL, REPLACE, DB 0 only; replies as redis-server 7.0.15's", () => {
    const kv = new Kv();
    kv.run("SET", "a", "1");
    expect(kv.run("COPY", "a", "b")).toBe(int(1));
    expect(kv.run("GET", "b")).toBe(bulk("1"));
    expect(kv.run("COPY", "a", "b")).toBe(int(0));
    expect(kv.run("COPY", "a", "b", "replace")).toBe(int(1));
    expect(kv.run("COPY", "a", "a")).toBe("-ERR source and destination objects are the same\r\n");
    expect(kv.run("COPY", "nosuch", "nosuch")).toBe("-ERR source and destination objects are the same\r\n");
    expect(kv.run("COPY", "nosuch", "b")).toBe(int(0));
    kv.run("SET", "t", "v", "PX", "100000");
    expect(kv.run("COPY", "t", "t2")).toBe(int(1));
    expect(kv.run("PTTL", "t2")).toBe(int(100000));
    kv.run("SET", "b", "2", "EX", "500");
    expect(kv.run("COPY", "a", "b", "REPLACE")).toBe(int(1));
    expect(kv.run("TTL", "b")).toBe(int(-1)); // the destination's TTL goes with it
    expect(kv.run("COPY", "a", "c", "DB", "0")).toBe(int(1));
    expect(kv.run("COPY", "a", "c", "DB", "x")).toBe(NOT_INT);
    expect(kv.run("COPY", "a", "c", "DB", "00")).toBe(NOT_INT);
    expect(kv.run("COPY", "a", "c", "DB", "-1")).toBe("-ERR DB index is out of range\r\n");
    expect(kv.run("COPY", "a", "c", "DB", "99999999999")).toBe("-ERR value is out of range, value must between -2147483648 and 2147483647\r\n");
    expect(kv.run("COPY", "a", "c", "DB")).toBe(SYNTAX);
    expect(kv.run("COPY", "a", "c", "FOO")).toBe(SYNTAX);
    expect(kv.run("COPY", "a", "c", "REPLACE", "DB", "0", "REPLACE")).toBe(int(1));
    // An expired source is gone; an expired destination does not block the copy.
    kv.run("SET", "gone", "x", "PX", "10");
    kv.run("SET", "dst", "old", "PX", "10");
    kv.nowMs += 20;
    expect(kv.run("COPY", "gone", "z")).toBe(int(0));
    expect(kv.run("COPY", "a", "dst")).toBe(int(1));
    expect(kv.run("GET", "dst")).toBe(bulk("1"));
  });

  test("DEL and EXISTS count keys; EXISTS counts repeats", () => {
    const kv = new Kv();
    kv.run("MSET", "a", "1", "b", "2", "c", "3");
    expect(kv.run("EXISTS", "a", "a", "b", "x")).toBe(int(3));
    expect(kv.run("DEL", "a", "a", "x", "b")).toBe(int(2));
    expect(kv.run("EXISTS", "a", "b", "c")).toBe(int(1));
    expect(kv.run("DEL", "nope")).toBe(int(0));
  });

  test("TYPE", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("TYPE", "k")).toBe("+string\r\n");
    expect(kv.run("TYPE", "x")).toBe("+none\r\n");
    expect(kv.run3("TYPE", "x")).toBe("+none\r\n");
  });

  test("KEYS returns live matching keys in insertion order", () => {
    const kv = new Kv();
    kv.run("MSET", "hello", "1", "hallo", "2", "hxllo", "3", "heeello", "4", "foo", "5");
    kv.run("SET", "gone", "v", "PX", "10");
    expect(kv.run("KEYS", "*")).toBe(bulks("hello", "hallo", "hxllo", "heeello", "foo", "gone"));
    expect(kv.run("KEYS", "h?llo")).toBe(bulks("hello", "hallo", "hxllo"));
    expect(kv.run("KEYS", "h*llo")).toBe(bulks("hello", "hallo", "hxllo", "heeello"));
    expect(kv.run("KEYS", "h[ae]llo")).toBe(bulks("hello", "hallo"));
    expect(kv.run("KEYS", "h[^e]llo")).toBe(bulks("hallo", "hxllo"));
    expect(kv.run("KEYS", "h[a-b]llo")).toBe(bulks("hallo"));
    expect(kv.run("KEYS", "nomatch")).toBe("*0\r\n");
    expect(kv.run3("KEYS", "nomatch")).toBe("*0\r\n");
    expect(kv.at(T0 + 10, "KEYS", "*o*")).toBe(bulks("hello", "hallo", "hxllo", "heeello", "foo", "gone").replace("*6", "*5").replace(bulk("gone"), ""));
  });

  test("the empty key: KEYS * and SCAN MATCH * return it, ** does not (as Redis)", () => {
    const kv = new Kv();
    kv.run("SET", "", "1");
    expect(kv.run("KEYS", "*")).toBe("*1\r\n$0\r\n\r\n");
    expect(kv.run("KEYS", "**")).toBe("*0\r\n");
    expect(kv.run("SCAN", "0", "MATCH", "*")).toBe("*2\r\n$1\r\n0\r\n*1\r\n$0\r\n\r\n");
    expect(kv.run("SCAN", "0", "MATCH", "**")).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
    expect(kv.run("GET", "")).toBe(bulk("1"));
  });

  test("DBSIZE and FLUSHALL [ASYNC|SYNC]", () => {
    const kv = new Kv();
    expect(kv.run("DBSIZE")).toBe(int(0));
    kv.run("MSET", "a", "1", "b", "2");
    expect(kv.run("DBSIZE")).toBe(int(2));
    expect(kv.run("FLUSHALL")).toBe(OK);
    expect(kv.run("DBSIZE")).toBe(int(0));
    kv.run("SET", "a", "1", "EX", "5");
    expect(kv.run("FLUSHALL", "ASYNC")).toBe(OK);
    expect(kv.db.expiresCount()).toBe(0);
    kv.run("SET", "a", "1");
    expect(kv.run("FLUSHALL", "sync")).toBe(OK);
    expect(kv.run("DBSIZE")).toBe(int(0));
    kv.run("SET", "a", "1");
    expect(kv.run("FLUSHALL", "now")).toBe(SYNTAX);
    expect(kv.run("FLUSHALL", "SYNC", "ASYNC")).toBe(SYNTAX);
    expect(kv.run("DBSIZE")).toBe(int(1));
  });

  test("DBSIZE counts expired keys until they are reclaimed, as Redis's does", () => {
    const kv = new Kv();
    kv.run("SET", "a", "1", "PX", "10");
    kv.run("SET", "b", "1");
    kv.nowMs = T0 + 10;
    expect(kv.run("DBSIZE")).toBe(int(2));
    expect(kv.run("GET", "a")).toBe(NIL2);
    expect(kv.run("DBSIZE")).toBe(int(2)); // reads never mutate
    expect(kv.db.sweepExpired(kv.nowMs, 10)).toBe(1);
    expect(kv.run("DBSIZE")).toBe(int(1));
  });
});

describe("SCAN", () => {
  test("walks the keyspace with COUNT and ends with cursor 0", () => {
    const kv = new Kv();
    for (let i = 0; i < 25; i++) kv.run("SET", `k${i}`, "v");
    const seen: string[] = [];
    let cursor = "0";
    let calls = 0;
    do {
      const reply = kv.run("SCAN", cursor, "COUNT", "10");
      const m = /^\*2\r\n\$\d+\r\n(\d+)\r\n\*(\d+)\r\n/.exec(reply)!;
      expect(m).not.toBeNull();
      cursor = m[1]!;
      const keys = reply.slice(m[0].length).split("\r\n").filter((_, i) => i % 2 === 1);
      expect(keys.length).toBe(Number(m[2]));
      seen.push(...keys);
      calls++;
    } while (cursor !== "0");
    expect(calls).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `k${i}`));
  });

  test("exact replies: single call, MATCH, TYPE, expired keys skipped, empty keyspace", () => {
    const kv = new Kv();
    expect(kv.run("SCAN", "0")).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
    expect(kv.run3("SCAN", "0")).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
    kv.run("MSET", "user:1", "a", "user:2", "b", "order:1", "c");
    kv.run("SET", "user:3", "d", "PX", "5");
    expect(kv.run("SCAN", "0")).toBe(`*2\r\n$1\r\n0\r\n${bulks("user:1", "user:2", "order:1", "user:3")}`);
    expect(kv.run("SCAN", "0", "MATCH", "user:*")).toBe(`*2\r\n$1\r\n0\r\n${bulks("user:1", "user:2", "user:3")}`);
    expect(kv.run("SCAN", "0", "match", "user:*", "TYPE", "STRING", "count", "100")).toBe(
      `*2\r\n$1\r\n0\r\n${bulks("user:1", "user:2", "user:3")}`,
    );
    expect(kv.run("SCAN", "0", "TYPE", "list")).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
    expect(kv.run("SCAN", "0", "TYPE", "nosuchtype")).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
    expect(kv.at(T0 + 5, "SCAN", "0")).toBe(`*2\r\n$1\r\n0\r\n${bulks("user:1", "user:2", "order:1")}`);
    // A partial step returns a non-zero cursor, possibly with no keys after filtering.
    const r = kv.run("SCAN", "0", "COUNT", "1", "MATCH", "order:*");
    expect(r).toMatch(/^\*2\r\n\$\d+\r\n[1-9]\d*\r\n\*0\r\n$/);
  });

  test("errors", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    const invalid = "-ERR invalid cursor\r\n";
    for (const c of ["abc", "1.5", " 1", "1 ", "-", "+", "18446744073709551616", "-18446744073709551616"]) {
      expect(kv.run("SCAN", c)).toBe(invalid);
    }
    expect(kv.run("SCAN", "0", "COUNT", "0")).toBe(SYNTAX);
    expect(kv.run("SCAN", "0", "COUNT", "-1")).toBe(SYNTAX);
    expect(kv.run("SCAN", "0", "COUNT", "x")).toBe(NOT_INT);
    expect(kv.run("SCAN", "0", "COUNT")).toBe(SYNTAX);
    expect(kv.run("SCAN", "0", "MATCH")).toBe(SYNTAX);
    expect(kv.run("SCAN", "0", "TYPE")).toBe(SYNTAX);
    expect(kv.run("SCAN", "0", "FOO", "bar")).toBe(SYNTAX);
    // Forms Redis 7.0 accepts: unknown cursors restart the iteration here.
    for (const c of ["", "18446744073709551615", "-1", "+7", "007"]) {
      expect(kv.run("SCAN", c)).toBe(`*2\r\n$1\r\n0\r\n${bulks("k")}`);
    }
  });
});

describe("expiry commands", () => {
  test("EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT set absolute times", () => {
    const kv = new Kv();
    kv.run("MSET", "a", "1", "b", "1", "c", "1", "d", "1");
    expect(kv.run("EXPIRE", "a", "10")).toBe(int(1));
    expect(kv.run("PEXPIRE", "b", "1500")).toBe(int(1));
    expect(kv.run("EXPIREAT", "c", String(T0 / 1000 + 30))).toBe(int(1));
    expect(kv.run("PEXPIREAT", "d", String(T0 + 45))).toBe(int(1));
    expect([kv.db.expireAt("a"), kv.db.expireAt("b"), kv.db.expireAt("c"), kv.db.expireAt("d")]).toEqual([
      T0 + 10_000, T0 + 1500, T0 + 30_000, T0 + 45,
    ]);
    expect(kv.run("EXPIRE", "missing", "10")).toBe(int(0));
    expect(kv.run("EXISTS", "missing")).toBe(int(0));
  });

  test("a time in the past deletes the key and replies 1", () => {
    const kv = new Kv();
    kv.run("MSET", "a", "1", "b", "1", "c", "1", "d", "1", "e", "1");
    expect(kv.run("EXPIRE", "a", "0")).toBe(int(1));
    expect(kv.run("PEXPIRE", "b", "-100")).toBe(int(1));
    expect(kv.run("EXPIREAT", "c", "1")).toBe(int(1));
    expect(kv.run("PEXPIREAT", "d", String(T0))).toBe(int(1));
    expect(kv.run("EXPIRE", "e", "-9223372036854775")).toBe(int(1));
    expect(kv.run("DBSIZE")).toBe(int(0));
  });

  test("NX, XX, GT, LT", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("EXPIRE", "k", "100", "XX")).toBe(int(0));
    expect(kv.run("EXPIRE", "k", "100", "GT")).toBe(int(0)); // no TTL counts as infinite
    expect(kv.run("TTL", "k")).toBe(int(-1));
    expect(kv.run("EXPIRE", "k", "100", "LT")).toBe(int(1));
    expect(kv.run("EXPIRE", "k", "50", "NX")).toBe(int(0));
    expect(kv.run("EXPIRE", "k", "200", "xx")).toBe(int(1));
    expect(kv.run("EXPIRE", "k", "150", "gt")).toBe(int(0));
    expect(kv.run("EXPIRE", "k", "200", "gt")).toBe(int(0));
    expect(kv.run("EXPIRE", "k", "300", "GT")).toBe(int(1));
    expect(kv.run("EXPIRE", "k", "300", "LT")).toBe(int(0));
    expect(kv.run("EXPIRE", "k", "250", "lt", "XX")).toBe(int(1));
    expect(kv.run("TTL", "k")).toBe(int(250));
    kv.run("PERSIST", "k");
    expect(kv.run("EXPIRE", "k", "50", "NX", "NX")).toBe(int(1));
    expect(kv.run("TTL", "k")).toBe(int(50));
  });

  test("option errors", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("EXPIRE", "k", "10", "NX", "XX")).toBe("-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
    expect(kv.run("EXPIRE", "k", "10", "GT", "NX")).toBe("-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
    expect(kv.run("PEXPIRE", "k", "10", "GT", "LT")).toBe("-ERR GT and LT options at the same time are not compatible\r\n");
    expect(kv.run("EXPIRE", "k", "10", "fOo")).toBe("-ERR Unsupported option fOo\r\n");
    expect(kv.run("EXPIRE", "k", "x", "fOo")).toBe("-ERR Unsupported option fOo\r\n");
    expect(kv.run("EXPIRE", "k", "x")).toBe(NOT_INT);
    expect(kv.run("EXPIRE", "k", "9223372036854776")).toBe("-ERR invalid expire time in 'expire' command\r\n");
    expect(kv.run("EXPIRE", "k", "-9223372036854776")).toBe("-ERR invalid expire time in 'expire' command\r\n");
    expect(kv.run("PEXPIRE", "k", "9223372036854775807")).toBe("-ERR invalid expire time in 'pexpire' command\r\n");
    expect(kv.run("EXPIREAT", "k", "9223372036854775807")).toBe("-ERR invalid expire time in 'expireat' command\r\n");
    expect(kv.run("PEXPIREAT", "k", "9223372036854775807")).toBe(int(1));
    expect(kv.run("TTL", "k")).not.toBe(int(-1));
  });

  test("TTL and PTTL: -2 missing, -1 no TTL, seconds rounded as Redis", () => {
    const kv = new Kv();
    expect(kv.run("TTL", "k")).toBe(int(-2));
    expect(kv.run("PTTL", "k")).toBe(int(-2));
    kv.run("SET", "k", "v");
    expect(kv.run("TTL", "k")).toBe(int(-1));
    expect(kv.run("PTTL", "k")).toBe(int(-1));
    kv.run("PEXPIRE", "k", "1499");
    expect(kv.run("TTL", "k")).toBe(int(1));
    expect(kv.run("PTTL", "k")).toBe(int(1499));
    kv.run("PEXPIRE", "k", "1500");
    expect(kv.run("TTL", "k")).toBe(int(2));
    kv.run("PEXPIRE", "k", "499");
    expect(kv.run("TTL", "k")).toBe(int(0));
    expect(kv.at(T0 + 498, "PTTL", "k")).toBe(int(1));
    expect(kv.at(T0 + 499, "PTTL", "k")).toBe(int(-2));
    expect(kv.at(T0 + 499, "TTL", "k")).toBe(int(-2));
  });

  test("PERSIST", () => {
    const kv = new Kv();
    expect(kv.run("PERSIST", "k")).toBe(int(0));
    kv.run("SET", "k", "v");
    expect(kv.run("PERSIST", "k")).toBe(int(0));
    kv.run("EXPIRE", "k", "10");
    expect(kv.run("PERSIST", "k")).toBe(int(1));
    expect(kv.run("TTL", "k")).toBe(int(-1));
    expect(kv.at(T0 + 1_000_000, "GET", "k")).toBe(bulk("v"));
  });

  test("an expired key is gone for every command, and writes never revive its value or TTL", () => {
    const kv = new Kv();
    const setup = () => {
      kv.nowMs = T0;
      kv.run("FLUSHALL");
      kv.run("SET", "k", "5", "PX", "100");
      kv.nowMs = T0 + 100;
    };
    const cases: [string[], string][] = [
      [["GET", "k"], NIL2],
      [["EXISTS", "k"], int(0)],
      [["STRLEN", "k"], int(0)],
      [["TYPE", "k"], "+none\r\n"],
      [["TTL", "k"], int(-2)],
      [["MGET", "k"], `*1\r\n${NIL2}`],
      [["KEYS", "*"], "*0\r\n"],
      [["DEL", "k"], int(0)],
      [["GETDEL", "k"], NIL2],
      [["GETEX", "k", "PERSIST"], NIL2],
      [["PERSIST", "k"], int(0)],
      [["EXPIRE", "k", "100"], int(0)],
      [["SET", "k", "v", "XX"], NIL2],
      [["GETSET", "k", "v"], NIL2],
      [["SETNX", "k", "v"], int(1)],
      [["SET", "k", "v", "NX", "GET"], NIL2],
      [["MSETNX", "k", "v"], int(1)],
      [["INCR", "k"], int(1)],
      [["INCRBY", "k", "3"], int(3)],
      [["APPEND", "k", "ab"], int(2)],
      [["GETRANGE", "k", "0", "-1"], bulk("")],
      [["SETRANGE", "k", "1", "x"], int(2)],
      [["TOUCH", "k"], int(0)],
      [["UNLINK", "k"], int(0)],
      [["EXPIRETIME", "k"], int(-2)],
      [["RENAME", "k", "j"], "-ERR no such key\r\n"],
      [["SETEX", "k", "1", "v"], OK],
    ];
    for (const [argv, reply] of cases) {
      setup();
      expect([argv, kv.run(...argv)]).toEqual([argv, reply]);
      // Whatever the write did, no old TTL survives and "5" never comes back.
      if (argv[0] !== "SETEX") expect(kv.run("TTL", "k")).not.toMatch(/^:[0-9]/);
      expect(kv.run("GET", "k")).not.toBe(bulk("5"));
    }
    setup();
    kv.run("SET", "k", "v", "KEEPTTL");
    expect(kv.run("TTL", "k")).toBe(int(-1));
  });
});

describe("beyond the issue's list", () => {
  test("SETEX and PSETEX", () => {
    const kv = new Kv();
    expect(kv.run("SETEX", "k", "10", "v")).toBe(OK);
    expect(kv.db.expireAt("k")).toBe(T0 + 10_000);
    expect(kv.run("PSETEX", "k", "1500", "w")).toBe(OK);
    expect(kv.run("PTTL", "k")).toBe(int(1500));
    expect(kv.run("GET", "k")).toBe(bulk("w"));
    expect(kv.run("SETEX", "k", "0", "v")).toBe("-ERR invalid expire time in 'setex' command\r\n");
    expect(kv.run("PSETEX", "k", "-1", "v")).toBe("-ERR invalid expire time in 'psetex' command\r\n");
    expect(kv.run("SETEX", "k", "x", "v")).toBe(NOT_INT);
    expect(kv.run("GET", "k")).toBe(bulk("w"));
  });

  test("GETRANGE / SUBSTR", () => {
    const kv = new Kv();
    kv.run("SET", "s", "Hello World");
    expect(kv.run("GETRANGE", "s", "0", "4")).toBe(bulk("Hello"));
    expect(kv.run("SUBSTR", "s", "-5", "-1")).toBe(bulk("World"));
    expect(kv.run("GETRANGE", "s", "0", "-1")).toBe(bulk("Hello World"));
    expect(kv.run("GETRANGE", "s", "6", "100")).toBe(bulk("World"));
    expect(kv.run("GETRANGE", "s", "-100", "1")).toBe(bulk("He"));
    expect(kv.run("GETRANGE", "s", "5", "3")).toBe(bulk(""));
    expect(kv.run("GETRANGE", "s", "-1", "-5")).toBe(bulk(""));
    expect(kv.run("GETRANGE", "s", "11", "20")).toBe(bulk(""));
    expect(kv.run("GETRANGE", "s", "-9223372036854775808", "9223372036854775807")).toBe(bulk("Hello World"));
    expect(kv.run("GETRANGE", "nokey", "0", "-1")).toBe(bulk(""));
    expect(kv.run3("GETRANGE", "nokey", "0", "-1")).toBe(bulk(""));
    expect(kv.run("GETRANGE", "s", "a", "1")).toBe(NOT_INT);
  });

  test("SETRANGE pads with zero bytes and keeps the TTL", () => {
    const kv = new Kv();
    kv.run("SET", "s", "Hello World", "EX", "100");
    expect(kv.run("SETRANGE", "s", "6", "Redis")).toBe(int(11));
    expect(kv.run("GET", "s")).toBe(bulk("Hello Redis"));
    expect(kv.run("TTL", "s")).toBe(int(100));
    expect(kv.run("SETRANGE", "s", "13", "!")).toBe(int(14));
    expect(kv.run("GET", "s")).toBe(bulk("Hello Redis\0\0!"));
    expect(kv.run("SETRANGE", "n", "2", "ab")).toBe(int(4));
    expect(kv.run("GET", "n")).toBe(bulk("\0\0ab"));
    expect(kv.run("SETRANGE", "s", "0", "")).toBe(int(14));
    expect(kv.run("SETRANGE", "empty", "5", "")).toBe(int(0));
    expect(kv.run("EXISTS", "empty")).toBe(int(0));
    expect(kv.run("SETRANGE", "s", "-1", "x")).toBe("-ERR offset is out of range\r\n");
    expect(kv.run("SETRANGE", "s", "x", "x")).toBe(NOT_INT);
    expect(kv.run("SETRANGE", "s", String(512 * 1024 * 1024), "x")).toBe(
      "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n",
    );
  });

  test("UNLINK and TOUCH", () => {
    const kv = new Kv();
    kv.run("MSET", "a", "1", "b", "2");
    expect(kv.run("TOUCH", "a", "b", "c", "a")).toBe(int(3));
    expect(kv.run("UNLINK", "a", "c")).toBe(int(1));
    expect(kv.run("EXISTS", "a", "b")).toBe(int(1));
  });

  test("RENAME and RENAMENX move the value and its TTL", () => {
    const kv = new Kv();
    expect(kv.run("RENAME", "nokey", "x")).toBe("-ERR no such key\r\n");
    expect(kv.run("RENAMENX", "nokey", "x")).toBe("-ERR no such key\r\n");
    kv.run("SET", "a", "1", "PX", "5000");
    kv.run("SET", "b", "2");
    expect(kv.run("RENAME", "a", "a")).toBe(OK);
    expect(kv.run("RENAMENX", "a", "a")).toBe(int(0));
    expect(kv.run("RENAMENX", "a", "b")).toBe(int(0));
    expect(kv.run("RENAME", "a", "b")).toBe(OK);
    expect(kv.run("GET", "b")).toBe(bulk("1"));
    expect(kv.run("PTTL", "b")).toBe(int(5000));
    expect(kv.run("EXISTS", "a")).toBe(int(0));
    expect(kv.run("RENAMENX", "b", "c")).toBe(int(1));
    expect(kv.run("PTTL", "c")).toBe(int(5000));
    expect(kv.run("DBSIZE")).toBe(int(1));
    // An expired source is missing; an expired target is replaced, even by RENAMENX.
    kv.run("SET", "old", "x", "PX", "10");
    kv.nowMs = T0 + 10;
    expect(kv.run("RENAME", "old", "z")).toBe("-ERR no such key\r\n");
    kv.run("SET", "d", "y", "PX", "5");
    kv.nowMs = T0 + 20;
    kv.run("SET", "e", "fresh");
    expect(kv.run("RENAMENX", "e", "d")).toBe(int(1));
    expect(kv.run("GET", "d")).toBe(bulk("fresh"));
    expect(kv.run("TTL", "d")).toBe(int(-1));
  });

  test("EXPIRETIME and PEXPIRETIME", () => {
    const kv = new Kv();
    expect(kv.run("EXPIRETIME", "k")).toBe(int(-2));
    expect(kv.run("PEXPIRETIME", "k")).toBe(int(-2));
    kv.run("SET", "k", "v");
    expect(kv.run("EXPIRETIME", "k")).toBe(int(-1));
    kv.run("PEXPIREAT", "k", String(T0 + 10_499));
    expect(kv.run("PEXPIRETIME", "k")).toBe(int(T0 + 10_499));
    expect(kv.run("EXPIRETIME", "k")).toBe(int(T0 / 1000 + 10));
    kv.run("PEXPIREAT", "k", String(T0 + 10_500));
    expect(kv.run("EXPIRETIME", "k")).toBe(int(T0 / 1000 + 11));
  });

  test("expiry times past 2^53 ms are kept exactly, up to 2^63 - 1, as Redis's int64", () => {
    const kv = new Kv();
    kv.run("SET", "k", "v");
    expect(kv.run("PEXPIREAT", "k", "9223372036854775807")).toBe(int(1));
    expect(kv.run("PEXPIRETIME", "k")).toBe(":9223372036854775807\r\n");
    expect(kv.run("EXPIRETIME", "k")).toBe(":9223372036854776\r\n");
    expect(kv.run("PTTL", "k")).toBe(`:${9223372036854775807n - BigInt(T0)}\r\n`);
    // Two times a double cannot tell apart still compare as int64s do.
    expect(kv.run("PEXPIREAT", "k", "9223372036854775806", "LT")).toBe(int(1));
    expect(kv.run("PEXPIRETIME", "k")).toBe(":9223372036854775806\r\n");
    expect(kv.run("PEXPIREAT", "k", "9223372036854775807", "LT")).toBe(int(0));
    expect(kv.run("PEXPIREAT", "k", "9007199254740993")).toBe(int(1));
    expect(kv.run("PEXPIRETIME", "k")).toBe(":9007199254740993\r\n");
    expect(kv.run("EXPIREAT", "k", "9223372036854775")).toBe(int(1));
    expect(kv.run("PEXPIRETIME", "k")).toBe(":9223372036854775000\r\n");
    expect(kv.run("SET", "s", "v", "PXAT", "9223372036854775807")).toBe(OK);
    expect(kv.run("PEXPIRETIME", "s")).toBe(":9223372036854775807\r\n");
    expect(kv.run("GETEX", "s", "EXAT", "9007199254741")).toBe(bulk("v"));
    expect(kv.run("PEXPIRETIME", "s")).toBe(":9007199254741000\r\n");
    expect(kv.run("COPY", "s", "c")).toBe(int(1));
    expect(kv.run("PEXPIRETIME", "c")).toBe(":9007199254741000\r\n");
    // Past int64 is still an error.
    expect(kv.run("PEXPIRE", "k", "9223372036854775807")).toBe("-ERR invalid expire time in 'pexpire' command\r\n");
    expect(kv.run("SET", "s", "v", "PX", "9223372036854775000")).toBe("-ERR invalid expire time in 'set' command\r\n");
  });

  test("FLUSHDB is FLUSHALL (one database)", () => {
    const kv = new Kv();
    kv.run("SET", "a", "1");
    expect(kv.run("FLUSHDB", "x")).toBe(SYNTAX);
    expect(kv.run("FLUSHDB", "ASYNC")).toBe(OK);
    expect(kv.run("DBSIZE")).toBe(int(0));
  });
});
