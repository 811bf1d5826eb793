// ROLE, CLUSTER SLOTS|SHARDS|NODES|INFO|MYID and INFO replication/raft rendered from a fake
// ClusterView (leader, follower, learner, no leader; 3 and 5 members): exact reply shapes.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { DEFAULT_CONFIG } from "../../src/config.ts";
import { ReplyBuffer, type ReplyWriter } from "../../src/resp/encode.ts";
import { NEED_MORE, ReplyParser, type RespValue } from "../../src/resp/reply-parser.ts";
import type { ClusterView, MemberAddress, MemberRole, MemberStatus } from "../../src/node/cluster-view.ts";
import {
  CLUSTER_SLOTS,
  MEMBER_DOWN_AFTER_MS,
  memberDownAfterMs,
  clusterInfoText,
  clusterNodeName,
  clusterNodesText,
  helloRole,
  infoRaftLines,
  infoReplicationLines,
  renderClusterShards,
  renderClusterSlots,
  renderRole,
  replicationId,
} from "../../src/server/cluster-commands.ts";
import { openOneMember } from "../helpers/one-member.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-view-");

interface FakeMember {
  id: number;
  voter?: boolean;
  match?: number;
  lastContactMs?: number;
  /** This node knows no address for it. */
  noAddr?: boolean;
}

/** A ClusterView with fixed answers; member i listens on 127.0.0.1:700i, its peers on 1700i. */
class FakeView implements ClusterView {
  constructor(
    readonly id: number,
    private readonly state: {
      role: MemberRole;
      leader: number;
      term: number;
      commit: number;
      applied: number;
      last: number;
      snapshot?: number;
      members: FakeMember[];
    },
    readonly clusterId = "c-test",
  ) {}
  role() {
    return this.state.role;
  }
  leaderId() {
    return this.state.leader;
  }
  term() {
    return this.state.term;
  }
  commitIndex() {
    return this.state.commit;
  }
  appliedIndex() {
    return this.state.applied;
  }
  lastIndex() {
    return this.state.last;
  }
  snapshotIndex() {
    return this.state.snapshot ?? 0;
  }
  members(): MemberStatus[] {
    const leader = this.state.role === "leader";
    return this.state.members.map((m) => ({
      id: m.id,
      addr: m.noAddr ? "" : `127.0.0.1:${7000 + m.id}`,
      peer: m.noAddr ? "" : `127.0.0.1:${17000 + m.id}`,
      voter: m.voter ?? true,
      match: leader ? (m.match ?? 0) : -1,
      lastContactMs: leader ? (m.id === this.id ? 0 : (m.lastContactMs ?? 10)) : -1,
    }));
  }
  member(id: number): MemberAddress | undefined {
    return this.members().find((m) => m.id === id);
  }
}

function decode(render: (out: ReplyWriter) => void, proto: 2 | 3 = 2): RespValue {
  const out = new ReplyBuffer(256);
  out.proto = proto;
  render(out);
  const p = new ReplyParser();
  p.push(out.view());
  const v = p.next("utf8");
  expect(v).not.toBe(NEED_MORE);
  expect(p.next("utf8")).toBe(NEED_MORE); // exactly one reply
  return v as RespValue;
}

const name = (id: number, cluster = "c-test") => clusterNodeName(cluster, id);
const NOW = 1_800_000_000_000;

const leader3 = () =>
  new FakeView(1, {
    role: "leader",
    leader: 1,
    term: 4,
    commit: 120,
    applied: 119,
    last: 121,
    snapshot: 100,
    members: [{ id: 1, match: 121 }, { id: 2, match: 120, lastContactMs: 30 }, { id: 3, match: 118, lastContactMs: 1500 }],
  });

const follower3 = () =>
  new FakeView(2, { role: "follower", leader: 1, term: 4, commit: 120, applied: 117, last: 121, members: [{ id: 1 }, { id: 2 }, { id: 3 }] });

