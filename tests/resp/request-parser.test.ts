// The request parser: multibulk and inline frames, pipelines split at every byte, every malformed form.
import { describe, expect, test } from "bun:test";
import { RequestParser, splitInline, encodeCommand, decodeCommand, decodePlainSet, plainSet, bulkAt, INLINE_BYTES_MAX, DEFAULT_REQUEST_LIMITS } from "../../src/resp/request-parser.ts";
import { ProtocolError } from "../../src/errors.ts";

function parseAll(chunks: Uint8Array[], p = new RequestParser()): string[][] {
  const out: string[][] = [];
  for (const c of chunks) {
    p.push(c);
    for (let argv = p.next(); argv !== null; argv = p.next()) out.push(argv);
  }
  return out;
}

const b = (s: string) => Buffer.from(s, "latin1");

describe("multibulk", () => {
  test("one command", () => {
    expect(parseAll([b("*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n")])).toEqual([["SET", "foo", "bar"]]);
  });

  test("binary-safe bulk strings keep every byte", () => {
    const all = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    const frame = Buffer.concat([b("*2\r\n$3\r\nGET\r\n$256\r\n"), all, b("\r\n")]);
    const [argv] = parseAll([frame]);
    expect(argv![1]!.length).toBe(256);
    expect(Buffer.from(argv![1]!, "latin1").equals(all)).toBe(true);
  });

  test("empty bulk and zero-argument frames", () => {
    expect(parseAll([b("*2\r\n$3\r\nGET\r\n$0\r\n\r\n*0\r\n*-1\r\nPING\r\n")])).toEqual([["GET", ""], ["PING"]]);
  });

  test("a pipeline split at every byte boundary gives the same commands", () => {
    const cmds = [
      ["SET", "k1", "v\r\n1"],
      ["GET", "k1"],
      ["MSET", "a", "", "b", "x".repeat(300)],
      ["PING"],
    ];
    const wire = Buffer.concat([
      ...cmds.map((c) => encodeCommand(c)),
      b("SET \"quoted key\" 'v a l'\r\n"),
      b("INCR n\n"),
    ]);
    const expected = [...cmds, ["SET", "quoted key", "v a l"], ["INCR", "n"]];
    expect(parseAll([wire])).toEqual(expected);
    for (let i = 0; i <= wire.length; i++) {
      expect(parseAll([wire.subarray(0, i), wire.subarray(i)])).toEqual(expected);
    }
    for (let i = 0; i < wire.length; i += 7) {
      for (let j = i; j <= wire.length; j += 13) {
        expect(parseAll([wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)])).toEqual(expected);
      }
    }
    // One byte at a time.
    const bytes: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++) bytes.push(wire.subarray(i, i + 1));
    expect(parseAll(bytes)).toEqual(expected);
  });

  test("the parser copies what it keeps: reusing the caller's chunk does not corrupt a partial frame", () => {
    const p = new RequestParser();
    const chunk = Buffer.from("*2\r\n$3\r\nGET\r\n$5\r\nhel", "latin1");
    p.push(chunk);
    expect(p.next()).toBeNull();
    chunk.fill(0x58); // the socket layer may reuse its buffer
    p.push(b("lo\r\n"));
    expect(p.next()).toEqual(["GET", "hello"]);
    expect(p.bufferedBytes()).toBe(0);
  });

  test("a large value arriving in many chunks is assembled once", () => {
    const value = "z".repeat(1_000_000);
    const wire = encodeCommand(["SET", "big", value]);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += 65536) chunks.push(wire.subarray(i, i + 65536));
    const got = parseAll(chunks);
    expect(got.length).toBe(1);
    expect(got[0]![2]!.length).toBe(1_000_000);
    expect(got[0]![2] === value).toBe(true);
  });
});

describe("inline", () => {
  test("CRLF and bare LF, extra spaces, empty lines skipped", () => {
    expect(parseAll([b("SET foo bar\r\n\r\n  GET   foo  \nPING\n")])).toEqual([["SET", "foo", "bar"], ["GET", "foo"], ["PING"]]);
  });

  test("Redis quoting rules", () => {
    expect(splitInline(`set "a b" 'c d'`)).toEqual(["set", "a b", "c d"]);
    expect(splitInline(`set k "\\x41\\n\\r\\t\\b\\a\\\\\\""`)).toEqual(["set", "k", "A\n\r\t\b\x07\\\""]);
    expect(splitInline(`set k 'it\\'s'`)).toEqual(["set", "k", "it's"]);
    expect(splitInline(`set k 'a\\nb'`)).toEqual(["set", "k", "a\\nb"]);
    expect(splitInline(`set k ""`)).toEqual(["set", "k", ""]);
    expect(splitInline(`set k "\\xzz"`)).toEqual(["set", "k", "xzz"]);
    expect(splitInline(`set k "unterminated`)).toBeNull();
    expect(splitInline(`set k 'unterminated`)).toBeNull();
    expect(splitInline(`set k "a"b`)).toBeNull();
    expect(splitInline(`set k 'a'b`)).toBeNull();
    expect(splitInline("")).toEqual([]);
    expect(splitInline(" \t ")).toEqual([]);
  });

  test("UTF-8 bytes pass through unchanged", () => {
    const [argv] = parseAll([Buffer.from("SET k héllo\r\n", "utf8")]);
    expect(Buffer.from(argv![2]!, "latin1").toString("utf8")).toBe("héllo");
  });
});

