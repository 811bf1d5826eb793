// What an operator sees from the compiled ./kv: startup failures as a short report (message, file
// and offset, hint; the stack only at --log-level debug), no colour codes where output is not a
// terminal, a taken port named as such, and `help` at the kv cli prompt answered locally.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeFailure, formatFailure } from "../../src/cli/fatal.ts";
import { decodeAt, encodeRecords, RecordType } from "../../src/storage/codec.ts";
import { decodeKvPayload } from "../../src/node/kv-payload.ts";
import { startFake } from "../client/_fake.ts";
import { KV_BIN, startKv } from "../helpers/server.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-operator-");

/** The environment of a user's shell: no NO_COLOR, no FORCE_COLOR (tests/helpers/server.ts sets NO_COLOR). */
function userEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "NO_COLOR" && k !== "FORCE_COLOR" && k !== "CI") env[k] = v;
  return { ...env, TERM: "xterm-256color", ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs ./kv with both streams piped (bounded: killed after 10 s). */
async function run(args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const p = Bun.spawn([KV_BIN, ...args], { stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]), stdout: "pipe", stderr: "pipe", env: opts.env ?? userEnv() });
  const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(killer);
  return { code, stdout, stderr };
}

/** Runs a shell line on a pseudo-terminal (stdin, stdout and stderr are the terminal); returns what it printed. */
async function onTerminal(line: string, env: Record<string, string>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let eof = () => {};
  const drained = new Promise<void>((resolve) => (eof = resolve));
  const p = Bun.spawn(["sh", "-c", line], { env, terminal: { cols: 120, rows: 40, data: (_t, d) => chunks.push(new Uint8Array(d)), exit: () => eof() } });
  const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
  await p.exited;
  // Everything the program wrote has been read once the terminal reports end of file (bounded).
  await Promise.race([drained, Bun.sleep(5_000)]);
  clearTimeout(killer);
  p.terminal?.close();
  return Buffer.concat(chunks).toString("utf8");
}

const ESC = "\x1b";

/** What a failure report must not look like: the runtime's dump of the bundle around the throw. */
function expectShortReport(text: string): void {
  expect(text.length).toBeLessThan(1200);
  expect(text).not.toContain("/$bunfs/");
  expect(text).not.toMatch(/^\s*\d+ \| /m); // a numbered source line
  expect(text).not.toMatch(/^\s+at /m); // a stack frame
}

/**
 * A data dir written by kv (SET a b, then SET x 1) whose entry of SET x 1 is replaced by one with
 * a good checksum whose payload is not a kv entry (an unknown payload version: damage the checksum
 * did not catch, or a newer kv's entry). Returns the dir, the damaged entry's index and offset.
 */
async function logWithForeignEntry(): Promise<{ dir: string; seg: string; index: number; offset: number }> {
  const dir = tempDir();
  const kv = await startKv(["--fsync", "always"], { dataDir: dir });
  for (const argv of [["set", "a", "b"], ["set", "x", "1"]]) {
    const r = await run([...argv, "--addr", `127.0.0.1:${kv.port}`]);
    expect(r.stdout.trim()).toBe("OK");
  }
  expect(await kv.stop({ keepData: true })).toBe(0);
  const segs = readdirSync(join(dir, "wal")).filter((f) => f.endsWith(".seg")).sort();
  const seg = join(dir, "wal", segs[segs.length - 1]!);
  const bytes = new Uint8Array(readFileSync(seg));
  for (let off = 0; off < bytes.length; ) {
    const d = decodeAt(bytes, off);
    if (d.kind !== "ok") break;
    const r = d.record;
    if (r.type === RecordType.Command) {
      const p = decodeKvPayload(r.payload);
      if (p.kind === "command" && p.argv[1] === "x") {
        const payload = Uint8Array.from(r.payload);
        payload[0] = 99; // the payload's version byte
        const rec = encodeRecords([{ ...r, payload }]);
        expect(rec.length).toBe(d.next - off);
        bytes.set(rec, off);
        writeFileSync(seg, bytes);
        return { dir, seg, index: r.index, offset: off };
      }
    }
    off = d.next;
  }
  throw new Error(`no entry of SET x 1 in ${seg}`);
}