const candidate3 = () =>
  new FakeView(3, { role: "candidate", leader: 0, term: 5, commit: 120, applied: 120, last: 122, members: [{ id: 1 }, { id: 2 }, { id: 3 }] });

/** 5 members seen from the leader (3): 4 is down, 5 a learner. */
const leader5 = () =>
  new FakeView(3, {
    role: "leader",
    leader: 3,
    term: 9,
    commit: 5000,
    applied: 5000,
    last: 5003,
    members: [
      { id: 1, match: 5003, lastContactMs: 12 },
      { id: 2, match: 4990, lastContactMs: 2500 },
      { id: 3, match: 5003 },
      { id: 4, match: 0, lastContactMs: -1 },
      { id: 5, voter: false, match: 5001, lastContactMs: 40 },
    ],
  });

/** The same 5 seen from the learner (5). */
const learner5 = () =>
  new FakeView(5, {
    role: "follower",
    leader: 3,
    term: 9,
    commit: 5000,
    applied: 4999,
    last: 5001,
    members: [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5, voter: false }],
  });

describe("node names", () => {
  test("SHA-1 of kv-node:<cluster id>:<node id>: 40 hex, stable, distinct per node and cluster", () => {
    const n = clusterNodeName("c-test", 1);
    expect(n).toMatch(/^[0-9a-f]{40}$/);
    expect(n).toBe(createHash("sha1").update("kv-node:c-test:1").digest("hex"));
    expect(clusterNodeName("c-test", 1)).toBe(n);
    expect(clusterNodeName("c-test", 2)).not.toBe(n);
    expect(clusterNodeName("c-other", 1)).not.toBe(n);
    expect(replicationId("c-test")).toBe(createHash("sha1").update("kv-replid:c-test").digest("hex"));
  });
});

describe("ROLE", () => {
  test("leader: master, commit index, replicas that are up as [ip, port, match] strings", () => {
    expect(decode((o) => renderRole(leader3(), o))).toEqual(["master", 120, [["127.0.0.1", "7002", "120"], ["127.0.0.1", "7003", "118"]]]);
    // 2 not heard from for 2.5 s and 4 never: left out, as Redis leaves out disconnected replicas.
    expect(decode((o) => renderRole(leader5(), o))).toEqual(["master", 5000, [["127.0.0.1", "7001", "5003"], ["127.0.0.1", "7005", "5001"]]]);
  });

  test("follower: slave, leader ip, port (integer), connected, applied index", () => {
    expect(decode((o) => renderRole(follower3(), o))).toEqual(["slave", "127.0.0.1", 7001, "connected", 117]);
    expect(decode((o) => renderRole(learner5(), o), 3)).toEqual(["slave", "127.0.0.1", 7003, "connected", 4999]);
  });

  test("no leader: slave of nobody, state connect", () => {
    expect(decode((o) => renderRole(candidate3(), o))).toEqual(["slave", "", 0, "connect", 120]);
    const pre = new FakeView(2, { role: "pre-candidate", leader: 0, term: 5, commit: 1, applied: 1, last: 1, members: [{ id: 1 }, { id: 2 }, { id: 3 }] });
    expect(decode((o) => renderRole(pre, o))).toEqual(["slave", "", 0, "connect", 1]);
  });

  test("HELLO's role", () => {
    expect(helloRole(leader3())).toBe("master");
    expect(helloRole(follower3())).toBe("replica");
    expect(helloRole(candidate3())).toBe("replica");
  });
});

