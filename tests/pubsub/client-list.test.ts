// CLIENT LIST shows what a connection is doing, as Redis's does: its subscriptions (sub, psub,
// ssub; flag P; type pubsub) and an open MULTI (flag x; multi: the commands queued).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type KvProcess, startKv } from "../helpers/server.ts";
import { Stream } from "./_stream.ts";

let kv: KvProcess;
beforeAll(async () => {
  kv = await startKv();
});
afterAll(async () => {
  await kv?.stop();
});

/** CLIENT LIST's lines (of `type`, if given) as field maps, by client name. */
async function clients(s: Stream, type?: string): Promise<Map<string, Record<string, string>>> {
  s.send(type === undefined ? ["CLIENT", "LIST"] : ["CLIENT", "LIST", "TYPE", type]);
  const [frame] = await s.settle(1, 50);
  const body = frame!.slice(frame!.indexOf("\r\n") + 2, -2);
  const out = new Map<string, Record<string, string>>();
  for (const line of body.split("\n").filter((l) => l !== "")) {
    const f: Record<string, string> = {};
    for (const kv of line.split(" ")) {
      const i = kv.indexOf("=");
      f[kv.slice(0, i)] = kv.slice(i + 1);
    }
    out.set(f.name!, f);
  }
  return out;
}

test("CLIENT LIST: subscriptions and an open MULTI are shown; TYPE pubsub lists the subscribers only", async () => {
  const sub = await Stream.open(kv.port);
  const tx = await Stream.open(kv.port);
  const me = await Stream.open(kv.port);
  try {
    sub.send(["CLIENT", "SETNAME", "sub"], ["SUBSCRIBE", "a", "b"], ["PSUBSCRIBE", "n*"], ["SSUBSCRIBE", "s"]);
    expect((await sub.settle(5)).length).toBe(5);
    tx.send(["CLIENT", "SETNAME", "tx"], ["MULTI"], ["SET", "k", "v"], ["INCR", "n"]);
    expect(await tx.settle(4)).toEqual(["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]);
    me.send(["CLIENT", "SETNAME", "me"]);
    await me.settle(1);

    const all = await clients(me);
    expect(all.get("sub")).toMatchObject({ flags: "P", sub: "2", psub: "1", ssub: "1", multi: "-1", "multi-mem": "0" });
    expect(all.get("tx")).toMatchObject({ flags: "x", sub: "0", psub: "0", ssub: "0", multi: "2" });
    expect(Number(all.get("tx")!["multi-mem"])).toBeGreaterThan(0);
    expect(all.get("me")).toMatchObject({ flags: "N", sub: "0", multi: "-1", "multi-mem": "0" });

    expect([...(await clients(me, "pubsub")).keys()]).toEqual(["sub"]);
    expect([...(await clients(me, "normal")).keys()].sort()).toEqual(["me", "tx"]);

    // EXEC ends the transaction; unsubscribing from everything leaves subscribed mode.
    tx.send(["EXEC"]);
    await tx.settle(1);
    sub.send(["UNSUBSCRIBE"], ["PUNSUBSCRIBE"], ["SUNSUBSCRIBE"]);
    await sub.settle(4);
    const after = await clients(me);
    expect(after.get("tx")).toMatchObject({ flags: "N", multi: "-1", "multi-mem": "0" });
    expect(after.get("sub")).toMatchObject({ flags: "N", sub: "0", psub: "0", ssub: "0" });
    expect((await clients(me, "pubsub")).size).toBe(0);
  } finally {
    sub.close();
    tx.close();
    me.close();
  }
});
