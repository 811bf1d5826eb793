// The one place that imports the logger: tagged consola instances for each layer, printed by a
// reporter of our own so that colour follows the stream each line goes to.
import { createConsola, type ConsolaInstance, type ConsolaReporter, LogLevels, type LogObject } from "consola";
import { formatWithOptions } from "node:util";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";

/**
 * Whether text written to `stream` may carry colour codes: never when NO_COLOR is set (to anything
 * but the empty string) or TERM is dumb; always when FORCE_COLOR is set (and not "0"); else only on
 * a terminal. consola and citty decide once from stdout alone, so logs on stderr sent to a file
 * kept their colour codes and help piped to a file kept citty's.
 */
export function colorEnabled(stream: { isTTY?: boolean }): boolean {
  const env = process.env;
  if ((env.NO_COLOR ?? "") !== "" || env.TERM === "dumb") return false;
  if ((env.FORCE_COLOR ?? "") !== "" && env.FORCE_COLOR !== "0") return true;
  return stream.isTTY === true;
}

const ANSI_SGR = /\x1b\[[0-9;]*m/g;

export function stripColor(text: string): string {
  return text.replace(ANSI_SGR, "");
}

/** `text` without colour codes unless `stream` may have them. */
export function forStream(text: string, stream: { isTTY?: boolean }): string {
  return colorEnabled(stream) ? text : stripColor(text);
}

/** Wraps `text` in an SGR colour when `on`. */
export function paint(on: boolean, code: number, text: string): string {
  return on ? `\x1b[${code}m${text}\x1b[39m` : text;
}

const RED = 31;
const YELLOW = 33;
const CYAN = 36;
const GRAY = 90;

const LABELS: Record<number, [string, number]> = {
  0: ["error", RED],
  1: ["warn", YELLOW],
  2: ["", CYAN],
  3: ["", CYAN],
  4: ["debug", GRAY],
  5: ["trace", GRAY],
};

/** An Error as one line (`Name: message`); its stack only when debugging. */
function describeArg(a: unknown): unknown {
  if (!(a instanceof Error)) return a;
  return isDebug() && a.stack !== undefined ? a.stack : `${a.name}: ${a.message}`;
}

/**
 * One line per message: `[tag] level: text`, to stderr for errors and warnings, stdout for the
 * rest (as consola does). Colour only where the stream allows it.
 */
const reporter: ConsolaReporter = {
  log(obj: LogObject) {
    const stream = obj.level < 2 ? process.stderr : process.stdout;
    const color = colorEnabled(stream);
    const [label, code] = LABELS[obj.level] ?? ["", GRAY];
    const text = formatWithOptions({ colors: color }, ...obj.args.map(describeArg));
    const tag = obj.tag === "" ? "" : paint(color, GRAY, `[${obj.tag}]`) + " ";
    const head = label === "" ? "" : paint(color, code, `${label}:`) + " ";
    stream.write(`${tag}${head}${text}\n`);
  },
};

const root: ConsolaInstance = createConsola({ level: LogLevels.info, reporters: [reporter] });
// consola's withTag copies the level at creation, so children must be updated when the level
// changes later (from --log-level). One child per tag: callers may ask for theirs per message.
const children = new Map<string, ConsolaInstance>();

export function setLogLevel(name: LogLevelName): void {
  root.level = LogLevels[name];
  for (const c of children.values()) c.level = root.level;
}

/** Whether --log-level asked for debug output (stacks of errors are printed only then). */
export function isDebug(): boolean {
  return root.level >= LogLevels.debug;
}

export function logger(tag: string): ConsolaInstance {
  let child = children.get(tag);
  if (child === undefined) {
    child = root.withTag(tag);
    children.set(tag, child);
  }
  return child;
}

export const log = root;