describe("CLUSTER SLOTS", () => {
  test("leader: one range 0-16383, the leader first, then the replicas that are up", () => {
    const entry = (id: number) => ["127.0.0.1", 7000 + id, name(id), []];
    expect(decode((o) => renderClusterSlots(leader3(), o))).toEqual([[0, 16383, entry(1), entry(2), entry(3)]]);
    expect(decode((o) => renderClusterSlots(leader5(), o))).toEqual([[0, 16383, entry(3), entry(1), entry(5)]]);
  });

  test("follower: the same range, the leader first (a follower knows no member down)", () => {
    const entry = (id: number) => ["127.0.0.1", 7000 + id, name(id), []];
    expect(decode((o) => renderClusterSlots(follower3(), o))).toEqual([[0, 16383, entry(1), entry(2), entry(3)]]);
    expect(decode((o) => renderClusterSlots(learner5(), o))).toEqual([[0, 16383, entry(3), entry(1), entry(2), entry(4), entry(5)]]);
  });

  test("RESP3: the endpoint metadata is an empty map", () => {
    const v = decode((o) => renderClusterSlots(follower3(), o), 3) as RespValue[][];
    expect(v[0]![2]).toEqual(["127.0.0.1", 7001, name(1), new Map()]);
  });

  test("no leader: empty", () => {
    expect(decode((o) => renderClusterSlots(candidate3(), o))).toEqual([]);
  });

  test("a leader id whose address is unknown counts as no leader", () => {
    const v = new FakeView(2, { role: "follower", leader: 9, term: 4, commit: 1, applied: 1, last: 1, members: [{ id: 1 }, { id: 2 }, { id: 3 }] });
    expect(decode((o) => renderClusterSlots(v, o))).toEqual([]);
    expect(decode((o) => renderRole(v, o))).toEqual(["slave", "", 0, "connect", 1]);
    expect(clusterInfoText(v)).toStartWith("cluster_state:fail\r\n");
  });
});

describe("CLUSTER SHARDS", () => {
  const node = (id: number, offset: number, role: string, health = "online") => [
    "id", name(id), "port", 7000 + id, "ip", "127.0.0.1", "endpoint", "127.0.0.1",
    "replication-offset", offset, "role", role, "health", health,
  ];

  test("leader of 3: one shard, slots [0, 16383], nodes with offsets (commit, then match)", () => {
    expect(decode((o) => renderClusterShards(leader3(), o))).toEqual([
      ["slots", [0, 16383], "nodes", [node(1, 120, "master"), node(2, 120, "replica"), node(3, 118, "replica")]],
    ]);
  });

  test("leader of 5: members not heard from are failed", () => {
    expect(decode((o) => renderClusterShards(leader5(), o))).toEqual([
      [
        "slots", [0, 16383], "nodes",
        [node(3, 5000, "master"), node(1, 5003, "replica"), node(2, 4990, "replica", "failed"), node(4, 0, "replica", "failed"), node(5, 5001, "replica")],
      ],
    ]);
  });

  test("RESP3 maps; a follower knows its own applied index and the leader's commit", () => {
    const v = decode((o) => renderClusterShards(follower3(), o), 3) as Map<RespValue, RespValue>[];
    expect(v).toHaveLength(1);
    const shard = v[0]!;
    expect(shard.get("slots")).toEqual([0, 16383]);
    const nodes = shard.get("nodes") as Map<RespValue, RespValue>[];
    expect(nodes.map((n) => [n.get("id"), n.get("role"), n.get("replication-offset"), n.get("health")])).toEqual([
      [name(1), "master", 120, "online"],
      [name(2), "replica", 117, "online"],
      [name(3), "replica", 0, "online"],
    ]);
  });

  test("no leader: no slots, every node a replica", () => {
    expect(decode((o) => renderClusterShards(candidate3(), o))).toEqual([
      ["slots", [], "nodes", [node(1, 0, "replica"), node(2, 0, "replica"), node(3, 120, "replica")]],
    ]);
  });
});

