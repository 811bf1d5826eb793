// Test certificates made with openssl at test time in a temp dir (no key is committed): a CA, and
// leaf certificates signed by it (valid for 127.0.0.1 / localhost, as server and client; a member's
// names its node id as URI SAN kv://node/<id>), plus an expired one.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CertPair, makeCa, makeLeaf, opensslPath } from "../../src/cli/certs.ts";

export type { CertPair };
export { makeCa, makeLeaf };

/** A certificate signed by `ca` that expired in 2020 (openssl ca sets the dates; x509 -req cannot go back). */
export function makeExpired(dir: string, name: string, ca: CertPair, cn: string): CertPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const cnf = join(dir, `${name}.cnf`);
  const db = join(dir, `${name}.index`);
  writeFileSync(db, "");
  writeFileSync(join(dir, `${name}.serial`), "1000\n");
  writeFileSync(
    cnf,
    [
      "[ca]",
      "default_ca=CA_default",
      "[CA_default]",
      `database=${db}`,
      `new_certs_dir=${dir}`,
      `serial=${join(dir, `${name}.serial`)}`,
      "default_md=sha256",
      "policy=policy_any",
      "x509_extensions=ext",
      "unique_subject=no",
      "[policy_any]",
      "commonName=supplied",
      "[ext]",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "extendedKeyUsage=serverAuth,clientAuth",
      "",
    ].join("\n"),
  );
  const sh = (args: string[]) => {
    const r = Bun.spawnSync([opensslPath(), ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.toString()}`);
  };
  sh(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", csr, "-subj", `/CN=${cn}`]);
  sh(["ca", "-batch", "-config", cnf, "-cert", ca.cert, "-keyfile", ca.key, "-in", csr, "-out", pair.cert, "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext"]);
  return pair;
}
