// Client TLS, as Redis's: --tls-port, --tls-cert-file, --tls-key-file, --tls-ca-cert-file,
// --tls-auth-clients yes|no|optional. The certificate files are read at start and again on SIGHUP
// or `CONFIG SET tls-cert-file ...`; connections made after a reload get the new certificate,
// connections already open keep theirs. Key material lives in memory only: CONFIG GET, INFO and the
// log show file paths, subjects and expiry dates, never what the files hold.
import type { Socket } from "bun";
import type { TlsAuthClients, TlsConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { describeCert, loadTlsFiles, type PeerTls, peerIdentity, type TlsMaterial } from "../node/peer-tls.ts";

export const CLIENT_TLS_FLAGS = { cert: "--tls-cert-file", key: "--tls-key-file", ca: "--tls-ca-cert-file" } as const;

/** CONFIG SET parameters that change the client TLS setup (each set re-reads the files). */
export const TLS_CONFIG_PARAMS = ["tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-auth-clients"] as const;

interface PeerCertLike {
  subject?: Record<string, unknown>;
  issuer?: Record<string, unknown>;
  subjectaltname?: string;
}

export class ClientTls {
  private m: TlsMaterial;
  /** Times the material was re-read, and when last (ms), for INFO. */
  reloads = 0;
  reloadedAtMs = 0;
  /** Connections refused for their certificate. */
  refused = 0;

  constructor(
    private cfg: TlsConfig,
    /** With peer TLS, members' certificates are accepted on this port too (their links to the leader). */
    private readonly peer?: PeerTls,
  ) {
    this.m = ClientTls.load(cfg);
  }

  static load(cfg: TlsConfig): TlsMaterial {
    if (cfg.authClients !== "no" && cfg.caCertFile === undefined) {
      throw new ConfigError(`--tls-auth-clients ${cfg.authClients} needs --tls-ca-cert-file (the CA client certificates are checked against), or --tls-auth-clients no`);
    }
    return loadTlsFiles({ certFile: cfg.certFile, keyFile: cfg.keyFile, ...(cfg.caCertFile !== undefined ? { caFile: cfg.caCertFile } : {}) }, CLIENT_TLS_FLAGS);
  }

  get config(): Readonly<TlsConfig> {
    return this.cfg;
  }

  get material(): TlsMaterial {
    return this.m;
  }

  /**
   * Re-reads the files of `next` (default: the same ones). On an error the setup in use stays and a
   * ConfigError is thrown; on success it is the one new connections get.
   */
  reload(next: TlsConfig = this.cfg): void {
    const m = ClientTls.load(next);
    this.peer?.reload();
    this.m = m;
    this.cfg = next;
    this.reloads++;
    this.reloadedAtMs = Date.now();
  }

  /** Bun.listen's tls options. A certificate is asked for unless neither clients nor members need one. */
  listenOptions(): Record<string, unknown> {
    const cas = [this.cfg.authClients !== "no" ? this.m.ca : undefined, this.peer?.ca].filter((x): x is string => x !== undefined);
    const request = this.cfg.authClients !== "no" || this.peer !== undefined;
    return {
      cert: this.m.cert,
      key: this.m.key,
      ...(cas.length > 0 ? { ca: cas.join("\n") } : {}),
      requestCert: request,
      // Checked in refusal() (Bun accepts a connection with a bad certificate otherwise: BUN-NOTES.md).
      rejectUnauthorized: false,
    };
  }

  /**
   * Why a client that finished its TLS handshake may not stay (undefined: it may), as Redis's
   * tls-auth-clients: yes needs a valid certificate; optional refuses an invalid one only.
   */
  refusal(s: Socket<unknown>): string | undefined {
    const cert = peerCertOf(s);
    if (this.cfg.authClients === "no" && this.peer === undefined) return undefined;
    if (cert === undefined) return this.cfg.authClients === "yes" ? "no client certificate (--tls-auth-clients yes)" : undefined;
    if (s.authorized) return undefined;
    if (this.cfg.authClients === "no") return undefined; // a certificate sent to a port that asks only members for one
    const e = (s as unknown as { getAuthorizationError?(): { code?: string } | null }).getAuthorizationError?.();
    return `client ${describeCert(cert, false)} refused (${e?.code ?? "not authorized"})`;
  }

  /**
   * With peer TLS, KV.PEER (a member's link) is accepted only on a TLS connection whose
   * certificate is a member's, signed by the cluster's CA and naming node `from`.
   */
  memberRefusal(s: Socket<unknown>, isTls: boolean, from: number): string | undefined {
    if (this.peer === undefined) return undefined;
    if (!isTls) return "peer TLS is on: members' links use the TLS port";
    const who = peerIdentity(s, this.peer.ca, false);
    if (!who.ok) return `the link's ${who.why.replace(/^its /, "")}`;
    if (who.id !== from) return `the link says node ${from}, its certificate names node ${who.id}`;
    return undefined;
  }
}

function peerCertOf(s: Socket<unknown>): PeerCertLike | undefined {
  const c = (s as unknown as { getPeerCertificate(): PeerCertLike | null | undefined }).getPeerCertificate();
  return c === null || c === undefined || Object.keys(c).length === 0 ? undefined : c;
}

/** `CONFIG SET tls-...` pairs applied to `cfg` (a new object); throws ConfigError for a bad value. */
export function withTlsParams(cfg: TlsConfig, pairs: readonly [string, string][]): TlsConfig {
  const next: TlsConfig = { ...cfg };
  for (const [name, value] of pairs) {
    switch (name) {
      case "tls-cert-file":
        next.certFile = value;
        break;
      case "tls-key-file":
        next.keyFile = value;
        break;
      case "tls-ca-cert-file":
        if (value === "") delete next.caCertFile;
        else next.caCertFile = value;
        break;
      case "tls-auth-clients": {
        const v = value.toLowerCase();
        if (v !== "yes" && v !== "no" && v !== "optional") throw new ConfigError(`tls-auth-clients: '${value}' is not yes, no or optional`);
        next.authClients = v as TlsAuthClients;
        break;
      }
      default:
        throw new ConfigError(`${name} is not a TLS parameter`);
    }
  }
  return next;
}

/** CONFIG GET's TLS lines (paths and settings; never key material). */
export function tlsConfigParams(t: ClientTls | undefined, tlsPort: number): [string, string][] {
  const c = t?.config;
  return [
    ["tls-port", String(tlsPort)],
    ["tls-cert-file", c?.certFile ?? ""],
    ["tls-key-file", c?.keyFile ?? ""],
    ["tls-ca-cert-file", c?.caCertFile ?? ""],
    ["tls-auth-clients", c?.authClients ?? "yes"],
  ];
}
