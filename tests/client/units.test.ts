// Pure pieces of the client and CLI: address/URL parsing, command encoding, redis-cli argument splitting.
import { describe, expect, test } from "bun:test";
import { parseAddr, parseUrl } from "../../src/client/addr.ts";
import { OutBuffer } from "../../src/client/encode.ts";
import { reprBytes, splitArgs, SplitArgsError, toJson } from "../../src/cli/client-format.ts";
import { ErrorReply } from "../../src/resp/reply-parser.ts";

const text = (words: Uint8Array[]) => words.map((w) => Buffer.from(w).toString("latin1"));

describe("addresses", () => {
  test("host:port, bare host, IPv6, errors", () => {
    expect(parseAddr("10.0.0.1:7000")).toEqual({ host: "10.0.0.1", port: 7000 });
    expect(parseAddr("localhost")).toEqual({ host: "localhost", port: 6379 });
    expect(parseAddr("[::1]:7001")).toEqual({ host: "::1", port: 7001 });
    expect(parseAddr(":7002")).toEqual({ host: "127.0.0.1", port: 7002 });
    expect(() => parseAddr("h:99999")).toThrow(TypeError);
    expect(() => parseAddr("h:abc")).toThrow(TypeError);
  });

  test("URLs with credentials, several hosts and a db", () => {
    expect(parseUrl("redis://u:p%40ss@a:1,b:2/3")).toEqual({
      addrs: [
        { host: "a", port: 1 },
        { host: "b", port: 2 },
      ],
      username: "u",
      password: "p@ss",
      db: 3,
    });
    expect(parseUrl("kv://secret@h:5")).toEqual({ addrs: [{ host: "h", port: 5 }], password: "secret" });
    expect(() => parseUrl("http://h:1")).toThrow(TypeError);
  });
});

describe("command encoding", () => {
  test("strings (UTF-8), bytes and numbers as a RESP multibulk", () => {
    const out = new OutBuffer(8);
    out.command(["SET", "ключ", Uint8Array.of(0, 255), 42]);
    expect(out.buf.subarray(out.start, out.end).toString("latin1")).toBe(
      `*4\r\n$3\r\nSET\r\n$8\r\n${Buffer.from("ключ").toString("latin1")}\r\n$2\r\n\x00\xff\r\n$2\r\n42\r\n`,
    );
    out.consume(out.pendingBytes);
    expect(out.pendingBytes).toBe(0);
  });

  test("large arguments and partial consumption keep the unwritten bytes", () => {
    const out = new OutBuffer(16);
    const big = "x".repeat(5000);
    out.command(["SET", "k", big]);
    const total = out.pendingBytes;
    out.consume(10);
    out.command(["PING"]);
    const s = out.buf.subarray(out.start, out.end).toString("latin1");
    expect(s.length).toBe(total - 10 + "*1\r\n$4\r\nPING\r\n".length);
    expect(s.endsWith(`${big}\r\n*1\r\n$4\r\nPING\r\n`)).toBe(true);
  });
});

describe("redis-cli argument splitting", () => {
  test("whitespace, double quotes with escapes, single quotes", () => {
    expect(text(splitArgs('  set  k  "a b" '))).toEqual(["set", "k", "a b"]);
    expect(text(splitArgs('set "\\x00\\xff\\n\\t\\"" x'))).toEqual(["set", "\x00\xff\n\t\"", "x"]);
    expect(text(splitArgs("set 'it\\'s' \"\""))).toEqual(["set", "it's", ""]);
    expect(text(splitArgs("get ключ"))).toEqual(["get", Buffer.from("ключ").toString("latin1")]);
    expect(splitArgs("   ")).toEqual([]);
  });

  test("unbalanced quotes and a closing quote glued to text are errors", () => {
    expect(() => splitArgs('set "abc')).toThrow(SplitArgsError);
    expect(() => splitArgs("set 'abc")).toThrow(SplitArgsError);
    expect(() => splitArgs('set "a"b')).toThrow(SplitArgsError);
  });

  test("repr and JSON of replies", () => {
    expect(reprBytes(Uint8Array.of(0x61, 0x07, 0x08, 0x0d, 0x7f))).toBe('"a\\a\\b\\r\\x7f"');
    expect(toJson([new TextEncoder().encode("é"), null, 3n, new ErrorReply("ERR x"), new Map([["a", 1]])])).toEqual([
      "é",
      null,
      "3",
      { error: "ERR x" },
      { a: 1 },
    ]);
  });
});
