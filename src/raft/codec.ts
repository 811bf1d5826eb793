// Peer wire format: Raft messages and the connection handshake as length-prefixed binary frames. Pure.
//
// Frame (integers little-endian):  [u32 bodyBytes][body]
//   message body:   [u8 version][u8 type][u32 from][u32 to][u64 term][fields of the type]
//   handshake body: [u32 magic "KVRP"][u8 version][u32 from][u32 to][u16 clusterIdBytes][clusterId UTF-8]
// Fields: u64 holds a safe integer (< 2^53); a flag is a u8 0 or 1; a string or byte array is
// [u32 length][bytes]; an entry is [u64 index][u64 term][u8 type][u32 dataBytes][data]; a snapshot is
// [u64 index][u64 term][u32 voters][u32 each][u32 learners][u32 each][u32 dataBytes][data].
// Decoding checks every length against the bytes present before allocating, and that the body is
// consumed exactly, so garbage, a truncated frame or a length past the limit gives a FrameError and
// never another exception or an allocation larger than the bytes received (or the frame limit).
import type { Entry, EntryType, Message, MessageType, NodeId, Snapshot, SnapshotMeta } from "./types.ts";

/** Wire version in every handshake and message frame. A peer speaking another version is refused. */
export const WIRE_VERSION = 1;
/** "KVRP" read as a little-endian u32: the first field of a handshake. */
export const HANDSHAKE_MAGIC = 0x5052564b;
export const FRAME_HEADER_BYTES = 4;
/**
 * Largest frame body accepted (1 GiB). One append of the largest entry kv writes (a 513 MiB log record
 * payload) fits; a longer length field is damage or a hostile peer and closes the connection.
 */
export const FRAME_BYTES_MAX = 1024 * 1024 * 1024;
/** Longest cluster id in a handshake. */
export const CLUSTER_ID_BYTES_MAX = 128;
/** Largest handshake frame body; before a handshake is accepted, no longer frame is read. */
export const HANDSHAKE_BYTES_MAX = 4 + 1 + 4 + 4 + 2 + CLUSTER_ID_BYTES_MAX;

/** Bytes that are not a valid frame: the peer is broken or not a kv peer. Never a bug in kv. */
export class FrameError extends Error {
  override name = "FrameError";
}

export interface Handshake {
  readonly version: number;
  readonly clusterId: string;
  readonly from: NodeId;
  readonly to: NodeId;
}

const TYPE_CODE: Record<MessageType, number> = {
  append: 1,
  "append-resp": 2,
  vote: 3,
  "pre-vote": 4,
  "vote-resp": 5,
  "pre-vote-resp": 6,
  heartbeat: 7,
  "heartbeat-resp": 8,
  snapshot: 9,
  "timeout-now": 10,
};
const CODE_TYPE: readonly (MessageType | undefined)[] = (() => {
  const t: (MessageType | undefined)[] = [];
  for (const [name, code] of Object.entries(TYPE_CODE)) t[code] = name as MessageType;
  return t;
})();
const ENTRY_CODE: Record<EntryType, number> = { normal: 1, "conf-change": 2 };

const TWO_32 = 2 ** 32;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------- encoding

/** Writes into a buffer sized beforehand by `messageBodyBytes`. */
class Writer {
  off = 0;
  constructor(readonly b: Uint8Array) {}
  u8(v: number): void {
    this.b[this.off++] = v;
  }
  u16(v: number): void {
    this.b[this.off++] = v;
    this.b[this.off++] = v >>> 8;
  }
  u32(v: number): void {
    const b = this.b;
    const o = this.off;
    b[o] = v;
    b[o + 1] = v >>> 8;
    b[o + 2] = v >>> 16;
    b[o + 3] = v >>> 24;
    this.off = o + 4;
  }
  u64(v: number): void {
    const lo = v >>> 0;
    this.u32(lo);
    this.u32((v - lo) / TWO_32);
  }
  flag(v: boolean): void {
    this.u8(v ? 1 : 0);
  }
  bytes(v: Uint8Array): void {
    this.u32(v.length);
    this.b.set(v, this.off);
    this.off += v.length;
  }
}

function checkU64(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
}

function checkId(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1 || n >= TWO_32) throw new RangeError(`${what} must be a node id in [1, 2^32), got ${n}`);
}

