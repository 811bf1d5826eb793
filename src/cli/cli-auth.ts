// Credentials the CLI's clients send (AUTH / HELLO AUTH): from --user/--pass/-a/--askpass, the
// environment (KV_USER, KV_PASSWORD: kept out of the process list), or, for `kv cluster ...`, the
// --requirepass / --masteruser / --masterauth the cluster's nodes were started with.
import type { ArgsDef } from "citty";

export interface CliCredentials {
  username?: string;
  password?: string;
}

let explicit: CliCredentials | undefined;
let fromCluster: CliCredentials | undefined;

export const authArgs = {
  user: { type: "string", description: "ACL user to AUTH as (env KV_USER; default: default)" },
  pass: { type: "string", alias: ["a"], description: "Password to AUTH with (env KV_PASSWORD keeps it out of the process list)" },
  askpass: { type: "boolean", description: "Read the password from the terminal, not echoed" },
} as const satisfies ArgsDef;

/** Sets the credentials from the flags (and environment); reads the password from the terminal for --askpass. */
export async function setCliAuth(args: { user?: string; pass?: string; askpass?: boolean }): Promise<void> {
  let password = args.pass ?? process.env.KV_PASSWORD;
  if (args.askpass === true) password = await askPassword("Please input password: ");
  const username = args.user ?? process.env.KV_USER;
  if (password !== undefined || username !== undefined) explicit = { username, password };
}

/** A cluster's own credentials, taken from its nodes' flags (`kv cluster up N --requirepass X`). */
export function setClusterAuth(serveFlags: readonly string[]): void {
  const flag = (name: string) => {
    const at = serveFlags.lastIndexOf(`--${name}`);
    if (at >= 0) return serveFlags[at + 1];
    return serveFlags.find((f) => f.startsWith(`--${name}=`))?.slice(name.length + 3);
  };
  const password = flag("masterauth") ?? flag("requirepass");
  if (password !== undefined) fromCluster = { username: flag("masteruser") ?? "default", password };
}

/** What to give createClient: the explicit credentials, else the environment's, else the cluster's, else none. */
export function cliAuth(): CliCredentials {
  if (explicit !== undefined) return explicit;
  const envPass = process.env.KV_PASSWORD;
  if (envPass !== undefined) return { username: process.env.KV_USER, password: envPass };
  return fromCluster ?? {};
}

async function askPassword(prompt: string): Promise<string> {
  process.stderr.write(prompt);
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  let text = "";
  try {
    for await (const chunk of stdin) {
      const s = Buffer.from(chunk as Uint8Array).toString("latin1");
      const nl = s.search(/[\r\n]/);
      if (nl >= 0) {
        text += s.slice(0, nl);
        break;
      }
      if (tty && s.includes("\u0003")) process.exit(130);
      text += s;
    }
  } finally {
    if (tty) stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
  return text;
}

/** Flags whose value is a secret. */
const SECRET_FLAGS = new Set(["--requirepass", "--masterauth", "--pass", "-a"]);

/** argv with every secret flag's value replaced by `<redacted>`, for logs and messages. */
export function redactArgv(argv: readonly string[]): string[] {
  return argv.map((a, i) => {
    if (i > 0 && SECRET_FLAGS.has(argv[i - 1]!)) return "<redacted>";
    const eq = a.indexOf("=");
    return eq > 0 && SECRET_FLAGS.has(a.slice(0, eq)) ? `${a.slice(0, eq)}=<redacted>` : a;
  });
}
