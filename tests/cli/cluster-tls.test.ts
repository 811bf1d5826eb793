// `kv cluster up 3 --tls`: client TLS and peer mutual TLS with a throwaway CA. The cluster serves
// writes through every node (followers forward over TLS), `kv cluster status` talks TLS by itself,
// a peer whose certificate is another CA's or names another node id is refused at the handshake
// (logged, naming it) and moves the cluster's term not at all, while the same message with the
// real member's certificate does (so the refusal is what kept it out); and the cluster fails over.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { type Client, createClient } from "../../src/client/index.ts";
import { PeerTls } from "../../src/node/peer-tls.ts";
import { TcpTransport } from "../../src/node/tcp-transport.ts";
import { clusterCliHarness, freeBasePort, until } from "../helpers/cluster-cli.ts";
import { makeCa, makeLeaf } from "../helpers/tls-certs.ts";

const h = clusterCliHarness("kv-cluster-tls-");
let dir: string;
let tlsDir: string;
let base: number;
let clusterId: string;
const addrs: string[] = [];
const clients: Client[] = [];
/** The node the failover test killed. */
let killed = 0;

function client(addr: string): Client {
  const c = createClient({
    addrs: addr,
    timeoutMs: 10_000,
    tls: { ca: readFileSync(join(tlsDir, "ca.crt"), "utf8"), cert: readFileSync(join(tlsDir, "client.crt"), "utf8"), key: readFileSync(join(tlsDir, "client.key"), "utf8") },
  });
  clients.push(c);
  return c;
}

async function raftField(addr: string, field: string): Promise<string> {
  const c = client(addr);
  const info = String(await c.command(["INFO", "raft"]));
  const m = new RegExp(`^${field}:(.*?)\\r?$`, "m").exec(info);
  if (m === null) throw new Error(`no ${field} in INFO raft of ${addr}`);
  return m[1]!;
}

beforeAll(async () => {
  dir = h.clusterDir();
  tlsDir = join(dir, "tls");
  base = freeBasePort(4); // the fourth for kv cluster add
  const up = await h.kv("cluster", "up", "3", "--tls", "--base-port", String(base), "--data-dir", dir, "--detach");
  if (up.code !== 0) throw new Error(`kv cluster up 3 --tls failed (exit ${up.code}): ${up.stderr}${up.stdout}`);
  const file = readClusterFile(dir)!;
  for (const n of file.nodes) h.started.push(n.pid);
  clusterId = file.clusterId;
  for (let i = 0; i < 3; i++) addrs.push(`127.0.0.1:${base + i}`);
  expect(up.stdout).toContain(`--tls --cacert ${join(tlsDir, "ca.crt")} --cert ${join(tlsDir, "client.crt")} --key ${join(tlsDir, "client.key")}`);
}, 60_000);

afterAll(() => {
  for (const c of clients) c.destroy();
});

/** Dials node `to`'s peer port as node `from` with `cert` and sends it a vote request for `term`; closes after `ms`. */
async function rogueVote(cert: { cert: string; key: string } | null, from: number, term: number, ms = 800, to = 1): Promise<void> {
  const t = new TcpTransport({
    id: from,
    clusterId,
    peers: new Map([[to, `127.0.0.1:${base + to - 1 + 10_000}`]]),
    ...(cert !== null ? { tls: new PeerTls({ certFile: cert.cert, keyFile: cert.key, caFile: join(tlsDir, "ca.crt") }) } : {}),
    log: { info() {}, warn() {}, debug() {} },
  });
  t.onMessage(() => {});
  // Repeated: the message waits in the queue until a connection is accepted, then goes at once.
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    t.send([{ type: "vote", from, to, term, lastIndex: 1_000_000, lastTerm: term, transfer: true }]);
    await Bun.sleep(100);
  }
  t.close();
}

