// The one way kv reports a failure it cannot go on from (a bad flag, a damaged log, a locked data
// dir, a taken port, a bug): the message, the file and offset where it applies, a hint, and the
// stack only at --log-level debug. Left to the runtime, an uncaught error in the compiled binary
// prints kilobytes of minified bundle source before its message.
import { ConfigError, CorruptLogError } from "../errors.ts";
import { colorEnabled, isDebug, paint, stripColor } from "../log.ts";
import { DataDirError } from "../storage/index.ts";

export interface FailureDetail {
  /** The file the failure is about, and the byte offset in it when one is known. */
  file?: string;
  offset?: number;
  /** What the operator can do about it. */
  hint?: string;
  /** 1 unless said otherwise; 2 for data that kv refuses to start on; 70 for a bug. */
  exitCode?: number;
}

/** A failure to start (or to go on) that the operator can act on: reported without a stack. */
export class StartupError extends Error {
  override name = "StartupError";
  constructor(
    message: string,
    readonly detail: FailureDetail = {},
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

function helpHint(command: string): string {
  return command === "" ? "see kv --help" : `see kv ${command} --help`;
}

/** What the process reports for `e`: one message plus where and what to do. */
export function describeFailure(e: unknown, command: string): { message: string; detail: FailureDetail } {
  if (e instanceof StartupError) return { message: e.message, detail: e.detail };
  if (e instanceof CorruptLogError) {
    return { message: e.message, detail: { file: e.file, offset: e.offset, hint: e.hint ?? "kv repair --data-dir DIR cuts the log at the damage and reports what it drops", exitCode: 2 } };
  }
  if (e instanceof ConfigError) return { message: e.message, detail: { hint: helpHint(command) } };
  if (e instanceof DataDirError) return { message: e.message, detail: { file: e.path } };
  if (e instanceof Error && e.name === "CLIError") {
    // citty's usage errors; for a missing or unknown subcommand, the root's help lists them.
    const code = (e as { code?: string }).code;
    const noCommand = code === "E_NO_COMMAND" || code === "E_UNKNOWN_COMMAND";
    return { message: e.message, detail: { hint: helpHint(noCommand ? "" : command) } };
  }
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return {
    message: `internal error: ${what}`,
    // 70 (EX_SOFTWARE), as the server's own crash on a broken invariant.
    detail: { hint: "this is a bug in kv (or damage its checks did not catch); run again with --log-level debug for the stack, and report it", exitCode: 70 },
  };
}

/** The report as printed: `error: message`, then `  file:` and `  hint:` lines; colour only on a terminal. */
export function formatFailure(e: unknown, command: string, debug: boolean, color: boolean): string {
  const { message, detail } = describeFailure(e, command);
  const lines = [`${paint(color, 31, "error:")} ${color ? message : stripColor(message)}`];
  if (detail.file !== undefined) lines.push(`  file: ${detail.file}${detail.offset === undefined ? "" : `, offset ${detail.offset}`}`);
  if (detail.hint !== undefined) lines.push(`  hint: ${detail.hint}`);
  if (debug && e instanceof Error && e.stack !== undefined) lines.push(e.stack);
  return lines.join("\n") + "\n";
}

/** Whether the command line asks for debug logging (for failures before the level is set). */
function debugRequested(rawArgs: readonly string[]): boolean {
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    const v = a === "--log-level" ? rawArgs[i + 1] : a.startsWith("--log-level=") ? a.slice("--log-level=".length) : undefined;
    if (v === "debug" || v === "trace") return true;
  }
  return false;
}

/** Prints the report for `e` to stderr and exits non-zero. */
export function exitWithFailure(e: unknown, rawArgs: readonly string[]): never {
  const command = rawArgs.find((a) => !a.startsWith("-")) ?? "";
  const text = formatFailure(e, command, isDebug() || debugRequested(rawArgs), colorEnabled(process.stderr));
  process.stderr.write(text);
  process.exit(describeFailure(e, command).detail.exitCode ?? 1);
}

/** Routes errors nobody caught (a throw in a callback, a rejected promise) to the same report. */
export function installFailureHandlers(rawArgs: readonly string[]): void {
  process.on("uncaughtException", (e) => exitWithFailure(e, rawArgs));
  process.on("unhandledRejection", (e) => exitWithFailure(e, rawArgs));
}
