// Parses server addresses: `host:port`, `[v6]:port`, `host` (default port) and redis:// / kv:// URLs.

export const DEFAULT_PORT = 6379;
export const DEFAULT_HOST = "127.0.0.1";

export interface Addr {
  host: string;
  port: number;
}

export interface ParsedUrl {
  addrs: Addr[];
  username?: string;
  password?: string;
  db?: number;
  /** rediss:// */
  tls?: boolean;
}

/** `host:port` for messages and MOVED comparisons; IPv6 hosts are bracketed. */
export function formatAddr(a: Addr): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Parses one `host:port` (or `host`, `:port`, `[::1]:port`). Throws TypeError on bad input. */
export function parseAddr(s: string): Addr {
  const t = s.trim();
  if (t.includes("://")) {
    const u = parseUrl(t);
    if (u.addrs.length !== 1) throw new TypeError(`expected one address in ${JSON.stringify(s)}`);
    return u.addrs[0]!;
  }
  let host: string;
  let portText: string | undefined;
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close === -1) throw new TypeError(`bad address ${JSON.stringify(s)}`);
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) throw new TypeError(`bad address ${JSON.stringify(s)}`);
    portText = rest === "" ? undefined : rest.slice(1);
  } else {
    const colon = t.lastIndexOf(":");
    if (colon !== -1 && t.indexOf(":") !== colon) {
      // A bare IPv6 address without brackets: no port.
      host = t;
    } else if (colon === -1) {
      host = t;
    } else {
      host = t.slice(0, colon);
      portText = t.slice(colon + 1);
    }
  }
  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`bad port in address ${JSON.stringify(s)}`);
  return { host: host === "" ? DEFAULT_HOST : host, port };
}

/** `redis://[user:pass@]host[:port][,host2:port2...][/db]`; also `kv://`, and `rediss://` (TLS). */
export function parseUrl(s: string): ParsedUrl {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]*)(?:\/(\d*))?\/?$/i.exec(s.trim());
  if (!m) throw new TypeError(`bad URL ${JSON.stringify(s)}`);
  const scheme = m[1]!.toLowerCase();
  if (scheme !== "redis" && scheme !== "kv" && scheme !== "rediss") throw new TypeError(`unsupported URL scheme ${JSON.stringify(scheme)} (use redis://, rediss:// or kv://)`);
  const hosts = m[4]!;
  const addrs = (hosts === "" ? [DEFAULT_HOST] : hosts.split(",")).map((h) => parseAddr(h));
  const out: ParsedUrl = { addrs, ...(scheme === "rediss" ? { tls: true } : {}) };
  if (m[2]) out.username = decodeURIComponent(m[2]);
  if (m[3] !== undefined) out.password = decodeURIComponent(m[3]);
  if (m[2] !== undefined && m[3] === undefined && m[2] !== "") {
    // redis://secret@host means a password without a user name.
    out.password = out.username;
    delete out.username;
  }
  if (m[5]) out.db = Number(m[5]);
  return out;
}
