// A scriptable fake RESP server (Bun.listen) for redirect, retry, timeout and broken-connection tests.
import type { Socket, TCPSocketListener } from "bun";
import { RequestParser } from "../../src/resp/request-parser.ts";

/** What the fake does with one command: reply bytes, nothing (hang), or drop the connection. */
export type FakeAction = string | { hang: true } | { drop: true };

export interface FakeConn {
  id: number;
  socket: Socket<FakeConnData>;
}

interface FakeConnData {
  id: number;
  parser: RequestParser;
}

export interface FakeServer {
  port: number;
  addr: string;
  /** Every command received, in order, as [connId, ...argv]. */
  log: { conn: number; argv: string[] }[];
  connections: number;
  stop(): void;
}

/** Starts a fake server; `handler` decides each command's fate. */
export function startFake(handler: (argv: string[], conn: FakeConn, n: number) => FakeAction): FakeServer {
  let nextId = 1;
  let n = 0;
  const log: { conn: number; argv: string[] }[] = [];
  const state = { connections: 0 };
  const listener: TCPSocketListener<FakeConnData> = Bun.listen<FakeConnData>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { id: nextId++, parser: new RequestParser() };
        state.connections++;
      },
      data(s, chunk) {
        const p = s.data.parser;
        p.push(chunk);
        for (;;) {
          const argv = p.next();
          if (argv === null) break;
          log.push({ conn: s.data.id, argv });
          const action = handler(argv, { id: s.data.id, socket: s }, n++);
          if (typeof action === "string") s.write(action);
          else if ("drop" in action) {
            s.end();
            return;
          }
        }
      },
    },
  });
  const fake: FakeServer = {
    port: listener.port,
    addr: `127.0.0.1:${listener.port}`,
    log,
    get connections() {
      return state.connections;
    },
    stop() {
      listener.stop(true);
    },
  };
  return fake;
}

/** A free loopback port (bound and released). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

export const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