describe("malformed input", () => {
  const cases: [string, string | Uint8Array, string][] = [
    ["non-numeric multibulk length", "*x\r\n", "Protocol error: invalid multibulk length"],
    ["multibulk length past the limit", `*${DEFAULT_REQUEST_LIMITS.multibulkArgsMax + 1}\r\n`, "Protocol error: invalid multibulk length"],
    ["missing $", "*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"],
    ["non-numeric bulk length", "*1\r\n$abc\r\n", "Protocol error: invalid bulk length"],
    ["negative bulk length", "*1\r\n$-5\r\n", "Protocol error: invalid bulk length"],
    ["bulk length past the limit", `*1\r\n$${DEFAULT_REQUEST_LIMITS.protoMaxBulkLen + 1}\r\n`, "Protocol error: invalid bulk length"],
    ["huge bulk length", "*1\r\n$99999999999999999999\r\n", "Protocol error: invalid bulk length"],
    ["bulk without CRLF", "*1\r\n$3\r\nGETXX", "Protocol error: expected CRLF after bulk string"],
    ["unbalanced quotes", 'SET "a\r\n', "Protocol error: unbalanced quotes in request"],
    ["inline past 64 KiB", "GET " + "a".repeat(INLINE_BYTES_MAX + 10), "Protocol error: too big inline request"],
    ["mbulk count line past 64 KiB", "*" + "1".repeat(INLINE_BYTES_MAX + 10), "Protocol error: too big mbulk count string"],
    ["bulk count line past 64 KiB", "*1\r\n$" + "1".repeat(INLINE_BYTES_MAX + 10), "Protocol error: too big bulk count string"],
  ];
  for (const [name, input, message] of cases) {
    test(name, () => {
      const p = new RequestParser();
      p.push(typeof input === "string" ? b(input) : input);
      let err: unknown;
      try {
        while (p.next() !== null);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as Error).message).toBe(message);
    });
  }

  test("an unterminated inline line fails as soon as it passes the limit, fed one chunk at a time", () => {
    const p = new RequestParser();
    let thrown: unknown;
    let fed = 0;
    for (let i = 0; i < 200 && thrown === undefined; i++) {
      try {
        p.push(b("a".repeat(1024)));
        fed += 1024;
        expect(p.next()).toBeNull();
      } catch (e) {
        thrown = e;
      }
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    expect(fed).toBeLessThanOrEqual(INLINE_BYTES_MAX + 1024);
  });

  test("a declared bulk length is not allocated up front; the query buffer limit bounds what is held", () => {
    const p = new RequestParser({ ...DEFAULT_REQUEST_LIMITS, queryBufferBytesMax: 10_000 });
    p.push(b("*1\r\n$100000\r\n"));
    expect(p.next()).toBeNull();
    p.push(b("x".repeat(5000)));
    expect(p.next()).toBeNull();
    expect(() => {
      p.push(b("x".repeat(6000)));
      p.next();
    }).toThrow(ProtocolError);
  });

  test("the limit counts every argument of an unfinished command, not only the one arriving", () => {
    const limit = 10_000;
    const arg = (n: number) => `$${n}\r\n${"y".repeat(n)}\r\n`;
    // Complete commands of any total size pass, one by one.
    const ok = new RequestParser({ ...DEFAULT_REQUEST_LIMITS, queryBufferBytesMax: limit });
    for (let i = 0; i < 5; i++) {
      ok.push(b(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${arg(4000)}`));
      expect(ok.next()).toEqual(["SET", "k", "y".repeat(4000)]);
    }
    // One command whose arguments together pass the limit is refused before its last argument.
    const p = new RequestParser({ ...DEFAULT_REQUEST_LIMITS, queryBufferBytesMax: limit });
    expect(() => {
      for (let i = 0; i < 4; i++) {
        p.push(b(i === 0 ? `*5\r\n$4\r\nMSET\r\n${arg(4000)}` : arg(4000)));
        expect(p.next()).toBeNull();
      }
    }).toThrow(ProtocolError);
    // Exactly at the limit is allowed.
    const q = new RequestParser({ ...DEFAULT_REQUEST_LIMITS, queryBufferBytesMax: limit });
    q.push(b(`*3\r\n$4\r\nMSET\r\n${arg(4998)}${arg(4998)}`));
    expect(q.next()).toEqual(["MSET", "y".repeat(4998), "y".repeat(4998)]);
  });
});

describe("decodeCommand (log record payloads)", () => {
  test("decodes what encodeCommand wrote, binary-safe, and shares cached command names", () => {
    const names = new Map<number, string>();
    const cmds = [["SET", "k", "v"], ["SET", "k2", "\r\n\x00\xff"], ["MSET", "a", "", "b", "x".repeat(70_000)], ["INCRBY", "n", "-5"], ["FLUSHALL"]];
    const out = cmds.map((c) => {
      const b = encodeCommand(c);
      return decodeCommand(b, 0, b.length, names);
    });
    expect(out).toEqual(cmds);
    expect(names.get(3 * 256 ** 3 + 0x534554)).toBe("SET");
    // Inside a larger buffer, at an offset.
    const one = encodeCommand(["GET", "key"]);
    const big = Buffer.concat([Buffer.from("junk"), one, Buffer.from("tail")]);
    expect(decodeCommand(big, 4, 4 + one.length)).toEqual(["GET", "key"]);
  });

  test("returns null for anything but exactly one array of bulk strings", () => {
    const good = encodeCommand(["SET", "k", "v"]);
    // Every strict prefix, and the frame with trailing bytes.
    for (let n = 0; n < good.length; n++) expect(decodeCommand(good, 0, n)).toBeNull();
    const longer = Buffer.concat([good, Buffer.from("*")]);
    expect(decodeCommand(longer, 0, longer.length)).toBeNull();
    for (const bad of ["*0\r\n", "*1\r\n+OK\r\n", "*1\r\n$-1\r\n", "*-1\r\n", "SET k v\r\n", "*1\r\n$3\r\nSETX\r\n", "*1\n$3\r\nSET\r\n", "*01234567890\r\n",
      // a count far past what the bytes could hold (no giant allocation), leading zeros
      "*9999999999\r\n$3\r\nSET\r\n", "*2\r\n$3\r\nSET\r\n", "*01\r\n$3\r\nSET\r\n", "*1\r\n$03\r\nSET\r\n"]) {
      const b = Buffer.from(bad, "latin1");
      expect(decodeCommand(b, 0, b.length)).toBeNull();
    }
  });
});

describe("decodePlainSet (replaying SET key value from a mapped log)", () => {
  test("true exactly for SET with two arguments, in any case; finds the key and the value", () => {
    const cases: [string[], boolean][] = [
      [["SET", "k", "v"], true],
      [["set", "key:1", ""], true],
      [["sEt", "", "\r\n\x00\xff"], true],
      [["SET", "k", "x".repeat(70_000)], true],
      [["SET", "k", "v", "PX", "100"], false],
      [["SET", "k", "v", "NX"], false],
      [["SET", "k"], false],
      [["GET", "k", "v"], false],
      [["SETX", "k", "v"], false],
      [["SEU", "k", "v"], false], // one bit from SET
      [["s\xc5T", "k", "v"], false], // 0xc5 | 0x20 is not "e"
      [["MSET", "k", "v"], false],
      [["APPEND", "k", "v"], false],
    ];
    for (const [argv, want] of cases) {
      const payload = encodeCommand(argv);
      const b = Buffer.concat([Buffer.from("pad"), payload, Buffer.from("tail")]);
      const start = 3;
      const end = 3 + payload.length;
      expect(decodePlainSet(b, start, end), JSON.stringify(argv)).toBe(want);
      if (!want) continue;
      expect(b.latin1Slice(plainSet.keyStart, plainSet.keyEnd)).toBe(argv[1]!);
      expect(bulkAt(b, plainSet.valueAt)).toBe(argv[2]!);
      expect(decodeCommand(b, start, end)).toEqual(argv); // the same command decodeCommand sees
    }
  });

  test("false on every truncation and on trailing bytes", () => {
    const good = encodeCommand(["SET", "key", "value"]);
    for (let n = 0; n < good.length; n++) expect(decodePlainSet(good, 0, n)).toBe(false);
    const longer = Buffer.concat([good, Buffer.from("\r\n")]);
    expect(decodePlainSet(longer, 0, longer.length)).toBe(false);
    expect(decodePlainSet(good, 0, good.length)).toBe(true);
  });
});
