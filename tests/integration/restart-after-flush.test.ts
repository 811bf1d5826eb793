// A node restarts after FLUSHALL/FLUSHDB followed by writes: recovery replays a flush in the
// middle of the log (values held by reference in the mapped log before and after it).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawResp } from "../helpers/resp-raw.ts";
import { startKv } from "../helpers/server.ts";

async function send(port: number, cmds: string[][]): Promise<string> {
  const c = await RawResp.connect(port);
  try {
    return (await c.call(cmds)).join("");
  } finally {
    c.close();
  }
}

describe("restart after a flush in the log", () => {
  for (const flush of ["FLUSHALL", "FLUSHDB"]) {
    test(`${flush}; SET x y; SIGTERM; the node starts again with x = y (twice)`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "kv-flush-restart-"));
      try {
        let kv = await startKv([], { dataDir });
        expect(await send(kv.port, [["SET", "old", "1"], [flush], ["SET", "x", "y"]])).toBe("+OK\r\n+OK\r\n+OK\r\n");
        expect(await kv.stop()).toBe(0);
        for (let round = 0; round < 2; round++) {
          kv = await startKv([], { dataDir });
          expect(await send(kv.port, [["GET", "x"], ["GET", "old"], ["DBSIZE"]])).toBe("$1\r\ny\r\n$-1\r\n:1\r\n");
          expect(await kv.stop()).toBe(0);
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});