describe("kv cluster up 3 --tls", () => {
  test("every node takes writes over TLS (followers forward to the leader over the members' TLS links); kv cluster status talks TLS", async () => {
    for (const [i, a] of addrs.entries()) expect(await client(a).set(`k${i}`, `v${i}`)).toBe(true);
    const any = client(addrs[0]!);
    for (let i = 0; i < 3; i++) expect(await any.get(`k${i}`)).toBe(`v${i}`);
    const st = await h.kv("cluster", "status", "--data-dir", dir);
    expect(st.stdout).toContain("healthy: 3/3 voters up");
    expect(st.code).toBe(0);
    // redis-cli as the launcher printed it.
    const r = Bun.spawnSync(["redis-cli", "-p", String(base + 1), "--tls", "--cacert", join(tlsDir, "ca.crt"), "--cert", join(tlsDir, "client.crt"), "--key", join(tlsDir, "client.key"), "GET", "k0"], { stdout: "pipe", timeout: 10_000 });
    expect(r.stdout.toString().trim()).toBe("v0");
    // Without TLS: nothing.
    const plain = Bun.spawnSync(["redis-cli", "-p", String(base + 1), "GET", "k0"], { stdout: "pipe", stderr: "pipe", timeout: 10_000 });
    expect(plain.stdout.toString().trim()).not.toBe("v0");
  });

  test("a peer with another CA's certificate, or a certificate naming another node id, is refused and moves nothing", async () => {
    const log1 = join(dir, "n1", "kv.log");
    const termBefore = Number(await raftField(addrs[0]!, "raft_term"));
    const commitBefore = Number(await raftField(addrs[0]!, "raft_commit_index"));
    const rogueDir = h.tempRoot();
    const otherCa = makeCa(rogueDir, "other-ca", "/CN=rogue CA");
    const foreign = makeLeaf(rogueDir, "foreign2", otherCa, { cn: "rogue node 2", nodeId: 2 });
    await rogueVote(foreign, 2, termBefore + 1000);
    await until("the refusal of the foreign certificate in n1's log", 5000, async () => (readFileSync(log1, "utf8").includes("CN=rogue node 2 issued by CN=rogue CA") ? true : undefined));
    expect(readFileSync(log1, "utf8")).toMatch(/refused a peer connection from 127\.0\.0\.1:\d+: peer certificate refused: its certificate CN=rogue node 2 issued by CN=rogue CA, naming node 2 is not accepted/);
    // Signed by the cluster's CA, but naming node 5 while claiming to be node 2.
    const wrongId = makeLeaf(rogueDir, "wrong-id", { cert: join(tlsDir, "ca.crt"), key: join(tlsDir, "ca.key") }, { cn: "kv node 5", nodeId: 5 });
    await rogueVote(wrongId, 2, termBefore + 2000);
    await until("the refusal of the wrong node id in n1's log", 5000, async () => (readFileSync(log1, "utf8").includes("peer says it is node 2 but its certificate names node 5") ? true : undefined));
    // A peer speaking plaintext never gets past the TLS handshake.
    await rogueVote(null, 2, termBefore + 3000);
    for (const a of addrs) expect(Number(await raftField(a, "raft_term"))).toBe(termBefore);
    expect(Number(await raftField(addrs[0]!, "raft_commit_index"))).toBeGreaterThanOrEqual(commitBefore);
    expect(await client(addrs[2]!).set("after-rogue", "still serving")).toBe(true);
  }, 30_000);

  test("SIGHUP re-reads a node's certificates; it stays a member and serves", async () => {
    const file = readClusterFile(dir)!;
    const n3 = file.nodes.find((n) => n.id === 3)!;
    process.kill(n3.pid, "SIGHUP");
    await until("the reload line in n3's log", 5000, async () => (readFileSync(join(dir, "n3", "kv.log"), "utf8").includes("TLS certificates re-read: CN=kv node 3") ? true : undefined));
    expect(await client(addrs[2]!).set("after-hup", "ok")).toBe(true);
    const st = await h.kv("cluster", "status", "--data-dir", dir);
    expect(st.stdout).toContain("healthy: 3/3 voters up");
  }, 20_000);

  test("kv cluster add: the new node (its certificate made) joins over the secured links and catches up", async () => {
    const add = await h.kv("cluster", "add", "--data-dir", dir);
    for (const n of readClusterFile(dir)!.nodes) h.started.push(n.pid);
    expect(add.stdout).toContain("node 4 is a voter: 4 voters");
    expect(add.code).toBe(0);
    const c4 = client(`127.0.0.1:${base + 3}`);
    expect(await c4.get("k0")).toBe("v0");
    expect(await c4.set("via-n4", "ok")).toBe(true);
  }, 60_000);

  test("the leader fails: another is elected and writes go on over TLS", async () => {
    const file = readClusterFile(dir)!;
    const leaderId = Number(await raftField(addrs[0]!, "raft_leader_id"));
    const leader = file.nodes.find((n) => n.id === leaderId)!;
    process.kill(leader.pid, "SIGKILL");
    killed = leaderId;
    const others = [...addrs, `127.0.0.1:${base + 3}`].filter((a) => a !== leader.addr);
    const newLeader = await until("a new leader", 15_000, async () => {
      const id = Number(await raftField(others[0]!, "raft_leader_id"));
      return id !== 0 && id !== leaderId ? id : undefined;
    });
    expect(newLeader).not.toBe(leaderId);
    for (const [i, a] of others.entries()) {
      const c = client(a);
      await until(`a write through ${a}`, 10_000, async () => ((await c.set(`after-failover-${i}`, "ok")) ? true : undefined));
    }
    expect(await client(others[1]!).get("after-failover-0")).toBe("ok");
  }, 40_000);

  test("control: the same vote with a member's real certificate does reach the node (its term jumps)", async () => {
    const [to, from] = [1, 2, 3].filter((id) => id !== killed) as [number, number];
    const termBefore = Number(await raftField(addrs[to - 1]!, "raft_term"));
    await rogueVote({ cert: join(tlsDir, `node${from}.crt`), key: join(tlsDir, `node${from}.key`) }, from, termBefore + 500, 1500, to);
    const after = await until(`node ${to}'s term to move`, 5000, async () => {
      const t = Number(await raftField(addrs[to - 1]!, "raft_term"));
      return t >= termBefore + 500 ? t : undefined;
    });
    expect(after).toBeGreaterThanOrEqual(termBefore + 500);
  }, 20_000);
});
