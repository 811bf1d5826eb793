// The reply encoder: exact RESP2 and RESP3 bytes for every reply kind.
import { describe, expect, test } from "bun:test";
import { ReplyBuffer, formatDouble, utf8ToBytes, bytesToUtf8 } from "../../src/resp/encode.ts";

function enc(proto: 2 | 3, f: (o: ReplyBuffer) => void): string {
  const o = new ReplyBuffer(8); // tiny on purpose: every write grows it
  o.proto = proto;
  f(o);
  return o.view().toString("latin1");
}

describe("RESP2 and RESP3 encodings", () => {
  const cases: [string, (o: ReplyBuffer) => void, string, string][] = [
    ["ok", (o) => o.ok(), "+OK\r\n", "+OK\r\n"],
    ["simple", (o) => o.simple("PONG"), "+PONG\r\n", "+PONG\r\n"],
    ["simple strips CR/LF", (o) => o.simple("a\r\nb"), "+a  b\r\n", "+a  b\r\n"],
    ["error", (o) => o.error("ERR bad\nthing"), "-ERR bad thing\r\n", "-ERR bad thing\r\n"],
    ["small int", (o) => o.int(42), ":42\r\n", ":42\r\n"],
    ["negative int", (o) => o.int(-7), ":-7\r\n", ":-7\r\n"],
    ["large int", (o) => o.int(1234567890123), ":1234567890123\r\n", ":1234567890123\r\n"],
    ["bigint", (o) => o.int(9223372036854775807n), ":9223372036854775807\r\n", ":9223372036854775807\r\n"],
    ["bulk", (o) => o.bulk("hello"), "$5\r\nhello\r\n", "$5\r\nhello\r\n"],
    ["empty bulk", (o) => o.bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"],
    ["binary bulk", (o) => o.bulk("\x00\r\n\xff"), "$4\r\n\x00\r\n\xff\r\n", "$4\r\n\x00\r\n\xff\r\n"],
    ["bulk bytes", (o) => o.bulkBytes(new Uint8Array([1, 2])), "$2\r\n\x01\x02\r\n", "$2\r\n\x01\x02\r\n"],
    ["null bulk", (o) => o.nil(), "$-1\r\n", "_\r\n"],
    ["null array", (o) => o.nilArray(), "*-1\r\n", "_\r\n"],
    ["array", (o) => (o.array(2), o.int(1), o.nil()), "*2\r\n:1\r\n$-1\r\n", "*2\r\n:1\r\n_\r\n"],
    ["map", (o) => (o.map(1), o.bulk("k"), o.bulk("v")), "*2\r\n$1\r\nk\r\n$1\r\nv\r\n", "%1\r\n$1\r\nk\r\n$1\r\nv\r\n"],
    ["set", (o) => (o.set(1), o.simple("x")), "*1\r\n+x\r\n", "~1\r\n+x\r\n"],
    ["push", (o) => (o.push(1), o.bulk("m")), "*1\r\n$1\r\nm\r\n", ">1\r\n$1\r\nm\r\n"],
    ["double", (o) => o.double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"],
    ["inf", (o) => o.double(-Infinity), "$4\r\n-inf\r\n", ",-inf\r\n"],
    ["bool", (o) => (o.bool(true), o.bool(false)), ":1\r\n:0\r\n", "#t\r\n#f\r\n"],
  ];
  for (const [name, f, r2, r3] of cases) {
    test(name, () => {
      expect(enc(2, f)).toBe(r2);
      expect(enc(3, f)).toBe(r3);
    });
  }

  test("bulk strings of every length around the header cache boundary", () => {
    for (const n of [0, 1, 9, 10, 99, 100, 1023, 1024, 1025, 70_000]) {
      const s = "a".repeat(n);
      expect(enc(2, (o) => o.bulk(s))).toBe(`$${n}\r\n${s}\r\n`);
    }
  });

  test("truncate drops a partial reply; reset empties", () => {
    const o = new ReplyBuffer(4);
    o.ok();
    const mark = o.len;
    o.array(3);
    o.int(1);
    o.truncate(mark);
    expect(o.view().toString("latin1")).toBe("+OK\r\n");
    o.reset();
    expect(o.len).toBe(0);
  });
});

test("formatDouble and byte-string conversions", () => {
  expect(formatDouble(NaN)).toBe("nan");
  expect(formatDouble(Infinity)).toBe("inf");
  expect(formatDouble(0.1)).toBe("0.1");
  expect(utf8ToBytes("abc")).toBe("abc");
  expect(utf8ToBytes("é")).toBe("\xc3\xa9");
  expect(bytesToUtf8("\xc3\xa9")).toBe("é");
});