describe("CLUSTER NODES", () => {
  test("leader of 3", () => {
    expect(clusterNodesText(leader3(), NOW)).toBe(
      `${name(1)} 127.0.0.1:7001@17001 myself,master - 0 0 4 connected 0-16383\n` +
        `${name(2)} 127.0.0.1:7002@17002 slave ${name(1)} 0 ${NOW - 30} 4 connected\n` +
        `${name(3)} 127.0.0.1:7003@17003 slave ${name(1)} 0 ${NOW - 1500} 4 connected\n`,
    );
  });

  test("leader of 5: a member not heard from within the limit is fail? and disconnected", () => {
    expect(clusterNodesText(leader5(), NOW)).toBe(
      `${name(3)} 127.0.0.1:7003@17003 myself,master - 0 0 9 connected 0-16383\n` +
        `${name(1)} 127.0.0.1:7001@17001 slave ${name(3)} 0 ${NOW - 12} 9 connected\n` +
        `${name(2)} 127.0.0.1:7002@17002 slave,fail? ${name(3)} 0 ${NOW - 2500} 9 disconnected\n` +
        `${name(4)} 127.0.0.1:7004@17004 slave,fail? ${name(3)} 0 0 9 disconnected\n` +
        `${name(5)} 127.0.0.1:7005@17005 slave ${name(3)} 0 ${NOW - 40} 9 connected\n`,
    );
  });

  test("follower: myself,slave; no contact times", () => {
    expect(clusterNodesText(follower3(), NOW)).toBe(
      `${name(1)} 127.0.0.1:7001@17001 master - 0 0 4 connected 0-16383\n` +
        `${name(2)} 127.0.0.1:7002@17002 myself,slave ${name(1)} 0 0 4 connected\n` +
        `${name(3)} 127.0.0.1:7003@17003 slave ${name(1)} 0 0 4 connected\n`,
    );
  });

  test("no leader: every member a slave of nobody, no slots", () => {
    expect(clusterNodesText(candidate3(), NOW)).toBe(
      `${name(1)} 127.0.0.1:7001@17001 slave - 0 0 5 connected\n` +
        `${name(2)} 127.0.0.1:7002@17002 slave - 0 0 5 connected\n` +
        `${name(3)} 127.0.0.1:7003@17003 myself,slave - 0 0 5 connected\n`,
    );
  });

  test("the limit follows a long election timeout", () => {
    expect(memberDownAfterMs(DEFAULT_CONFIG)).toBe(MEMBER_DOWN_AFTER_MS);
    const cluster = { members: [], clusterId: "c", peerPort: 1, heartbeatMs: 50, electionMs: 300 };
    expect(memberDownAfterMs({ ...DEFAULT_CONFIG, cluster })).toBe(MEMBER_DOWN_AFTER_MS);
    expect(memberDownAfterMs({ ...DEFAULT_CONFIG, cluster: { ...cluster, heartbeatMs: 1000, electionMs: 5000 } })).toBe(10_000);
    // Member 2 was last heard from 2.5 s ago: down under the default limit, up under 10 s.
    expect(clusterNodesText(leader5(), NOW, 10_000)).toContain(`${name(2)} 127.0.0.1:7002@17002 slave ${name(3)} 0 ${NOW - 2500} 9 connected\n`);
    expect(decode((o) => renderRole(leader5(), o, 10_000))).toEqual(["master", 5000, [["127.0.0.1", "7001", "5003"], ["127.0.0.1", "7002", "4990"], ["127.0.0.1", "7005", "5001"]]]);
    expect(infoReplicationLines(leader5(), 10_000)[1]).toBe("connected_slaves:3");
  });

  test("a member is down only past the limit", () => {
    const at = (ms: number) =>
      new FakeView(1, { role: "leader", leader: 1, term: 1, commit: 1, applied: 1, last: 1, members: [{ id: 1 }, { id: 2, lastContactMs: ms }] });
    expect(clusterNodesText(at(MEMBER_DOWN_AFTER_MS), NOW)).toContain(" slave ");
    expect(clusterNodesText(at(MEMBER_DOWN_AFTER_MS + 1), NOW)).toContain(" slave,fail? ");
  });
});