describe("startup failures", () => {
  test("a log entry with a good checksum that is not a kv entry: named with its file and offset, a hint that works (kv repair would keep it), exit 2; the stack at --log-level debug", async () => {
    const { dir, seg, index, offset } = await logWithForeignEntry();
    const r = await run(["serve", "--port", "0", "--data-dir", dir]);
    expect(r.code, r.stderr).toBe(2);
    expectShortReport(r.stdout + r.stderr);
    expect(r.stderr).toMatch(
      new RegExp(`^error: the data in .* is damaged; kv will not start on it: log entry ${index} has a good checksum but is not a kv entry \\(entry payload version 99 \\(this node reads 1\\)\\)$`, "m"),
    );
    expect(r.stderr).toContain(`file: ${seg}, offset ${offset}`);
    // kv repair cuts only at checksum damage and would keep this entry: the hint says what does work.
    expect(r.stderr).toMatch(/^ {2}hint: kv repair cuts the log only at checksum damage, so it keeps this entry; .*truncate -s OFFSET FILE/m);
    const repair = await run(["repair", "--data-dir", dir]);
    expect(repair.stdout + repair.stderr).toMatch(/clean/);
    // Following the hint on a copy: the node starts with what came before the record.
    const copy = tempDir();
    cpSync(dir, copy, { recursive: true });
    truncateSync(join(copy, "wal", seg.slice(seg.lastIndexOf("/") + 1)), offset);
    const kv = await startKv([], { dataDir: copy });
    const got = await run(["get", "a", "--addr", `127.0.0.1:${kv.port}`]);
    expect(got.stdout.trim()).toBe("b");
    expect(await kv.stop({ keepData: true })).toBe(0);

    const d = await run(["serve", "--port", "0", "--data-dir", dir, "--log-level", "debug"]);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(new RegExp(`^error: .*log entry ${index} has a good checksum`, "m"));
    expect(d.stderr).toMatch(/^\s+at /m);
    expect(d.stderr).not.toMatch(/^\s*\d+ \| /m);
  });

  test("an error nobody expected is reported as a bug: internal error, a hint to report it, exit 70; the stack only when debugging", () => {
    const e = new TypeError("x is not a function");
    expect(describeFailure(e, "serve")).toEqual({
      message: "internal error: TypeError: x is not a function",
      detail: { hint: expect.stringContaining("--log-level debug") as unknown as string, exitCode: 70 },
    });
    expect(formatFailure(e, "serve", false, false)).not.toContain("    at ");
    expect(formatFailure(e, "serve", true, false)).toContain("    at ");
  });

  test("a damaged log: the message, the file and offset, the repair hint; exit 2", async () => {
    const dir = tempDir();
    const kv = await startKv([], { dataDir: dir });
    for (let i = 0; i < 20; i++) expect((await run(["set", `k${i}`, `v${i}`, "--addr", `127.0.0.1:${kv.port}`])).code).toBe(0);
    expect(await kv.stop({ keepData: true })).toBe(0);
    const seg = join(dir, "wal", readdirSync(join(dir, "wal")).sort()[0]!);
    const bytes = readFileSync(seg);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = bytes[mid]! ^ 0x40;
    writeFileSync(seg, bytes);

    const r = await run(["serve", "--port", "0", "--data-dir", dir]);
    expect(r.code).toBe(2);
    expectShortReport(r.stdout + r.stderr);
    expect(r.stderr).toMatch(/^error: .*damaged/m);
    expect(r.stderr).toMatch(new RegExp(`^ {2}file: ${seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, offset \\d+$`, "m"));
    expect(r.stderr).toContain(`  hint: to cut the log at the damage and see exactly what is dropped: kv repair --data-dir ${dir}`);
  });

  test("a bad flag value (a log segment size below the minimum) is a one-line error with a pointer to --help", async () => {
    const r = await run(["serve", "--port", "0", "--data-dir", tempDir(), "--wal-segment-bytes", "0"]);
    expect(r.code).toBe(1);
    expectShortReport(r.stdout + r.stderr);
    expect(r.stderr).toBe("error: --wal-segment-bytes: 0 is below the minimum, 64\n  hint: see kv serve --help\n");
  });

  test("a locked data dir names the process that holds it", async () => {
    const dir = tempDir();
    const kv = await startKv([], { dataDir: dir });
    const r = await run(["serve", "--port", "0", "--data-dir", dir]);
    expect(r.code).toBe(1);
    expectShortReport(r.stdout + r.stderr);
    expect(r.stderr).toMatch(new RegExp(`^error: cannot use data dir .*in use by another kv process \\(pid ${kv.proc.pid}\\)`, "m"));
    await kv.stop({ keepData: true });
  });

  test("a taken port is named, with 'address already in use' and what to do", async () => {
    const kv = await startKv();
    const r = await run(["serve", "--port", String(kv.port), "--host", "127.0.0.1", "--data-dir", tempDir()]);
    expect(r.code).toBe(1);
    expectShortReport(r.stdout + r.stderr);
    expect(r.stderr).toContain(`error: cannot listen on 127.0.0.1:${kv.port}: address already in use (is another kv or redis-server running? pick another --port)`);
    await kv.stop();
  });
});

