// The client's RESP2/RESP3 reply parser: every type, every split point, the limits.
import { describe, expect, test } from "bun:test";
import { ProtocolError } from "../../src/errors.ts";
import { type BulkMode, ErrorReply, NEED_MORE, PushReply, ReplyParser, type RespValue } from "../../src/resp/reply-parser.ts";

function parseAll(chunks: Uint8Array[], mode: BulkMode = "utf8", p = new ReplyParser()): RespValue[] {
  const out: RespValue[] = [];
  for (const c of chunks) {
    p.push(c);
    for (;;) {
      const v = p.next(mode);
      if (v === NEED_MORE) break;
      out.push(v);
    }
  }
  return out;
}

const b = (s: string) => Buffer.from(s, "latin1");

const STREAM =
  "+OK\r\n-ERR unknown command 'x'\r\n:42\r\n:-7\r\n:12345678901234567890\r\n$3\r\nfoo\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n" +
  "*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n" +
  "_\r\n#t\r\n#f\r\n,3.5\r\n,inf\r\n,-inf\r\n(3492890328409238509324850943850943825024385\r\n" +
  "=15\r\ntxt:Some string\r\n!21\r\nSYNTAX invalid syntax\r\n%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n~2\r\n:1\r\n:2\r\n" +
  ">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n|1\r\n+ttl\r\n:3\r\n$5\r\nafter\r\n" +
  "$10\r\nab\r\ncd\r\nef\r\n";

const EXPECTED: RespValue[] = [
  "OK",
  new ErrorReply("ERR unknown command 'x'"),
  42,
  -7,
  12345678901234567890n,
  "foo",
  "",
  null,
  null,
  [],
  ["a", [1, null], "x"],
  null,
  true,
  false,
  3.5,
  Infinity,
  -Infinity,
  3492890328409238509324850943850943825024385n,
  "Some string",
  new ErrorReply("SYNTAX invalid syntax"),
  new Map<RespValue, RespValue>([
    ["a", 1],
    ["b", [2]],
  ]),
  [1, 2],
  new PushReply(["message", "ch", "hi"]),
  "after",
  "ab\r\ncd\r\nef",
];

describe("reply parser", () => {
  test("parses every RESP2 and RESP3 type in one chunk", () => {
    expect(parseAll([b(STREAM)])).toEqual(EXPECTED);
  });

  test("a split at every byte boundary gives the same replies", () => {
    const all = b(STREAM);
    for (let i = 0; i <= all.length; i++) {
      expect(parseAll([all.subarray(0, i), all.subarray(i)])).toEqual(EXPECTED);
    }
  });

  test("one byte at a time, and three-way splits, give the same replies", () => {
    const all = b(STREAM);
    const bytes: Uint8Array[] = [];
    for (let i = 0; i < all.length; i++) bytes.push(all.subarray(i, i + 1));
    expect(parseAll(bytes)).toEqual(EXPECTED);
    for (let i = 0; i < all.length; i += 7) {
      for (let j = i; j <= all.length; j += 5) {
        expect(parseAll([all.subarray(0, i), all.subarray(i, j), all.subarray(j)])).toEqual(EXPECTED);
      }
    }
  });

  test("borrowed chunks may be overwritten by the caller after next() returns NEED_MORE", () => {
    const p = new ReplyParser();
    const chunk = Buffer.from("$6\r\nabc", "latin1");
    p.push(chunk);
    expect(p.next()).toBe(NEED_MORE);
    chunk.fill(0x5a);
    p.push(b("def\r\n"));
    expect(p.next()).toBe("abcdef");
  });

  test("bulk modes: utf8 text, copied bytes, latin1 byte strings", () => {
    const all = new Uint8Array(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    const frame = Buffer.concat([b("$256\r\n"), all, b("\r\n+OK\r\n")]);
    const [bytes, ok] = parseAll([frame], "bytes");
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(bytes as Uint8Array)).toEqual(Array.from(all));
    expect(ok).toBe("OK");
    const [latin] = parseAll([frame], "latin1");
    expect(typeof latin).toBe("string");
    expect((latin as string).length).toBe(256);
    expect((latin as string).charCodeAt(255)).toBe(255);
    const [text] = parseAll([Buffer.concat([b("$5\r\n"), Buffer.from("héé", "utf8"), b("\r\n")])]);
    expect(text).toBe("héé");
  });

  test("a large bulk string arriving in many chunks is assembled once", () => {
    const body = Buffer.alloc(1_000_000, 0x61);
    const frame = Buffer.concat([b(`$${body.length}\r\n`), body, b("\r\n")]);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < frame.length; i += 1000) chunks.push(frame.subarray(i, i + 1000));
    const [v] = parseAll(chunks, "bytes");
    expect((v as Uint8Array).length).toBe(body.length);
  });

  test("malformed input throws ProtocolError and the parser stays failed", () => {
    for (const bad of ["?x\r\n", ":12a\r\n", "$3\r\nabcd\r\n", "$-2\r\n", "#x\r\n", "+a\rb\n", "*?\r\n", ",abc\r\n", "%-1\r\n"]) {
      const p = new ReplyParser();
      p.push(b(bad));
      expect(() => p.next()).toThrow(ProtocolError);
      expect(() => p.next()).toThrow(ProtocolError);
    }
  });

  test("limits: bulk size, line length, nesting depth", () => {
    const p1 = new ReplyParser({ bulkBytesMax: 10 });
    p1.push(b("$11\r\n"));
    expect(() => p1.next()).toThrow(ProtocolError);

    const p2 = new ReplyParser({ lineBytesMax: 16 });
    p2.push(b("+" + "a".repeat(40)));
    expect(() => p2.next()).toThrow(ProtocolError);

    const p3 = new ReplyParser({ depthMax: 4 });
    p3.push(b("*1\r\n".repeat(5) + ":1\r\n"));
    expect(() => p3.next()).toThrow(ProtocolError);
    const p4 = new ReplyParser({ depthMax: 4 });
    p4.push(b("*1\r\n".repeat(4) + ":1\r\n"));
    expect(p4.next()).toEqual([[[[1]]]]);
  });
});