const ENVELOPE_BYTES = 1 + 1 + 4 + 4 + 8;
const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;

/** Body bytes `m` encodes to (checks every field that could not be encoded: a RangeError is a bug of the caller). */
function messageBodyBytes(m: Message, ctx: Uint8Array | undefined): number {
  checkId(m.from, "from");
  checkId(m.to, "to");
  checkU64(m.term, "term");
  switch (m.type) {
    case "append": {
      let n = ENVELOPE_BYTES + 8 * 3 + 4;
      checkU64(m.logIndex, "logIndex");
      checkU64(m.logTerm, "logTerm");
      checkU64(m.commit, "commit");
      for (const e of m.entries) {
        checkU64(e.index, "entry index");
        checkU64(e.term, "entry term");
        n += ENTRY_FIXED_BYTES + e.data.length;
      }
      return n;
    }
    case "append-resp":
      checkU64(m.index, "index");
      checkU64(m.rejectHint, "rejectHint");
      checkU64(m.hintTerm, "hintTerm");
      return ENVELOPE_BYTES + 8 + 1 + 8 + 8;
    case "vote":
    case "pre-vote":
      checkU64(m.lastIndex, "lastIndex");
      checkU64(m.lastTerm, "lastTerm");
      return ENVELOPE_BYTES + 8 + 8 + 1;
    case "vote-resp":
    case "pre-vote-resp":
      return ENVELOPE_BYTES + 1;
    case "heartbeat":
      checkU64(m.commit, "commit");
      checkU64(m.leaderCommit, "leaderCommit");
      return ENVELOPE_BYTES + 8 + 8 + 4 + (ctx as Uint8Array).length;
    case "heartbeat-resp":
      return ENVELOPE_BYTES + 4 + (ctx as Uint8Array).length;
    case "snapshot": {
      const { meta, data } = m.snapshot;
      checkU64(meta.index, "snapshot index");
      checkU64(meta.term, "snapshot term");
      for (const id of meta.confState.voters) checkId(id, "voter");
      for (const id of meta.confState.learners) checkId(id, "learner");
      return ENVELOPE_BYTES + 8 + 8 + 4 + 4 * meta.confState.voters.length + 4 + 4 * meta.confState.learners.length + 4 + data.length;
    }
    case "timeout-now":
      return ENVELOPE_BYTES;
  }
}

/** Bytes of the frame `encodeMessage(m)` returns. */
export function frameBytes(m: Message): number {
  return FRAME_HEADER_BYTES + messageBodyBytes(m, ctxOf(m));
}

function ctxOf(m: Message): Uint8Array | undefined {
  return m.type === "heartbeat" || m.type === "heartbeat-resp" ? utf8.encode(m.ctx) : undefined;
}

/**
 * One frame holding `m`. Throws RangeError for a message that cannot be sent (a field out of range,
 * or a body past `frameBytesMax`): the caller drops it. The frame shares no memory with `m`.
 */
export function encodeMessage(m: Message, frameBytesMax = FRAME_BYTES_MAX): Uint8Array {
  const ctx = ctxOf(m);
  const body = messageBodyBytes(m, ctx);
  if (body > frameBytesMax) throw new RangeError(`a ${m.type} message of ${body} bytes exceeds the frame limit of ${frameBytesMax}`);
  const w = new Writer(new Uint8Array(FRAME_HEADER_BYTES + body));
  w.u32(body);
  w.u8(WIRE_VERSION);
  w.u8(TYPE_CODE[m.type]);
  w.u32(m.from);
  w.u32(m.to);
  w.u64(m.term);
  switch (m.type) {
    case "append":
      w.u64(m.logIndex);
      w.u64(m.logTerm);
      w.u64(m.commit);
      w.u32(m.entries.length);
      for (const e of m.entries) {
        w.u64(e.index);
        w.u64(e.term);
        w.u8(ENTRY_CODE[e.type]);
        w.bytes(e.data);
      }
      break;
    case "append-resp":
      w.u64(m.index);
      w.flag(m.reject);
      w.u64(m.rejectHint);
      w.u64(m.hintTerm);
      break;
    case "vote":
    case "pre-vote":
      w.u64(m.lastIndex);
      w.u64(m.lastTerm);
      w.flag(m.transfer);
      break;
    case "vote-resp":
    case "pre-vote-resp":
      w.flag(m.reject);
      break;
    case "heartbeat":
      w.u64(m.commit);
      w.u64(m.leaderCommit);
      w.bytes(ctx as Uint8Array);
      break;
    case "heartbeat-resp":
      w.bytes(ctx as Uint8Array);
      break;
    case "snapshot": {
      const { meta, data } = m.snapshot;
      w.u64(meta.index);
      w.u64(meta.term);
      w.u32(meta.confState.voters.length);
      for (const id of meta.confState.voters) w.u32(id);
      w.u32(meta.confState.learners.length);
      for (const id of meta.confState.learners) w.u32(id);
      w.bytes(data);
      break;
    }
    case "timeout-now":
      break;
  }
  if (w.off !== w.b.length) throw new RangeError(`encoded ${w.off} of ${w.b.length} bytes`);
  return w.b;
}

