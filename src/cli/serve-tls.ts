// `kv serve`'s TLS flags (Redis's names for clients; --peer-* for the links between members) and
// the SIGHUP reload of the certificates.
import type { ArgsDef } from "citty";
import { parseInteger, type PeerTlsConfig, TLS_AUTH_CLIENTS, type TlsAuthClients, type TlsConfig, type ServerConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { log } from "../log.ts";
import { PeerTls } from "../node/peer-tls.ts";
import type { KvServer } from "../server/server.ts";
import { ClientTls } from "../server/tls.ts";

export const TLS_ARGS = {
  "tls-port": { type: "string", description: "Port for TLS clients (with --port 0: TLS only)" },
  "tls-cert-file": { type: "string", description: "PEM certificate this node presents to clients (and to peers with --tls-cluster)" },
  "tls-key-file": { type: "string", description: "PEM private key of --tls-cert-file (unencrypted)" },
  "tls-ca-cert-file": { type: "string", description: "PEM CA bundle client certificates must chain to" },
  "tls-auth-clients": { type: "enum", options: [...TLS_AUTH_CLIENTS], description: "Client certificates: yes (required), optional (checked if sent), no (not asked)", default: "yes" },
  "tls-cluster": { type: "boolean", description: "Peer mutual TLS with the --tls-* certificate, key and CA (instead of --peer-*)" },
  "peer-cert-file": { type: "string", description: "PEM certificate for peer mutual TLS; it must name this node as URI SAN kv://node/<id>" },
  "peer-key-file": { type: "string", description: "PEM private key of --peer-cert-file" },
  "peer-ca-file": { type: "string", description: "PEM CA every member's certificate must be signed by" },
} as const satisfies ArgsDef;

/** The TLS part of the ServerConfig from serve's flags. Throws ConfigError. */
export function tlsFromArgs(args: Record<string, unknown>): { tls?: TlsConfig; peerTls?: PeerTlsConfig } {
  const str = (k: string): string | undefined => (args[k] === undefined ? undefined : String(args[k]));
  const r: { tls?: TlsConfig; peerTls?: PeerTlsConfig } = {};
  const tlsPort = str("tls-port");
  const cert = str("tls-cert-file");
  const key = str("tls-key-file");
  const ca = str("tls-ca-cert-file");
  if (tlsPort !== undefined) {
    if (cert === undefined || key === undefined) throw new ConfigError("--tls-port needs --tls-cert-file and --tls-key-file");
    r.tls = {
      port: parseInteger(tlsPort, "--tls-port", 1, 65535),
      certFile: cert,
      keyFile: key,
      ...(ca !== undefined ? { caCertFile: ca } : {}),
      authClients: (str("tls-auth-clients") ?? "yes") as TlsAuthClients,
    };
  }
  const pc = str("peer-cert-file");
  const pk = str("peer-key-file");
  const pa = str("peer-ca-file");
  if (pc !== undefined || pk !== undefined || pa !== undefined) {
    if (pc === undefined || pk === undefined || pa === undefined) throw new ConfigError("peer TLS needs all of --peer-cert-file, --peer-key-file and --peer-ca-file");
    r.peerTls = { certFile: pc, keyFile: pk, caFile: pa };
  } else if (args["tls-cluster"] === true) {
    if (cert === undefined || key === undefined || ca === undefined) throw new ConfigError("--tls-cluster needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file (or give --peer-*)");
    r.peerTls = { certFile: cert, keyFile: key, caFile: ca };
  }
  if (r.peerTls !== undefined && r.tls === undefined) {
    throw new ConfigError("peer TLS needs --tls-port too: members forward commands to the leader over its TLS client port");
  }
  return r;
}

export interface OpenedTls {
  readonly client?: ClientTls;
  readonly peer?: PeerTls;
}

/** Reads and checks the certificate files (ConfigError naming the file when one is bad). */
export function openTls(config: ServerConfig): OpenedTls {
  const peer = config.peerTls !== undefined ? new PeerTls(config.peerTls) : undefined;
  const client = config.tls !== undefined ? new ClientTls(config.tls, peer) : undefined;
  for (const [what, m] of [["client", client?.material], ["peer", peer?.material]] as const) {
    if (m === undefined) continue;
    const days = (m.notAfterMs - Date.now()) / 86_400_000;
    if (days < 0) log.warn(`the ${what} TLS certificate (${m.subject}) expired on ${new Date(m.notAfterMs).toISOString()}`);
    else if (days < 14) log.warn(`the ${what} TLS certificate (${m.subject}) expires in ${days.toFixed(1)} days`);
  }
  return { ...(client !== undefined ? { client } : {}), ...(peer !== undefined ? { peer } : {}) };
}

/** SIGHUP re-reads the certificate files (as `CONFIG SET tls-cert-file ...`); a bad file is logged and the old ones stay. */
export function watchSighup(server: KvServer): void {
  if (server.tls === undefined) return;
  process.on("SIGHUP", () => {
    try {
      server.reloadTls();
    } catch (e) {
      log.error(`SIGHUP: the TLS certificates were not re-read (the ones in use stay): ${(e as Error).message}`);
    }
  });
}