describe("colour", () => {
  test("help, usage errors and failure reports carry no colour codes when piped", async () => {
    const cases: [string[], number, RegExp][] = [
      [["--help"], 0, /USAGE kv serve\|repair\|cluster\|backup\|restore\|get/],
      [["cluster", "up", "--help"], 0, /USAGE kv cluster up \[OPTIONS\] \[NODES\][\s\S]*--base-port/],
      [["serve", "--help"], 0, /USAGE kv serve \[OPTIONS\][\s\S]*--wal-segment-bytes/],
      [["get", "-h"], 0, /USAGE kv get \[OPTIONS\] <KEY>/],
      [["cli", "--help"], 0, /USAGE kv cli/],
      [["nosuchcommand"], 1, /error: Unknown command nosuchcommand/],
      [["serve", "--fsync", "bogus"], 1, /error: Invalid value for argument: --fsync \(bogus\)/],
      [["serve", "--data-dir", tempDir(), "--wal-segment-bytes", "1"], 1, /error: --wal-segment-bytes: 1 is below the minimum/],
    ];
    for (const [args, code, shows] of cases) {
      const r = await run(args);
      expect({ args, code: r.code, shows: shows.test(r.stdout + r.stderr) }).toEqual({ args, code, shows: true });
      expect({ args, out: r.stdout.includes(ESC), err: r.stderr.includes(ESC) }).toEqual({ args, out: false, err: false });
    }
  });

  test("on a terminal help is coloured, unless NO_COLOR is set (to any value)", async () => {
    expect(await onTerminal(`${KV_BIN} serve --help`, userEnv())).toContain(ESC);
    for (const v of ["1", "true"]) expect(await onTerminal(`${KV_BIN} serve --help`, userEnv({ NO_COLOR: v }))).not.toContain(ESC);
  });

  test("logs written to a file carry no colour codes while stdout is a terminal", async () => {
    // A damaged newest snapshot makes the node warn at start (on stderr, sent to a file here).
    const dir = tempDir();
    const kv = await startKv([], { dataDir: dir });
    expect((await run(["cli", "SAVE", "--addr", `127.0.0.1:${kv.port}`])).stdout).toBe("OK\n");
    expect(await kv.stop({ keepData: true })).toBe(0);
    const snap = join(dir, "snap", readdirSync(join(dir, "snap")).find((f) => f.endsWith(".snap"))!);
    writeFileSync(snap, "x");
    const errFile = join(tempDir(), "stderr.txt");
    // A taken port ends the run right after recovery, warnings included: the port of a running fake.
    const fake = startFake(() => "+OK\r\n");
    try {
      const shown = await onTerminal(`${KV_BIN} serve --port ${fake.port} --host 127.0.0.1 --data-dir ${dir} 2>${errFile}`, userEnv());
      expect(shown).toContain("loaded");
    } finally {
      fake.stop();
    }
    const logged = readFileSync(errFile, "utf8");
    expect(logged).toContain("unusable");
    expect(logged.includes(ESC)).toBe(false);
    expect(logged).toContain("address already in use");
  });
});

describe("kv cli prompt", () => {
  test("help and help <command> are answered by the prompt and never sent to the server", async () => {
    const fake = startFake((argv) => (argv[0]!.toLowerCase() === "ping" ? "+PONG\r\n" : "-ERR unknown command\r\n"));
    try {
      const r = await run(["cli", "--addr", fake.addr], { stdin: "help\nhelp set\nHELP GETEX\nhelp nosuch\nping\n", env: userEnv({ NO_COLOR: "1" }) });
      expect(r.code).toBe(0);
      expect(fake.log.map((c) => c.argv[0]!.toLowerCase())).not.toContain("help");
      expect(fake.log.at(-1)!.argv).toEqual(["ping"]);
      expect(r.stdout).toContain("help <command>");
      expect(r.stdout).toMatch(/^ {2}GET SET /m);
      expect(r.stdout).toContain("  SET key value [NX | XX] [GET] [EX seconds");
      expect(r.stdout).toContain("  GETEX key [EX seconds");
      expect(r.stdout).toContain("no help for 'nosuch'");
      expect(r.stdout.endsWith("PONG\n")).toBe(true);
    } finally {
      fake.stop();
    }
  });
});
