// Random commands at random (increasing) times against a naive reference model of a keyspace
// with TTLs: the command table must give the same replies, whatever the sweep has reclaimed.
import { expect, test } from "bun:test";
import { bulk, Kv, rng, T0 } from "./helpers.ts";

/** The obvious model: key -> { value, expireAt }, expiry checked on every access. */
class Model {
  private m = new Map<string, { v: string; at: number | undefined }>();
  now = T0;
  private live(k: string) {
    const e = this.m.get(k);
    if (e && e.at !== undefined && e.at <= this.now) {
      this.m.delete(k);
      return undefined;
    }
    return e;
  }
  run(argv: string[]): string {
    const [cmd, k = "", a = "", b = ""] = argv;
    const e = this.live(k);
    switch (cmd) {
      case "GET":
        return e ? bulk(e.v) : "$-1\r\n";
      case "SET":
        this.m.set(k, { v: a, at: undefined });
        return "+OK\r\n";
      case "SETPX": // SET k v PX ms
        this.m.set(k, { v: a, at: this.now + Number(b) });
        return "+OK\r\n";
      case "SETKEEPTTL":
        this.m.set(k, { v: a, at: e?.at });
        return "+OK\r\n";
      case "SETNX":
        if (e) return ":0\r\n";
        this.m.set(k, { v: a, at: undefined });
        return ":1\r\n";
      case "DEL":
        return `:${this.m.delete(k) && e ? 1 : 0}\r\n`;
      case "APPEND": {
        const v = (e?.v ?? "") + a;
        this.m.set(k, { v, at: e?.at });
        return `:${v.length}\r\n`;
      }
      case "INCR": {
        const n = e ? Number(e.v) : 0;
        if (e && !/^(0|-?[1-9][0-9]*)$/.test(e.v)) return "-ERR value is not an integer or out of range\r\n";
        this.m.set(k, { v: String(n + 1), at: e?.at });
        return `:${n + 1}\r\n`;
      }
      case "PEXPIRE": {
        if (!e) return ":0\r\n";
        const at = this.now + Number(a);
        if (at <= this.now) this.m.delete(k);
        else e.at = at;
        return ":1\r\n";
      }
      case "PERSIST":
        if (!e || e.at === undefined) return ":0\r\n";
        e.at = undefined;
        return ":1\r\n";
      case "PTTL":
        return !e ? ":-2\r\n" : e.at === undefined ? ":-1\r\n" : `:${e.at - this.now}\r\n`;
      case "EXISTS":
        return `:${e ? 1 : 0}\r\n`;
      case "STRLEN":
        return `:${e ? e.v.length : 0}\r\n`;
      case "KEYS": {
        const ks = [...this.m.keys()].filter((x) => this.live(x)).sort();
        return ks.join(",");
      }
    }
    throw new Error(`model: ${cmd}`);
  }
}

function toKv(argv: string[]): string[] {
  const [cmd, k = "", a = "", b = ""] = argv;
  if (cmd === "SETPX") return ["SET", k, a, "PX", b];
  if (cmd === "SETKEEPTTL") return ["SET", k, a, "KEEPTTL"];
  if (cmd === "PEXPIRE" || cmd === "APPEND" || cmd === "SETNX" || cmd === "SET") return [cmd, k, a];
  if (cmd === "DEL" || cmd === "GET" || cmd === "INCR" || cmd === "PERSIST" || cmd === "PTTL" || cmd === "EXISTS" || cmd === "STRLEN") return [cmd, k];
  return argv;
}

test("random commands agree with a naive model of TTL semantics", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const r = rng(seed);
    const kv = new Kv();
    const model = new Model();
    const cmds = ["GET", "SET", "SETPX", "SETKEEPTTL", "SETNX", "DEL", "APPEND", "INCR", "PEXPIRE", "PERSIST", "PTTL", "EXISTS", "STRLEN", "KEYS"];
    for (let step = 0; step < 3000; step++) {
      const now = T0 + step * 3;
      kv.nowMs = now;
      model.now = now;
      const cmd = cmds[Math.floor(r() * cmds.length)]!;
      const k = `k${Math.floor(r() * 20)}`;
      const v = r() < 0.5 ? String(Math.floor(r() * 100)) : "x";
      const ms = String(Math.floor(r() * 60) - 10);
      const argv = [cmd, k, cmd === "PEXPIRE" ? ms : v, String(1 + Math.floor(r() * 50))];
      let got: string;
      if (cmd === "KEYS") got = kv.db.keys("*", now).sort().join(",");
      else got = kv.run(...toKv(argv));
      expect([seed, step, argv, got]).toEqual([seed, step, argv, model.run(argv)]);
      if (r() < 0.1) kv.db.sweepExpired(now, 1 + Math.floor(r() * 3));
      kv.db.assertInvariants();
    }
  }
});
