import { afterEach, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorruptLogError } from "../../src/errors.ts";
import { HardStateStore } from "../../src/storage/hard-state.ts";
import { cleanupTempDirs, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

test("hard state: new node reads zeros; save then load round-trips, including values above 2^32", () => {
  const dir = tempDir();
  const s = new HardStateStore(dir);
  expect(s.load()).toEqual({ term: 0, vote: 0, commit: 0 });
  s.save({ term: 3, vote: 2, commit: 17 });
  expect(new HardStateStore(dir).load()).toEqual({ term: 3, vote: 2, commit: 17 });
  s.save({ term: 2 ** 40, vote: 0, commit: 2 ** 33 });
  expect(s.load()).toEqual({ term: 2 ** 40, vote: 0, commit: 2 ** 33 });
});

test("hard state: a damaged file is CorruptLogError, not zeros", () => {
  const dir = tempDir();
  const s = new HardStateStore(dir);
  s.save({ term: 5, vote: 1, commit: 9 });
  const b = readFileSync(join(dir, "hardstate"));
  b[10]! ^= 1;
  writeFileSync(join(dir, "hardstate"), b);
  expect(() => s.load()).toThrow(CorruptLogError);
  writeFileSync(join(dir, "hardstate"), b.subarray(0, 20));
  expect(() => s.load()).toThrow(CorruptLogError);
});