describe("a member with no known address", () => {
  const view = (leader: number) =>
    new FakeView(1, { role: leader === 1 ? "leader" : "follower", leader, term: 2, commit: 5, applied: 5, last: 5, members: [{ id: 1 }, { id: 2 }, { id: 3, noAddr: true }] });

  test("CLUSTER NODES shows it noaddr at :0@0; CLUSTER SLOTS leaves it out", () => {
    expect(clusterNodesText(view(1), NOW).split("\n")[2]).toBe(`${name(3)} :0@0 slave,noaddr ${name(1)} 0 ${NOW - 10} 2 connected`);
    expect(decode((o) => renderClusterSlots(view(1), o))).toEqual([[0, 16383, ["127.0.0.1", 7001, name(1), []], ["127.0.0.1", 7002, name(2), []]]]);
    expect(decode((o) => renderRole(view(1), o))).toEqual(["master", 5, [["127.0.0.1", "7002", "0"], ["", "0", "0"]]]);
  });

  test("a leader with no known address is no leader to route to", () => {
    expect(decode((o) => renderClusterSlots(view(3), o))).toEqual([]);
    expect(decode((o) => renderRole(view(3), o))).toEqual(["slave", "", 0, "connect", 5]);
    expect(infoRaftLines(view(3))).toContain("raft_leader_addr:");
    expect(infoRaftLines(view(3))).toContain("raft_leader_id:3");
  });
});

describe("CLUSTER INFO", () => {
  test("with a leader: ok, every slot served by one group, epochs = term", () => {
    expect(clusterInfoText(follower3())).toBe(
      "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\n" +
        "cluster_slots_fail:0\r\ncluster_known_nodes:3\r\ncluster_size:1\r\ncluster_current_epoch:4\r\ncluster_my_epoch:4\r\n",
    );
    expect(clusterInfoText(leader5())).toContain("cluster_known_nodes:5\r\n");
  });

  test("no leader: fail, the slots assigned but none served", () => {
    expect(clusterInfoText(candidate3())).toBe(
      "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:0\r\ncluster_slots_pfail:0\r\n" +
        `cluster_slots_fail:${CLUSTER_SLOTS}\r\ncluster_known_nodes:3\r\ncluster_size:1\r\ncluster_current_epoch:5\r\ncluster_my_epoch:5\r\n`,
    );
  });
});

describe("INFO raft", () => {
  test("leader of 3: every field, and one line per other member", () => {
    expect(infoRaftLines(leader3())).toEqual([
      "raft_node_id:1",
      "raft_cluster_id:c-test",
      "raft_role:leader",
      "raft_leader_id:1",
      "raft_leader_addr:127.0.0.1:7001",
      "raft_term:4",
      "raft_commit_index:120",
      "raft_applied_index:119",
      "raft_last_index:121",
      "raft_snapshot_index:100",
      "raft_voters:1,2,3",
      "raft_learners:",
      "raft_members:1=127.0.0.1:7001@127.0.0.1:17001,2=127.0.0.1:7002@127.0.0.1:17002,3=127.0.0.1:7003@127.0.0.1:17003",
      "raft_peer_2:addr=127.0.0.1:7002,match=120,last_contact_ms=30",
      "raft_peer_3:addr=127.0.0.1:7003,match=118,last_contact_ms=1500",
    ]);
  });

  test("leader of 5: peers down and learners are listed too", () => {
    const lines = infoRaftLines(leader5());
    expect(lines).toContain("raft_voters:1,2,3,4");
    expect(lines).toContain("raft_learners:5");
    expect(lines.filter((l) => l.startsWith("raft_peer_"))).toEqual([
      "raft_peer_1:addr=127.0.0.1:7001,match=5003,last_contact_ms=12",
      "raft_peer_2:addr=127.0.0.1:7002,match=4990,last_contact_ms=2500",
      "raft_peer_4:addr=127.0.0.1:7004,match=0,last_contact_ms=-1",
      "raft_peer_5:addr=127.0.0.1:7005,match=5001,last_contact_ms=40",
    ]);
  });

  test("follower and candidate: no peer lines; no leader is id 0 and an empty address", () => {
    expect(infoRaftLines(follower3()).slice(0, 5)).toEqual(["raft_node_id:2", "raft_cluster_id:c-test", "raft_role:follower", "raft_leader_id:1", "raft_leader_addr:127.0.0.1:7001"]);
    expect(infoRaftLines(follower3())).toHaveLength(13);
    const c = infoRaftLines(candidate3());
    expect(c.slice(2, 6)).toEqual(["raft_role:candidate", "raft_leader_id:0", "raft_leader_addr:", "raft_term:5"]);
    expect(c).toHaveLength(13);
  });
});