/** The frame a connecting node sends first. Throws RangeError for an id or cluster id that cannot be sent. */
export function encodeHandshake(h: Omit<Handshake, "version">): Uint8Array {
  checkId(h.from, "from");
  checkId(h.to, "to");
  const cid = utf8.encode(h.clusterId);
  if (cid.length > CLUSTER_ID_BYTES_MAX) throw new RangeError(`cluster id of ${cid.length} bytes (at most ${CLUSTER_ID_BYTES_MAX})`);
  const body = 4 + 1 + 4 + 4 + 2 + cid.length;
  const w = new Writer(new Uint8Array(FRAME_HEADER_BYTES + body));
  w.u32(body);
  w.u32(HANDSHAKE_MAGIC);
  w.u8(WIRE_VERSION);
  w.u32(h.from);
  w.u32(h.to);
  w.u16(cid.length);
  w.b.set(cid, w.off);
  return w.b;
}

// ---------------------------------------------------------------- decoding

/** Reads a body; every read checks the bytes left first and throws FrameError past the end. */
class Reader {
  off = 0;
  constructor(private readonly b: Uint8Array) {}
  private need(n: number, what: string): void {
    if (this.b.length - this.off < n) throw new FrameError(`truncated frame: ${what} needs ${n} bytes, ${this.b.length - this.off} left`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.off++] as number;
  }
  u16(what: string): number {
    this.need(2, what);
    const b = this.b;
    const v = (b[this.off] as number) | ((b[this.off + 1] as number) << 8);
    this.off += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const b = this.b;
    const o = this.off;
    this.off = o + 4;
    return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
  }
  u64(what: string): number {
    const lo = this.u32(what);
    const hi = this.u32(what);
    if (hi >= 2 ** 21) throw new FrameError(`${what} does not fit in 53 bits`);
    return hi * TWO_32 + lo;
  }
  id(what: string): NodeId {
    const v = this.u32(what);
    if (v === 0) throw new FrameError(`${what} is node id 0`);
    return v;
  }
  flag(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw new FrameError(`${what} flag is ${v}`);
    return v === 1;
  }
  /** A copy, so the message never pins the receive buffer. */
  bytes(what: string): Uint8Array {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const out = this.b.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
  /** A view of the next n bytes (no copy). */
  view(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
  text(n: number, what: string): string {
    this.need(n, what);
    const raw = this.b.subarray(this.off, this.off + n);
    this.off += n;
    try {
      return utf8Strict.decode(raw);
    } catch {
      throw new FrameError(`${what} is not UTF-8`);
    }
  }
  string(what: string): string {
    return this.text(this.u32(`${what} length`), what);
  }
  /** A count of items of at least `itemBytes` each: checked against the bytes left before any array grows. */
  count(itemBytes: number, what: string): number {
    const n = this.u32(what);
    if (n * itemBytes > this.b.length - this.off) throw new FrameError(`${what} of ${n} does not fit in the ${this.b.length - this.off} bytes left`);
    return n;
  }
  ids(what: string): NodeId[] {
    const n = this.count(4, what);
    const out: NodeId[] = [];
    for (let i = 0; i < n; i++) out.push(this.id(what));
    return out;
  }
  end(): void {
    if (this.off !== this.b.length) throw new FrameError(`${this.b.length - this.off} bytes after the end of the message`);
  }
}

/** The message in a frame body (without its length prefix). Throws FrameError, and nothing else, on bad bytes. */
export function decodeMessage(body: Uint8Array): Message {
  const r = new Reader(body);
  const version = r.u8("version");
  if (version !== WIRE_VERSION) throw new FrameError(`wire version ${version} (this node speaks ${WIRE_VERSION})`);
  const code = r.u8("type");
  const type = CODE_TYPE[code];
  if (type === undefined) throw new FrameError(`unknown message type ${code}`);
  const from = r.id("from");
  const to = r.id("to");
  const term = r.u64("term");
  let m: Message;
  switch (type) {
    case "append": {
      const logIndex = r.u64("logIndex");
      const logTerm = r.u64("logTerm");
      const commit = r.u64("commit");
      const n = r.count(ENTRY_FIXED_BYTES, "entry count");
      const entries: Entry[] = [];
      for (let i = 0; i < n; i++) {
        const index = r.u64("entry index");
        const eterm = r.u64("entry term");
        const ecode = r.u8("entry type");
        const etype: EntryType | undefined = ecode === 1 ? "normal" : ecode === 2 ? "conf-change" : undefined;
        if (etype === undefined) throw new FrameError(`unknown entry type ${ecode}`);
        entries.push({ index, term: eterm, type: etype, data: r.bytes("entry data") });
      }
      m = { type, from, to, term, logIndex, logTerm, commit, entries };
      break;
    }
    case "append-resp": {
      const index = r.u64("index");
      const reject = r.flag("reject");
      m = { type, from, to, term, index, reject, rejectHint: r.u64("rejectHint"), hintTerm: r.u64("hintTerm") };
      break;
    }
    case "vote":
    case "pre-vote": {
      const lastIndex = r.u64("lastIndex");
      const lastTerm = r.u64("lastTerm");
      m = { type, from, to, term, lastIndex, lastTerm, transfer: r.flag("transfer") };
      break;
    }
    case "vote-resp":
    case "pre-vote-resp":
      m = { type, from, to, term, reject: r.flag("reject") };
      break;
    case "heartbeat": {
      const commit = r.u64("commit");
      const leaderCommit = r.u64("leaderCommit");
      m = { type, from, to, term, commit, leaderCommit, ctx: r.string("ctx") };
      break;
    }
    case "heartbeat-resp":
      m = { type, from, to, term, ctx: r.string("ctx") };
      break;
    case "snapshot": {
      const index = r.u64("snapshot index");
      const sterm = r.u64("snapshot term");
      const voters = r.ids("voters");
      const learners = r.ids("learners");
      const snapshot: Snapshot = { meta: { index, term: sterm, confState: { voters, learners } }, data: r.bytes("snapshot data") };
      m = { type, from, to, term, snapshot };
      break;
    }
    case "timeout-now":
      m = { type, from, to, term };
      break;
  }
  r.end();
  return m;
}

/** The handshake in a frame body. Throws FrameError on bad bytes (another version still decodes: the caller refuses it by name). */
export function decodeHandshake(body: Uint8Array): Handshake {
  const r = new Reader(body);
  const magic = r.u32("magic");
  if (magic !== HANDSHAKE_MAGIC) throw new FrameError(`not a kv peer handshake (magic 0x${magic.toString(16)})`);
  const version = r.u8("version");
  const from = r.id("from");
  const to = r.id("to");
  const n = r.u16("cluster id length");
  if (n > CLUSTER_ID_BYTES_MAX) throw new FrameError(`cluster id of ${n} bytes (at most ${CLUSTER_ID_BYTES_MAX})`);
  const clusterId = r.text(n, "cluster id");
  r.end();
  return { version, clusterId, from, to };
}

/**
 * Splits a byte stream into frame bodies. Memory grows with the bytes received, never with a
 * length field alone: a frame's buffer doubles as its bytes arrive, up to the frame's length,
 * which must be at most `limit` (settable: a connection reads only a handshake-sized frame first).
 */
/** A FrameReader keeps at most this much buffer between frames. */
export const READER_KEEP_BYTES = 1024 * 1024;

export class FrameReader {
  /** Bytes received and not yet returned: `buf[start, end)`. */
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(public limit = FRAME_BYTES_MAX) {}

  /** Bytes buffered (received, not yet returned as a frame). */
  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const have = this.end - this.start;
    if (this.end + chunk.length > this.buf.length) {
      // Grow to what is needed now, at least doubling, but never past the current frame's length.
      let want = Math.max(have + chunk.length, have * 2, 64);
      if (have >= FRAME_HEADER_BYTES) {
        const frame = FRAME_HEADER_BYTES + this.lengthAt(this.start);
        if (frame <= this.limit + FRAME_HEADER_BYTES) want = Math.max(have + chunk.length, Math.min(want, frame));
      }
      if (want <= this.buf.length && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const next = new Uint8Array(want);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.start = 0;
      this.end = have;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  private lengthAt(o: number): number {
    const b = this.buf;
    return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
  }

  /**
   * The next complete frame body (a view, valid until the next push), or undefined until more bytes
   * arrive. Throws FrameError for a length past the limit (the stream cannot be resynchronised).
   */
  next(): Uint8Array | undefined {
    const have = this.end - this.start;
    if (have < FRAME_HEADER_BYTES) return undefined;
    const n = this.lengthAt(this.start);
    if (n > this.limit) throw new FrameError(`frame of ${n} bytes exceeds the limit of ${this.limit}`);
    if (have < FRAME_HEADER_BYTES + n) return undefined;
    const body = this.buf.subarray(this.start + FRAME_HEADER_BYTES, this.start + FRAME_HEADER_BYTES + n);
    this.start += FRAME_HEADER_BYTES + n;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      // Let a buffer grown for one large frame go (the view returned keeps it alive while in use).
      if (this.buf.length > READER_KEEP_BYTES) this.buf = new Uint8Array(0);
    }
    return body;
  }
}

// ---------------------------------------------------------------- snapshot transfer frames
//
// A snapshot too large for one message goes as a stream of chunk frames on the leader's connection
// to the follower, between its other frames; the follower answers on its own connection with one
// ack frame. Both share the message envelope's first two fields (version, type), with type codes
// no Raft message uses:
//   chunk body: [u8 version][u8 type = 11][u32 from][u32 to][u64 term][u64 transfer]
//               [u64 snapshot index][u64 snapshot term][u32 voters][u32 each][u32 learners][u32 each]
//               [u64 offset][u64 totalBytes][u32 checksum of data][u32 dataBytes][data]
//   ack body:   [u8 version][u8 type = 12][u32 from][u32 to][u64 transfer][u64 snapshot index][u8 ok]
// `transfer` names one transfer (a new one starts at offset 0); `data` is the bytes [offset,
// offset + dataBytes) of the snapshot file, `totalBytes` long. The checksum function is the
// caller's (this module does no arithmetic it could get from a native library).

/** Type code of a snapshot chunk frame. */
export const SNAPSHOT_CHUNK_CODE = 11;
/** Type code of a snapshot ack frame. */
export const SNAPSHOT_ACK_CODE = 12;
/** Largest data of one chunk accepted (a sender uses less: see SNAPSHOT_CHUNK_BYTES in the transport). */
export const SNAPSHOT_CHUNK_DATA_MAX = 8 * 1024 * 1024;
/** Largest snapshot file a transfer may announce (4 TiB): a larger total is damage. */
export const SNAPSHOT_TOTAL_BYTES_MAX = 4 * 1024 ** 4;
/** Voters plus learners a chunk may list. */
export const SNAPSHOT_CHUNK_MEMBERS_MAX = 4096;

/** A checksum of a chunk's data (the transport passes CRC-32). */
export type ChunkChecksum = (data: Uint8Array) => number;

export interface SnapshotChunk {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The leader's term when the transfer began. */
  readonly term: number;
  readonly transfer: number;
  readonly meta: SnapshotMeta;
  readonly offset: number;
  readonly totalBytes: number;
  readonly checksum: number;
  /** Decoded: a view into the frame body, valid only until the reader takes more bytes. */
  readonly data: Uint8Array;
}

export interface SnapshotAck {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly transfer: number;
  readonly index: number;
  /** The follower holds the snapshot durably and handed it to Raft (false: it gave up on it). */
  readonly ok: boolean;
}

/** What a frame body holds, from its first two bytes (FrameError for neither). */
export function frameKind(body: Uint8Array): "message" | "snapshot-chunk" | "snapshot-ack" {
  if (body.length < 2) throw new FrameError(`a frame of ${body.length} bytes`);
  if (body[0] !== WIRE_VERSION) throw new FrameError(`wire version ${body[0]} (this node speaks ${WIRE_VERSION})`);
  if (body[1] === SNAPSHOT_CHUNK_CODE) return "snapshot-chunk";
  if (body[1] === SNAPSHOT_ACK_CODE) return "snapshot-ack";
  return "message";
}

function checkChunkFields(c: Omit<SnapshotChunk, "checksum">): void {
  checkId(c.from, "from");
  checkId(c.to, "to");
  checkU64(c.term, "term");
  checkU64(c.transfer, "transfer");
  checkU64(c.meta.index, "snapshot index");
  checkU64(c.meta.term, "snapshot term");
  for (const id of c.meta.confState.voters) checkId(id, "voter");
  for (const id of c.meta.confState.learners) checkId(id, "learner");
  if (c.meta.confState.voters.length + c.meta.confState.learners.length > SNAPSHOT_CHUNK_MEMBERS_MAX) throw new RangeError(`more than ${SNAPSHOT_CHUNK_MEMBERS_MAX} members`);
  checkU64(c.offset, "offset");
  checkU64(c.totalBytes, "totalBytes");
  if (c.totalBytes < 1 || c.totalBytes > SNAPSHOT_TOTAL_BYTES_MAX) throw new RangeError(`a snapshot of ${c.totalBytes} bytes (1..${SNAPSHOT_TOTAL_BYTES_MAX})`);
  if (c.data.length < 1 || c.data.length > SNAPSHOT_CHUNK_DATA_MAX) throw new RangeError(`a chunk of ${c.data.length} bytes (1..${SNAPSHOT_CHUNK_DATA_MAX})`);
  if (c.offset + c.data.length > c.totalBytes) throw new RangeError(`a chunk at ${c.offset} of ${c.data.length} bytes past the snapshot's ${c.totalBytes}`);
}

/** Bytes of a chunk's frame before its data (frame header included): where `encodeSnapshotChunkAround` expects the data. */
export function snapshotChunkDataAt(meta: SnapshotMeta): number {
  const cs = meta.confState;
  return FRAME_HEADER_BYTES + 2 + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 4 * cs.voters.length + 4 + 4 * cs.learners.length + 8 + 8 + 4 + 4;
}

/**
 * Makes a chunk frame in `frame` around its data, already at [snapshotChunkDataAt(meta), +data.length)
 * (`c.data` is that view): writes the fields before it and returns the frame, a view of `frame`'s
 * first bytes. Lets a sender read the file straight into a reused frame buffer.
 */
export function encodeSnapshotChunkAround(frame: Uint8Array, c: Omit<SnapshotChunk, "checksum">, checksum: ChunkChecksum): Uint8Array {
  checkChunkFields(c);
  const at = snapshotChunkDataAt(c.meta);
  if (c.data.buffer !== frame.buffer || c.data.byteOffset !== frame.byteOffset + at) throw new RangeError("the chunk's data is not in place in the frame");
  const cs = c.meta.confState;
  const out = frame.subarray(0, at + c.data.length);
  const w = new Writer(out);
  w.u32(out.length - FRAME_HEADER_BYTES);
  w.u8(WIRE_VERSION);
  w.u8(SNAPSHOT_CHUNK_CODE);
  w.u32(c.from);
  w.u32(c.to);
  w.u64(c.term);
  w.u64(c.transfer);
  w.u64(c.meta.index);
  w.u64(c.meta.term);
  w.u32(cs.voters.length);
  for (const id of cs.voters) w.u32(id);
  w.u32(cs.learners.length);
  for (const id of cs.learners) w.u32(id);
  w.u64(c.offset);
  w.u64(c.totalBytes);
  w.u32(checksum(c.data) >>> 0);
  w.u32(c.data.length);
  if (w.off !== at) throw new RangeError(`encoded ${w.off} bytes before the data, expected ${at}`);
  return out;
}

/** One chunk frame (a copy of `data`). RangeError for fields that cannot be sent (the caller's bug). */
export function encodeSnapshotChunk(c: Omit<SnapshotChunk, "checksum">, checksum: ChunkChecksum): Uint8Array {
  checkChunkFields(c);
  const at = snapshotChunkDataAt(c.meta);
  const frame = new Uint8Array(at + c.data.length);
  frame.set(c.data, at);
  return encodeSnapshotChunkAround(frame, { ...c, data: frame.subarray(at) }, checksum);
}

/**
 * The chunk in a frame body. FrameError, and nothing else, for bad bytes: a wrong type, a field out
 * of range, a chunk past its total, a member listed twice, or data whose checksum differs.
 */
export function decodeSnapshotChunk(body: Uint8Array, checksum: ChunkChecksum): SnapshotChunk {
  const r = new Reader(body);
  const version = r.u8("version");
  if (version !== WIRE_VERSION) throw new FrameError(`wire version ${version} (this node speaks ${WIRE_VERSION})`);
  const code = r.u8("type");
  if (code !== SNAPSHOT_CHUNK_CODE) throw new FrameError(`type ${code} is not a snapshot chunk`);
  const from = r.id("from");
  const to = r.id("to");
  const term = r.u64("term");
  const transfer = r.u64("transfer");
  const index = r.u64("snapshot index");
  const sterm = r.u64("snapshot term");
  const voters = r.ids("voters");
  const learners = r.ids("learners");
  const all = [...voters, ...learners];
  if (all.length > SNAPSHOT_CHUNK_MEMBERS_MAX) throw new FrameError(`${all.length} members (at most ${SNAPSHOT_CHUNK_MEMBERS_MAX})`);
  if (new Set(all).size !== all.length) throw new FrameError("a member is listed twice");
  const offset = r.u64("offset");
  const totalBytes = r.u64("totalBytes");
  if (totalBytes < 1 || totalBytes > SNAPSHOT_TOTAL_BYTES_MAX) throw new FrameError(`a snapshot of ${totalBytes} bytes (1..${SNAPSHOT_TOTAL_BYTES_MAX})`);
  const sum = r.u32("checksum");
  const n = r.u32("data length");
  if (n < 1 || n > SNAPSHOT_CHUNK_DATA_MAX) throw new FrameError(`a chunk of ${n} bytes (1..${SNAPSHOT_CHUNK_DATA_MAX})`);
  if (offset + n > totalBytes) throw new FrameError(`a chunk at ${offset} of ${n} bytes runs past the snapshot's ${totalBytes}`);
  const data = r.view(n, "chunk data");
  r.end();
  const got = checksum(data) >>> 0;
  if (got !== sum) throw new FrameError(`chunk at ${offset}: checksum 0x${got.toString(16)}, frame says 0x${sum.toString(16)}`);
  return { from, to, term, transfer, meta: { index, term: sterm, confState: { voters, learners } }, offset, totalBytes, checksum: sum, data };
}

const ACK_BODY_BYTES = 2 + 4 + 4 + 8 + 8 + 1;

export function encodeSnapshotAck(a: SnapshotAck): Uint8Array {
  checkId(a.from, "from");
  checkId(a.to, "to");
  checkU64(a.transfer, "transfer");
  checkU64(a.index, "snapshot index");
  const w = new Writer(new Uint8Array(FRAME_HEADER_BYTES + ACK_BODY_BYTES));
  w.u32(ACK_BODY_BYTES);
  w.u8(WIRE_VERSION);
  w.u8(SNAPSHOT_ACK_CODE);
  w.u32(a.from);
  w.u32(a.to);
  w.u64(a.transfer);
  w.u64(a.index);
  w.flag(a.ok);
  return w.b;
}

export function decodeSnapshotAck(body: Uint8Array): SnapshotAck {
  const r = new Reader(body);
  const version = r.u8("version");
  if (version !== WIRE_VERSION) throw new FrameError(`wire version ${version} (this node speaks ${WIRE_VERSION})`);
  const code = r.u8("type");
  if (code !== SNAPSHOT_ACK_CODE) throw new FrameError(`type ${code} is not a snapshot ack`);
  const from = r.id("from");
  const to = r.id("to");
  const transfer = r.u64("transfer");
  const index = r.u64("snapshot index");
  const ok = r.flag("ok");
  r.end();
  return { from, to, transfer, index, ok };
}
