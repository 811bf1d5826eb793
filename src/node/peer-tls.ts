// TLS material (certificate, key, CA read from PEM files) and the identity of a cluster member in
// its certificate. A member's certificate names its node id in a URI subject alternative name,
// `kv://node/<id>`; a peer link is accepted only when the certificate was signed by the cluster's
// CA and names the node id the peer claims (inbound) or that this node dialled (outbound).
// Key material is held in memory only; no message here ever carries it (only file paths,
// subjects, issuers and error codes).
import type { Socket } from "bun";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.ts";

/** The URI SAN a member's certificate carries: `kv://node/<id>`. */
export const NODE_URI_PREFIX = "kv://node/";

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA bundle peers' (or clients') certificates must chain to. */
  readonly caFile?: string;
}

/** PEM text read from TlsFiles. Never logged. */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  /** When the certificate stops being valid (ms since the epoch), for INFO and a warning. */
  readonly notAfterMs: number;
  readonly subject: string;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * Reads and checks TLS files: the certificate parses, the key parses and belongs to it, the CA
 * bundle parses. A failure is a ConfigError naming the file (never its content).
 */
export function loadTlsFiles(f: TlsFiles, flags: { cert: string; key: string; ca: string }): TlsMaterial {
  const cert = readPem(f.certFile, flags.cert);
  const key = readPem(f.keyFile, flags.key);
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch {
    throw new ConfigError(`${flags.cert} ${f.certFile}: not a PEM certificate`);
  }
  let k;
  try {
    k = createPrivateKey(key);
  } catch {
    throw new ConfigError(`${flags.key} ${f.keyFile}: not a PEM private key (an encrypted key is not supported)`);
  }
  if (!x.checkPrivateKey(k)) throw new ConfigError(`${flags.key} ${f.keyFile} is not the key of the certificate in ${f.certFile}`);
  let ca: string | undefined;
  if (f.caFile !== undefined) {
    ca = readPem(f.caFile, flags.ca);
    try {
      new X509Certificate(ca);
    } catch {
      throw new ConfigError(`${flags.ca} ${f.caFile}: not a PEM certificate`);
    }
  }
  return { cert, key, ...(ca !== undefined ? { ca } : {}), notAfterMs: Date.parse(x.validTo), subject: oneLine(x.subject) };
}

function oneLine(dn: string): string {
  return dn.replace(/\n/g, ", ");
}

/** The node ids a certificate names in `kv://node/<id>` URI SANs (a SAN string as Bun and Node give it). */
export function nodeIdsOf(subjectAltName: string | undefined): number[] {
  if (subjectAltName === undefined) return [];
  const ids: number[] = [];
  for (const part of subjectAltName.split(/,\s*/)) {
    const m = /^URI:kv:\/\/node\/(\d{1,10})$/.exec(part.trim());
    if (m !== null) ids.push(Number(m[1]));
  }
  return ids;
}

/** A certificate as a log line names it: its subject, issuer and node ids. */
export function describeCert(c: PeerCert | undefined, member = true): string {
  if (c === undefined) return "no certificate";
  const ids = nodeIdsOf(c.subjectaltname);
  const cn = (d: Record<string, unknown> | undefined) => (d?.CN !== undefined ? `CN=${String(d.CN)}` : "?");
  const names = !member ? "" : ids.length > 0 ? `, naming node ${ids.join(",")}` : ", naming no node (no kv://node/<id> URI)";
  return `certificate ${cn(c.subject)} issued by ${cn(c.issuer)}${names}`;
}

interface PeerCert {
  subject?: Record<string, unknown>;
  issuer?: Record<string, unknown>;
  subjectaltname?: string;
  raw?: Uint8Array;
}

function peerCert(s: Socket<unknown>): PeerCert | undefined {
  const c = (s as unknown as { getPeerCertificate(): PeerCert | undefined | null }).getPeerCertificate();
  return c === null || c === undefined || Object.keys(c).length === 0 ? undefined : c;
}

function authError(s: Socket<unknown>): string {
  const e = (s as unknown as { getAuthorizationError?(): { code?: string; message?: string } | null }).getAuthorizationError?.();
  return e?.code ?? e?.message ?? "not authorized";
}

/** What a member's certificate says about it, once its link's TLS handshake is done. */
export type PeerIdentity = { readonly ok: true; readonly id: number; readonly cert: string } | { readonly ok: false; readonly why: string };

/**
 * The identity of the peer on a TLS socket: its certificate must chain to `caPem` (the cluster's
 * CA) and name exactly one node id. `hostChecked`: this end dialled (Bun then also checks the
 * host name, which a member's identity does not depend on: a certificate that fails only that
 * check is verified against the CA here).
 */
export function peerIdentity(s: Socket<unknown>, caPem: string, dialled: boolean): PeerIdentity {
  const c = peerCert(s);
  if (c === undefined) return { ok: false, why: "it presented no certificate" };
  if (!s.authorized) {
    const code = authError(s);
    if (!(dialled && code === "ERR_TLS_CERT_ALTNAME_INVALID" && signedBy(c, caPem))) {
      return { ok: false, why: `its ${describeCert(c)} is not accepted (${code}: not signed by the cluster's CA, expired, or not yet valid)` };
    }
  }
  const ids = nodeIdsOf(c.subjectaltname);
  if (ids.length !== 1) return { ok: false, why: `its ${describeCert(c)} must name exactly one node (URI SAN ${NODE_URI_PREFIX}<id>)` };
  return { ok: true, id: ids[0]!, cert: describeCert(c) };
}

/** `c` is valid now and signed by one of the certificates in `caPem`. */
export function signedBy(c: PeerCert, caPem: string): boolean {
  if (c.raw === undefined) return false;
  let x: X509Certificate;
  try {
    x = new X509Certificate(Buffer.from(c.raw));
  } catch {
    return false;
  }
  const now = Date.now();
  if (now < Date.parse(x.validFrom) || now > Date.parse(x.validTo)) return false;
  for (const pem of caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      const ca = new X509Certificate(pem);
      if (x.checkIssued(ca) && x.verify(ca.publicKey)) return true;
    } catch {
      // not a certificate: next
    }
  }
  return false;
}

/**
 * Peer mutual TLS as the transport and the links to the leader use it: the material is re-read by
 * reload() (SIGHUP), new connections use what was read last.
 */
export class PeerTls {
  private m: TlsMaterial;

  constructor(readonly files: TlsFiles & { readonly caFile: string }) {
    this.m = PeerTls.load(files);
  }

  static load(files: TlsFiles): TlsMaterial {
    return loadTlsFiles(files, { cert: "--peer-cert-file", key: "--peer-key-file", ca: "--peer-ca-file" });
  }

  /** Re-reads the files; on an error the material in use stays and the error is thrown. */
  reload(): void {
    this.m = PeerTls.load(this.files);
  }

  get material(): TlsMaterial {
    return this.m;
  }

  get ca(): string {
    return this.m.ca!;
  }

  /** Options of the peer listener: a certificate is asked of every peer (checked in peerIdentity). */
  serverOptions(): Record<string, unknown> {
    return { cert: this.m.cert, key: this.m.key, ca: this.m.ca, requestCert: true, rejectUnauthorized: false };
  }

  /** Options of a connection this node makes to a member at `host`. */
  clientOptions(host: string): Record<string, unknown> {
    return { cert: this.m.cert, key: this.m.key, ca: this.m.ca, serverName: host, rejectUnauthorized: false };
  }
}
