// Throwaway certificates for a local cluster (`kv cluster up N --tls`), made with the openssl
// command-line tool: a CA, one certificate per node (URI SAN kv://node/<id>, IP 127.0.0.1,
// DNS localhost; usable as server and client) and one client certificate for the CLI and
// redis-cli. Keys are P-256, written mode 0600. openssl missing is a clear error.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { NODE_URI_PREFIX } from "../node/peer-tls.ts";

/** Days the certificates of `kv cluster up --tls` are valid. */
export const CLUSTER_CERT_DAYS = 825;
export const TLS_DIR = "tls";

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

export function opensslPath(): string {
  const p = Bun.which("openssl");
  if (p === null) throw new ConfigError("TLS certificates are made with the openssl command, which is not installed (Debian/Ubuntu: apt-get install openssl); or start the nodes with certificates of your own (kv serve --tls-port ... --peer-cert-file ...)");
  return p;
}

function run(args: string[], cwd: string): void {
  const r = Bun.spawnSync([opensslPath(), ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new ConfigError(`openssl ${args[0]} failed: ${r.stderr.toString().trim().split("\n").slice(-3).join(" | ")}`);
}

/** A self-signed CA in `dir` (`<name>.crt`, `<name>.key`). */
export function makeCa(dir: string, name: string, subject: string, days = CLUSTER_CERT_DAYS): CertPair {
  mkdirSync(dir, { recursive: true });
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", pair.cert, "-days", String(days), "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  chmodSync(pair.key, 0o600);
  return pair;
}

export interface LeafOptions {
  readonly cn: string;
  /** A member's certificate: URI SAN kv://node/<id>. */
  readonly nodeId?: number;
  readonly days?: number;
}

/** A certificate signed by `ca`, in `dir` (`<name>.crt`, `<name>.key`), valid for 127.0.0.1/localhost, as server and client. */
export function makeLeaf(dir: string, name: string, ca: CertPair, o: LeafOptions): CertPair {
  mkdirSync(dir, { recursive: true });
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const sans = ["IP:127.0.0.1", "DNS:localhost", ...(o.nodeId !== undefined ? [`URI:${NODE_URI_PREFIX}${o.nodeId}`] : [])];
  writeFileSync(ext, `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
  run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", csr, "-subj", `/CN=${o.cn}`], dir);
  chmodSync(pair.key, 0o600);
  run(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", pair.cert, "-days", String(o.days ?? CLUSTER_CERT_DAYS), "-extfile", ext], dir);
  return pair;
}

export interface ClusterCerts {
  readonly dir: string;
  readonly ca: CertPair;
  readonly nodes: ReadonlyMap<number, CertPair>;
  /** For the CLI and redis-cli (--tls-auth-clients yes asks clients for one). */
  readonly client: CertPair;
}

/** The files of a cluster's certificates under `clusterDir`/tls (whether or not they exist yet). */
export function clusterCertPaths(clusterDir: string, ids: readonly number[]): ClusterCerts {
  const dir = join(clusterDir, TLS_DIR);
  const pair = (n: string) => ({ cert: join(dir, `${n}.crt`), key: join(dir, `${n}.key`) });
  return { dir, ca: pair("ca"), nodes: new Map(ids.map((id) => [id, pair(`node${id}`)])), client: pair("client") };
}

/** Makes what is missing of a cluster's certificates (a restart keeps the ones it has). */
export function ensureClusterCerts(clusterDir: string, ids: readonly number[], clusterId: string): ClusterCerts {
  const c = clusterCertPaths(clusterDir, ids);
  if (!existsSync(c.ca.cert) || !existsSync(c.ca.key)) makeCa(c.dir, "ca", `/CN=kv cluster ${clusterId} CA`);
  for (const [id, p] of c.nodes) if (!existsSync(p.cert) || !existsSync(p.key)) makeLeaf(c.dir, `node${id}`, c.ca, { cn: `kv node ${id}`, nodeId: id });
  if (!existsSync(c.client.cert) || !existsSync(c.client.key)) makeLeaf(c.dir, "client", c.ca, { cn: "kv client" });
  return c;
}
