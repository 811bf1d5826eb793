// `kv repair`: cut the WAL at its first bad record and report exactly what was dropped.
import { join } from "node:path";
import { nodeIo, type StorageIo } from "./io.ts";
import { lockDataDir } from "./lock.ts";
import { allZeroFrom, countValidFrom, parseSegmentName, scanSegment, WAL_DIR, zeroRunStart } from "./segment.ts";
import { dataDirError, describeDropped } from "./wal.ts";

export interface RepairReport {
  /** True when the log was already clean: nothing was changed. */
  clean: boolean;
  /** Where the log was cut, if it was. */
  cut: { file: string; offset: number; reason: string; bytesDropped: number } | undefined;
  /** Whole segments removed because they came after the cut. */
  deletedSegments: { file: string; bytes: number; validRecords: number }[];
  /** Records with a good checksum that were dropped (they came after the damage). */
  validRecordsDropped: number;
  /** Total bytes removed from the log. */
  bytesDropped: number;
  /** Zero bytes at the end of what was cut (unused preallocated space), included in bytesDropped. */
  zeroTailBytes: number;
  /** The log now ends at this index (0 when empty). */
  lastIndexKept: number;
  /** The report as lines for the CLI. */
  lines: string[];
}

/**
 * Truncates the WAL in dataDir at the first record that fails its checks (or the first gap between
 * segments), deletes every later segment, fsyncs, and reports what was dropped. Refuses (DataDirError)
 * while a live kv process holds the data dir's LOCK. Records after the cut are lost: on a Raft member they come back from the leader.
 */
export function repairWal(dataDir: string, io: StorageIo = nodeIo): RepairReport {
  // Never under a running node: the LOCK is refused while its owner lives.
  const lock = lockDataDir(dataDir);
  try {
    return repairLocked(dataDir, io);
  } finally {
    lock.release();
  }
}

function repairLocked(dataDir: string, io: StorageIo): RepairReport {
  const dir = join(dataDir, WAL_DIR);
  let names: { name: string; first: number }[];
  try {
    names = io
      .readdir(dir)
      .map((name) => ({ name, first: parseSegmentName(name) }))
      .filter((s): s is { name: string; first: number } => s.first !== undefined)
      .sort((a, b) => a.first - b.first);
  } catch (e) {
    throw dataDirError(e, dir, "read");
  }
  const report: RepairReport = { clean: true, cut: undefined, deletedSegments: [], validRecordsDropped: 0, bytesDropped: 0, zeroTailBytes: 0, lastIndexKept: 0, lines: [] };
  let prevLast: number | undefined;
  let prevTerm = 0;
  let cutAt = -1; // index into names of the first segment to delete entirely
  for (let i = 0; i < names.length; i++) {
    const { name, first } = names[i]!;
    const path = join(dir, name);
    const bytes = readAll(io, path);
    if (prevLast !== undefined && first !== prevLast + 1) {
      report.lines.push(`${WAL_DIR}/${name}: starts at index ${first}, expected ${prevLast + 1} (gap): dropping it and every later segment`);
      cutAt = i;
      break;
    }
    const scan = scanSegment(bytes, name, first, prevTerm);
    prevLast = first + scan.offsets.length - 1;
    if (scan.terms.length > 0) prevTerm = scan.terms.last()!;
    const isLast = i === names.length - 1;
    if (scan.problem && isLast && scan.problem.kind === "zero" && allZeroFrom(bytes, scan.problem.offset)) {
      // Zeros to the end of the last segment: preallocated space, no records lost. Leave it.
      report.lines.push(`${WAL_DIR}/${name}: ${bytes.length - scan.problem.offset} zero bytes after the last record (preallocated space): kept`);
    } else if (scan.problem) {
      const p = scan.problem;
      const dropped = bytes.length - p.offset;
      const zeros = bytes.length - Math.max(p.offset, zeroRunStart(bytes));
      const valid = countValidFrom(bytes, p.offset, p.expectedIndex);
      const fd = io.openAppend(path);
      try {
        io.truncate(fd, p.offset);
        io.fsyncSync(fd);
      } finally {
        io.close(fd);
      }
      report.cut = { file: `${WAL_DIR}/${name}`, offset: p.offset, reason: p.detail, bytesDropped: dropped };
      report.validRecordsDropped += valid;
      report.bytesDropped += dropped;
      report.zeroTailBytes += zeros;
      report.lines.push(
        `${WAL_DIR}/${name}: ${p.detail} at offset ${p.offset} (index ${p.expectedIndex}): truncated, dropping ` +
          describeDropped(dropped, zeros, `index ${p.expectedIndex} on; ${valid} record${valid === 1 ? "" : "s"} with a good checksum after the damage`),
      );
      cutAt = i + 1;
      break;
    }
  }
  if (cutAt >= 0) {
    report.clean = false;
    for (const { name, first } of names.slice(cutAt)) {
      const path = join(dir, name);
      const bytes = readAll(io, path);
      const valid = countValidFrom(bytes, 0, first);
      io.unlink(path);
      report.deletedSegments.push({ file: `${WAL_DIR}/${name}`, bytes: bytes.length, validRecords: valid });
      report.validRecordsDropped += valid;
      report.bytesDropped += bytes.length;
      report.zeroTailBytes += bytes.length - zeroRunStart(bytes);
      report.lines.push(`${WAL_DIR}/${name}: deleted (${bytes.length} bytes, ${valid} valid records)`);
    }
    io.fsyncDir(dir);
  }
  report.lastIndexKept = prevLast ?? 0;
  report.lines.push(
    report.clean
      ? `log is clean: ${names.length} segment(s), last index ${report.lastIndexKept}; nothing changed`
      : `repaired: the log now ends at index ${report.lastIndexKept}; dropped ${describeDropped(report.bytesDropped, report.zeroTailBytes, `${report.validRecordsDropped} valid record(s) among them`)}`,
  );
  return report;
}

function readAll(io: StorageIo, path: string): Uint8Array {
  const fd = io.openRead(path);
  try {
    const size = io.fileSize(fd);
    const buf = new Uint8Array(size);
    io.read(fd, buf, 0, size, 0);
    return buf;
  } finally {
    io.close(fd);
  }
}
