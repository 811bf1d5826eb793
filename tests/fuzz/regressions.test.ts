// Defects the RESP fuzzer found, each as a deterministic test against the real binary.
import { describe, expect, test } from "bun:test";
import { encodeCommand } from "../../src/resp/request-parser.ts";
import { rawConnect, startKv } from "../helpers/server.ts";
import { readRss } from "./socket-fuzz.ts";

const TOO_LONG = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n";

describe("found by the fuzzer", () => {
  // SEED=7 of the socket fuzzer: with --proto-max-bulk-len 256kb the server passed 512 MB of RSS.
  // SETRANGE was held to a fixed 512 MiB, not to the configured limit: a 30-byte request built a
  // 400 MB string (four of them: 5 GB, and a snapshot that stalled the server for 12 s).
  test("SETRANGE past --proto-max-bulk-len is refused before the log, in order, and builds nothing", async () => {
    const kv = await startKv(["--proto-max-bulk-len", "1mb"]);
    try {
      const c = await rawConnect(kv.port);
      const wire = [
        ["SET", "a", "1"], // a write first: the refusal waits behind it, in order
        ["SETRANGE", "big", "400000000", "x"],
        ["GET", "a"],
        ["SETRANGE", "big", "1048575", "x"], // ends exactly at the limit: allowed
        ["SETRANGE", "big", "1048575", "xy"],
        ["STRLEN", "big"],
        ["SETRANGE", "other", "1048576", ""], // nothing to write: answered, nothing built
        ["SETRANGE", "other", "-1", "x"],
      ]
        .map((a) => encodeCommand(a).toString("latin1"))
        .join("");
      c.write(wire);
      const want = "+OK\r\n" + TOO_LONG + "$1\r\n1\r\n:1048576\r\n" + TOO_LONG + ":1048576\r\n:0\r\n-ERR offset is out of range\r\n";
      expect(await c.waitFor((r) => r.length >= want.length)).toBe(want);
      c.clear();
      c.write(encodeCommand(["SETRANGE", "huge", "500000000", "x"]));
      c.write(encodeCommand(["EXISTS", "huge"]));
      expect(await c.waitFor((r) => r.length >= TOO_LONG.length + 4)).toBe(TOO_LONG + ":0\r\n");
      // No 400 MB string was ever built.
      expect(readRss(kv.proc.pid).hwm).toBeLessThan(300 * 1024 * 1024);
      c.close();
      // The refused writes were never logged: a restart replays to the same keyspace.
      expect(await kv.stop({ keepData: true })).toBe(0);
      const again = await startKv(["--proto-max-bulk-len", "1mb"], { dataDir: kv.dataDir });
      try {
        const d = await rawConnect(again.port);
        d.write(encodeCommand(["STRLEN", "big"]));
        d.write(encodeCommand(["EXISTS", "huge", "other"]));
        expect(await d.waitFor((r) => r.length >= 14)).toBe(":1048576\r\n:0\r\n");
        d.close();
      } finally {
        await again.stop();
      }
    } finally {
      await kv.stop();
    }
  });
});

describe("found by the fuzzer: memory", () => {
  // A 200 s socket fuzz run: the server's heap grew from 12 to 106 MB with 5 keys. A heap
  // profile showed 2,996 consola instances (13.7 MB) in the logger's list: storage asks
  // logger("storage") per message, and each call made and kept a new child (one or two per
  // snapshot and log segment deleted).
  test("logger(tag) is one instance per tag, and setLogLevel still reaches it", async () => {
    const { logger, setLogLevel } = await import("../../src/log.ts");
    const first = logger("fuzz-regression");
    for (let i = 0; i < 1000; i++) expect(logger("fuzz-regression")).toBe(first);
    setLogLevel("debug");
    expect(first.level).toBe(4);
    setLogLevel("info");
    expect(first.level).toBe(3);
    expect(logger("fuzz-regression-other")).not.toBe(first);
  });
});
