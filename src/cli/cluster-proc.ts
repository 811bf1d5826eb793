// Finding and stopping the processes of a local cluster: the live `kv serve` on a data dir is the
// pid in its LOCK file (src/storage/lock.ts), checked against /proc so that a pid reused by an
// unrelated process is never signalled; the pid recorded at launch is only a second candidate
// (a node restarted by hand has another).
import { readFileSync, readlinkSync, realpathSync } from "node:fs";
import { join, resolve } from "node:path";
import { isAlive } from "../storage/lock.ts";

export { isAlive };

/** Seconds `down` (and Ctrl-C) waits after SIGTERM before SIGKILL, by default: serve's --shutdown-timeout default (10) plus margin. */
export const STOP_TIMEOUT_S_DEFAULT = 15;
/** How long a SIGKILLed process may take to be gone before it is reported stuck. */
const KILL_WAIT_MS = 5_000;
const POLL_MS = 50;

/** The pid in DIR/LOCK, or undefined (no LOCK, or none written in it). */
export function lockPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, "LOCK"), "latin1");
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** The --data-dir a `kv serve` command line names (its last one, as citty reads it), or serve's default. */
export function dataDirOfArgv(argv: readonly string[]): string | undefined {
  if (!argv.includes("serve")) return undefined;
  let dir = "./data";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--data-dir" && i + 1 < argv.length) dir = argv[++i]!;
    else if (a.startsWith("--data-dir=")) dir = a.slice("--data-dir=".length);
  }
  return dir;
}

/**
 * Whether `pid` is a live `kv serve` on `dataDir`: its command line (/proc/PID/cmdline) runs serve
 * with a --data-dir that, from its working directory, is this one. Where /proc cannot be read,
 * a live pid counts (the LOCK file is written by kv alone).
 */
export function servesDataDir(pid: number, dataDir: string): boolean {
  if (!isAlive(pid)) return false;
  let cmdline: string;
  let cwd: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch (e) {
    const code = (e as { code?: string }).code;
    // No /proc on this system: trust the pid. Gone meanwhile, or another user's: not ours to signal.
    return code === "ENOENT" && !procAvailable();
  }
  const argv = cmdline.split("\0");
  if (argv.at(-1) === "") argv.pop();
  const dir = dataDirOfArgv(argv);
  return dir !== undefined && realOr(resolve(cwd, dir)) === realOr(dataDir);
}

function procAvailable(): boolean {
  try {
    readlinkSync("/proc/self/cwd");
    return true;
  } catch {
    return false;
  }
}

/** The live kv processes on `dataDir`: its LOCK's pid and the pid recorded at launch, each checked. */
export function nodePids(dataDir: string, recorded?: number): number[] {
  const out: number[] = [];
  for (const pid of [lockPid(dataDir), recorded]) {
    if (pid === undefined || pid <= 0 || out.includes(pid) || pid === process.pid) continue;
    if (servesDataDir(pid, dataDir)) out.push(pid);
  }
  return out;
}

export interface StopTarget {
  name: string;
  pid: number;
}

export interface StopResult {
  /** Gone after SIGTERM. */
  stopped: StopTarget[];
  /** Needed SIGKILL, and are gone. */
  killed: StopTarget[];
  /** Still there after SIGKILL (or not ours to signal). */
  stuck: StopTarget[];
}

async function waitGone(targets: readonly StopTarget[], deadline: number): Promise<StopTarget[]> {
  let left = targets.filter((t) => isAlive(t.pid));
  while (left.length > 0 && Date.now() < deadline) {
    await Bun.sleep(POLL_MS);
    left = left.filter((t) => isAlive(t.pid));
  }
  return left;
}

function signal(t: StopTarget, sig: NodeJS.Signals): boolean {
  try {
    process.kill(t.pid, sig);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "ESRCH"; // already gone: fine
  }
}

/**
 * SIGTERM to each target, waits up to `timeoutMs` for all to be gone, then SIGKILL to the rest
 * (each reported through `say`) and waits again, bounded.
 */
export async function stopAll(targets: readonly StopTarget[], timeoutMs: number, say: (line: string) => void): Promise<StopResult> {
  const stuck: StopTarget[] = [];
  const sent = targets.filter((t) => {
    if (signal(t, "SIGTERM")) return true;
    say(`${t.name}: cannot signal pid ${t.pid} (permission denied)`);
    stuck.push(t);
    return false;
  });
  const late = await waitGone(sent, Date.now() + timeoutMs);
  for (const t of late) {
    say(`${t.name}: pid ${t.pid} did not exit within ${Math.round(timeoutMs / 1000)} s of SIGTERM: sending SIGKILL`);
    signal(t, "SIGKILL");
  }
  const left = await waitGone(late, Date.now() + KILL_WAIT_MS);
  for (const t of left) say(`${t.name}: pid ${t.pid} is still there after SIGKILL`);
  stuck.push(...left);
  return { stopped: sent.filter((t) => !late.includes(t)), killed: late.filter((t) => !left.includes(t)), stuck };
}

/** Why 127.0.0.1:`port` cannot be listened on, or null when it can (a listen there succeeds). */
export function portProblem(port: number): string | null {
  try {
    const l = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
    l.stop(true);
    return null;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EADDRINUSE") return "in use by another process";
    if (code === "EACCES") return "not allowed (ports below 1024 need privileges)";
    return (e as Error).message;
  }
}
