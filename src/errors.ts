// Assertions and typed errors shared by every layer. Pure: no I/O.

/** A broken invariant: a bug in kv, never bad outside input. Crashes loudly. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionError(`assertion failed: ${message}`);
}

/** Closes every switch over a discriminated union: a new variant becomes a type error. */
export function assertNever(x: never, what = "value"): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(x)}`);
}

/** Bad bytes from a client. The connection gets `-ERR Protocol error: ...` and is closed. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** A log or snapshot that fails its checks somewhere other than a torn tail. */
export class CorruptLogError extends Error {
  override name = "CorruptLogError";
  constructor(
    message: string,
    readonly file: string,
    readonly offset: number,
    /** What to do about it, where `kv repair` (which cuts at checksum damage) is not the answer. */
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Bad configuration (flags, environment): reported to the user, exit 1. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
