// Shared helpers for storage tests: temp data dirs and record builders.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LogRecord, RecordType } from "../../src/storage/codec.ts";

const dirs: string[] = [];

export function tempDir(prefix = "kv-storage-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function cleanupTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function rec(index: number, term = 1, payload: string | Uint8Array = `cmd-${index}`): LogRecord {
  return {
    index,
    term,
    type: RecordType.Command,
    timestampMs: 1_700_000_000_000 + index,
    payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
  };
}

export function recs(from: number, to: number, term = 1, size?: number): LogRecord[] {
  const out: LogRecord[] = [];
  for (let i = from; i <= to; i++) out.push(rec(i, term, size === undefined ? `cmd-${i}-${"x".repeat(i % 7)}` : "p".repeat(size)));
  return out;
}

export function text(r: LogRecord): string {
  return new TextDecoder().decode(r.payload);
}

export function walFiles(dataDir: string): string[] {
  return readdirSync(join(dataDir, "wal")).filter((n) => n.endsWith(".seg")).sort();
}

export function readSeg(dataDir: string, name: string): Buffer {
  return readFileSync(join(dataDir, "wal", name));
}

export function writeSeg(dataDir: string, name: string, bytes: Uint8Array): void {
  writeFileSync(join(dataDir, "wal", name), bytes);
}
