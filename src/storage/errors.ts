// Typed storage errors: what the server turns into replies (`-MISCONF`-like) or startup failures.
export { CorruptLogError } from "../errors.ts";

export type StorageOp = "open" | "write" | "fsync" | "create" | "truncate" | "delete" | "rename";

/**
 * A write, fsync or file operation failed. The records in the failing batch (and everything
 * queued behind it) are NOT durable and must not be acknowledged. `code` is the errno name
 * (ENOSPC, EIO, EROFS...).
 */
export class StorageIoError extends Error {
  override name = "StorageIoError";
  readonly code: string | undefined;
  constructor(
    readonly op: StorageOp,
    readonly path: string,
    override readonly cause: unknown,
  ) {
    const code = (cause as { code?: string } | undefined)?.code;
    super(`${op} failed on ${path}: ${code ?? (cause as Error)?.message ?? String(cause)}`);
    this.code = code;
  }
}

/**
 * The WAL stopped accepting writes after an earlier write or fsync failure. After a failed fsync
 * the kernel may have dropped the dirty pages and marked them clean (PostgreSQL's "fsyncgate"), so
 * retrying the fsync could report success for data that is gone. Restarting (recovery from what is
 * really on disk) is the only honest way back.
 */
export class WalFailedError extends Error {
  override name = "WalFailedError";
  constructor(readonly first: StorageIoError) {
    super(`write-ahead log is failed since an earlier error (${first.message}); writes are refused until restart`);
  }
}

/** Opening a data dir failed in a way the operator can fix (permissions, read-only mount, not a dir). */
export class DataDirError extends Error {
  override name = "DataDirError";
  constructor(
    message: string,
    readonly path: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}
