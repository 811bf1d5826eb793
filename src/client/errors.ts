// Typed client errors with stable codes and cause chains. Match on `instanceof` or `code`, never on text.

/** Stable error codes; part of the public API. */
export type ClientErrorCode =
  | "KV_CONNECTION" // could not connect, or the connection broke before the call was sent
  | "KV_TIMEOUT" // the call's deadline passed
  | "KV_SERVER" // the server answered with an error reply
  | "KV_OUTCOME_UNKNOWN" // the connection broke after a write was sent: it may or may not have been applied
  | "KV_CLOSED" // the client was closed
  | "KV_PROTOCOL"; // the server sent bytes that are not valid RESP

/** The base of every error the client rejects with. */
export class ClientError extends Error {
  override name = "ClientError";
  readonly code: ClientErrorCode;
  /**
   * True when the command may have been applied by the server (a write that was sent and
   * whose reply never came). False when it is known not to have been applied.
   */
  readonly outcomeUnknown: boolean;

  constructor(code: ClientErrorCode, message: string, opts: { cause?: unknown; outcomeUnknown?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.outcomeUnknown = opts.outcomeUnknown ?? false;
  }
}

/** Could not reach any server, or the connection broke before the call was written. Not applied. */
export class ConnectionError extends ClientError {
  override name = "ConnectionError";
  constructor(
    message: string,
    /** The address (`host:port`) involved, when one is. */
    readonly addr?: string,
    cause?: unknown,
  ) {
    super("KV_CONNECTION", message, { cause });
  }
}

/** The call's deadline (`timeoutMs`) passed. `outcomeUnknown` tells whether a write may have been applied. */
export class TimeoutError extends ClientError {
  override name = "TimeoutError";
  constructor(
    message: string,
    readonly timeoutMs: number,
    opts: { cause?: unknown; outcomeUnknown?: boolean } = {},
  ) {
    super("KV_TIMEOUT", message, opts);
  }
}

/**
 * An error reply from the server. `prefix` is Redis's error code: the first word of the
 * reply (`ERR`, `WRONGTYPE`, `MOVED`, `CLUSTERDOWN`, `TRYAGAIN`, `LOADING`, `NOQUORUM`...).
 */
export class ServerError extends ClientError {
  override name = "ServerError";
  readonly prefix: string;
  constructor(
    /** The whole error line, e.g. `ERR value is not an integer or out of range`. */
    readonly reply: string,
    opts: { cause?: unknown } = {},
  ) {
    super("KV_SERVER", reply, opts);
    const sp = reply.indexOf(" ");
    this.prefix = sp === -1 ? reply : reply.slice(0, sp);
  }
}

/**
 * The connection broke (or the server said so) after a write was sent and before its reply
 * came: the write may or may not have been applied. Never retried by the client. The
 * `cause` is the ConnectionError (or server error) that made the outcome unknown.
 */
export class OutcomeUnknownError extends ClientError {
  override name = "OutcomeUnknownError";
  constructor(message: string, cause?: unknown) {
    super("KV_OUTCOME_UNKNOWN", message, { cause, outcomeUnknown: true });
  }
}

/** The client was closed before the call could complete. */
export class ClientClosedError extends ClientError {
  override name = "ClientClosedError";
  constructor(message = "client is closed", opts: { outcomeUnknown?: boolean } = {}) {
    super("KV_CLOSED", message, opts);
  }
}

/** The server sent malformed RESP; the connection is dropped. */
export class ReplyProtocolError extends ClientError {
  override name = "ReplyProtocolError";
  constructor(message: string, cause?: unknown, outcomeUnknown = false) {
    super("KV_PROTOCOL", message, { cause, outcomeUnknown });
  }
}
