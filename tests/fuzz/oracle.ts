// What the server owes a connection for a given input: kv's own request parser, run on the whole
// input at once, says how many commands are complete before a protocol error, a QUIT, or the
// end of the bytes. The server must answer exactly those, then close (error, QUIT) or wait.
import { ProtocolError } from "../../src/errors.ts";
import { RequestParser, type RequestLimits } from "../../src/resp/request-parser.ts";

export interface Expected {
  /** Replies owed: one per complete command (QUIT's +OK included). */
  replies: number;
  /** "error": then one `-ERR Protocol error` and a close; "quit": a close; "open": the server waits for more. */
  end: "error" | "quit" | "open";
  /** The parser's message when end is "error". */
  message?: string;
}

export function expectedFor(bytes: string, limits: RequestLimits): Expected {
  const p = new RequestParser(limits);
  let replies = 0;
  try {
    p.push(Buffer.from(bytes, "latin1"));
    for (;;) {
      const argv = p.next();
      if (argv === null) return { replies, end: "open" };
      replies++;
      if (argv[0]!.toLowerCase() === "quit") return { replies, end: "quit" };
    }
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    return { replies, end: "error", message: e.message };
  }
}