describe("INFO replication", () => {
  const replid = replicationId("c-test");

  test("leader: master with its replicas that are up, offsets are match indexes, lag in seconds", () => {
    expect(infoReplicationLines(leader3())).toEqual([
      "role:master",
      "connected_slaves:2",
      "slave0:ip=127.0.0.1,port=7002,state=online,offset=120,lag=0",
      "slave1:ip=127.0.0.1,port=7003,state=online,offset=118,lag=1",
      "master_failover_state:no-failover",
      `master_replid:${replid}`,
      "master_replid2:0000000000000000000000000000000000000000",
      "master_repl_offset:120",
      "second_repl_offset:-1",
    ]);
    expect(infoReplicationLines(leader5()).slice(0, 4)).toEqual([
      "role:master",
      "connected_slaves:2",
      "slave0:ip=127.0.0.1,port=7001,state=online,offset=5003,lag=0",
      "slave1:ip=127.0.0.1,port=7005,state=online,offset=5001,lag=0",
    ]);
  });

  test("follower: slave of the leader, link up; a learner has priority 0", () => {
    expect(infoReplicationLines(follower3())).toEqual([
      "role:slave",
      "master_host:127.0.0.1",
      "master_port:7001",
      "master_link_status:up",
      "master_sync_in_progress:0",
      "slave_read_repl_offset:121",
      "slave_repl_offset:117",
      "slave_priority:100",
      "slave_read_only:0",
      "replica_announced:1",
      "connected_slaves:0",
      "master_failover_state:no-failover",
      `master_replid:${replid}`,
      "master_replid2:0000000000000000000000000000000000000000",
      "master_repl_offset:117",
      "second_repl_offset:-1",
    ]);
    expect(infoReplicationLines(learner5())).toContain("slave_priority:0");
    expect(infoReplicationLines(learner5())).toContain("master_port:7003");
  });

  test("no leader: link down, no master address", () => {
    expect(infoReplicationLines(candidate3()).slice(0, 4)).toEqual(["role:slave", "master_host:", "master_port:0", "master_link_status:down"]);
  });
});

describe("the view of a one-member group (kv serve without --cluster)", () => {
  test("leader of itself at the term it elected itself in; indexes from its log; its peer port 0 when it listens for none", async () => {
    const { node } = await openOneMember<number>({ dataDir: tempDir() });
    try {
      node.advertise("127.0.0.1:6400");
      const v = node.view;
      const applied = node.applied;
      expect(applied).toBe(2); // its first membership entry, its no-op as leader
      expect([v.role(), v.leaderId(), v.term(), v.commitIndex(), v.appliedIndex(), v.lastIndex(), v.snapshotIndex()]).toEqual(["leader", 1, 2, 2, 2, 2, 0]);
      expect(v.members()).toEqual([{ id: 1, addr: "127.0.0.1:6400", peer: "127.0.0.1:0", voter: true, match: 2, lastContactMs: 0 }]);
      expect(v.member(1)?.addr).toBe("127.0.0.1:6400");
      expect(v.member(2)).toBeUndefined();
      expect(decode((o) => renderRole(v, o))).toEqual(["master", 2, []]);
      expect(decode((o) => renderClusterSlots(v, o))).toEqual([[0, 16383, ["127.0.0.1", 6400, clusterNodeName(v.clusterId, 1), []]]]);
      expect(clusterNodesText(v, NOW)).toBe(`${clusterNodeName(v.clusterId, 1)} 127.0.0.1:6400@0 myself,master - 0 0 2 connected 0-16383\n`);
      expect(infoReplicationLines(v).slice(0, 2)).toEqual(["role:master", "connected_slaves:0"]);
    } finally {
      await node.close();
    }
  });
});
