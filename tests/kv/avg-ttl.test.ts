// Db.avgTtlMs (INFO keyspace's avg_ttl): the mean remaining TTL of live keys that have one.
import { describe, expect, test } from "bun:test";
import { Db } from "../../src/kv/db.ts";

describe("Db.avgTtlMs", () => {
  test("exact over every key with a TTL; keys without one and keys already expired are left out", () => {
    const db = new Db();
    expect(db.avgTtlMs(1000, 100)).toBe(0);
    db.set("plain", "v");
    db.setWithExpire("a", "v", 11_000, 1000); // 10 s left
    db.setWithExpire("b", "v", 31_000, 1000); // 30 s left
    expect(db.avgTtlMs(1000, 100)).toBe(20_000);
    expect(db.avgTtlMs(6000, 100)).toBe(15_000);
    expect(db.avgTtlMs(20_000, 100)).toBe(11_000); // a expired, not yet swept: not counted
    expect(db.avgTtlMs(40_000, 100)).toBe(0);
  });

  test("looks at no more than sampleMax TTL entries, oldest first", () => {
    const db = new Db();
    for (let i = 0; i < 10; i++) db.setWithExpire(`k${i}`, "v", 1000 + (i + 1) * 1000, 0);
    expect(db.avgTtlMs(1000, 100)).toBe(5500);
    expect(db.avgTtlMs(1000, 2)).toBe(1500); // k0 (1 s) and k1 (2 s)
  });

  test("an expiry past 2^53 ms (held as a bigint) is averaged as a number", () => {
    const db = new Db();
    db.setWithExpire("far", "v", 2n ** 62n, 0);
    db.setWithExpire("near", "v", 3000, 0);
    expect(db.avgTtlMs(1000, 100)).toBe(Math.round((Number(2n ** 62n) - 1000 + 2000) / 2));
  });

  test("a key deleted while a snapshot is open is not counted", () => {
    const db = new Db();
    db.setWithExpire("a", "v", 11_000, 1000);
    db.setWithExpire("b", "v", 21_000, 1000);
    const snap = db.beginSnapshot();
    db.delete("a");
    expect(db.avgTtlMs(1000, 100)).toBe(20_000);
    snap.close();
  });
});
