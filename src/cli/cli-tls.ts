// TLS for the CLI's connections to nodes: `--tls --cacert FILE [--cert FILE --key FILE]` (as
// redis-cli's flags) on the client commands, or, for the cluster commands, the certificates of a
// cluster started with `kv cluster up N --tls` (its DIR/tls: the CA and the client certificate).
import type { ArgsDef } from "citty";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClientTlsOptions } from "../client/index.ts";
import { ConfigError } from "../errors.ts";

export const CLIENT_TLS_ARGS = {
  tls: { type: "boolean", description: "Connect over TLS" },
  cacert: { type: "string", description: "PEM CA bundle the server's certificate is checked against (with --tls)", valueHint: "file" },
  cert: { type: "string", description: "PEM client certificate, for servers that ask for one (with --tls)", valueHint: "file" },
  key: { type: "string", description: "PEM private key of --cert", valueHint: "file" },
  sni: { type: "string", description: "Server name the certificate must carry (default: the host connected to)", valueHint: "name" },
} as const satisfies ArgsDef;

// The process's setting: a CLI command runs once per process, but in-process callers (tests)
// run several, so each source of the setting replaces what it set before rather than adding to it.
let current: ClientTlsOptions | undefined;
/** `current` came from command-line flags (which win over a cluster directory's certificates). */
let fromFlags = false;

function read(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Sets the CLI's TLS from its flags (nothing without --tls). Throws ConfigError. */
export function useTlsArgs(args: { tls?: boolean; cacert?: string; cert?: string; key?: string; sni?: string }): void {
  if (args.tls !== true) {
    if (args.cacert !== undefined || args.cert !== undefined || args.key !== undefined) throw new ConfigError("--cacert, --cert and --key go with --tls");
    current = undefined;
    fromFlags = false;
    return;
  }
  if ((args.cert === undefined) !== (args.key === undefined)) throw new ConfigError("--cert and --key go together");
  current = {
    ...(args.cacert !== undefined ? { ca: read(args.cacert, "--cacert") } : {}),
    ...(args.cert !== undefined ? { cert: read(args.cert, "--cert") } : {}),
    ...(args.key !== undefined ? { key: read(args.key, "--key") } : {}),
    ...(args.sni !== undefined ? { serverName: args.sni } : {}),
  };
  fromFlags = true;
}

/** The cluster in a directory whose certificates are in `tlsDir` (kv cluster up --tls): its CA and client certificate. */
export function useClusterTls(tlsDir: string): void {
  if (fromFlags) return; // flags given on the command line win
  current = { ca: read(join(tlsDir, "ca.crt"), "the cluster's CA"), cert: read(join(tlsDir, "client.crt"), "the cluster's client certificate"), key: read(join(tlsDir, "client.key"), "the cluster's client key") };
}

/** The cluster directory read is not a TLS cluster: a setting taken from another cluster's directory is dropped. */
export function noClusterTls(): void {
  if (!fromFlags) current = undefined;
}

/** The `tls` option of the CLI's clients (spread into createClient's options). */
export function cliTls(): { tls?: ClientTlsOptions } {
  return current === undefined ? {} : { tls: current };
}
