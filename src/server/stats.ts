// Command and error statistics, kept as Redis 7 keeps them, for INFO commandstats, errorstats
// and total_error_replies. One instance per server; CONFIG RESETSTAT clears it.

/**
 * Most distinct error prefixes tracked, as Redis's limit. Past it the table is cleared and
 * holds only ERRORSTATS_DISABLED until CONFIG RESETSTAT (total_error_replies keeps counting).
 * kv's own error codes are a fixed handful; the limit guards against a future path that lets
 * outside text choose the prefix.
 */
export const ERROR_PREFIXES_MAX = 128;
/** The prefix is the error's first word, looked for in this many leading bytes (as Redis). */
export const ERROR_PREFIX_SCAN_BYTES = 32;

/** Counters of one command or subcommand (Redis's cmdstat_<name> line). */
export class CommandStat {
  /** Times it ran (an error reply from its execution included). */
  calls = 0;
  /** Time spent running it, in microseconds (fractions kept; INFO prints the integer part). */
  usec = 0;
  /** Refused before it ran: wrong arity, a write refused because the log cannot take it. */
  rejected = 0;
  /** Ran and answered with an error. */
  failed = 0;
}

/** The prefix an error reply is counted under: its first word, or ERR when it has none. */
export function errorPrefix(text: string): string {
  const space = text.indexOf(" ");
  if (space <= 0 || space >= ERROR_PREFIX_SCAN_BYTES) return "ERR";
  return text.slice(0, space);
}

export class ReplyStats {
  /** Every error reply written to a client (Redis's total_error_replies). */
  errorReplies = 0;
  /** Error replies by prefix, in first-seen order. */
  readonly errors = new Map<string, number>();
  private errorsEnabled = true;
  /** Per command, indexed by the command's id in the dispatch table. */
  readonly commands: CommandStat[];

  constructor(commandCount: number) {
    this.commands = Array.from({ length: commandCount }, () => new CommandStat());
  }

  /** Counts one error reply (the hook every reply buffer of the server calls). */
  readonly countError = (text: string): void => {
    this.errorReplies++;
    if (!this.errorsEnabled) return;
    const prefix = errorPrefix(text);
    const n = this.errors.get(prefix);
    if (n !== undefined) {
      this.errors.set(prefix, n + 1);
      return;
    }
    if (this.errors.size >= ERROR_PREFIXES_MAX) {
      this.errors.clear();
      this.errors.set("ERRORSTATS_DISABLED", 1);
      this.errorsEnabled = false;
      return;
    }
    this.errors.set(prefix, 1);
  };

  reset(): void {
    this.errorReplies = 0;
    this.errors.clear();
    this.errorsEnabled = true;
    for (const c of this.commands) {
      c.calls = 0;
      c.usec = 0;
      c.rejected = 0;
      c.failed = 0;
    }
  }
}
