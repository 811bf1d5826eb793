// `help` in `kv cli`: answered by the prompt itself, as redis-cli does, never sent to the server.

/** The syntax of each command kv serves (README's list), in Redis's notation. */
const SYNTAX: Record<string, string> = {
  get: "GET key",
  set: "SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
  del: "DEL key [key ...]",
  unlink: "UNLINK key [key ...]",
  exists: "EXISTS key [key ...]",
  touch: "TOUCH key [key ...]",
  mget: "MGET key [key ...]",
  mset: "MSET key value [key value ...]",
  msetnx: "MSETNX key value [key value ...]",
  incr: "INCR key",
  decr: "DECR key",
  incrby: "INCRBY key increment",
  decrby: "DECRBY key decrement",
  incrbyfloat: "INCRBYFLOAT key increment",
  append: "APPEND key value",
  strlen: "STRLEN key",
  setex: "SETEX key seconds value",
  psetex: "PSETEX key milliseconds value",
  getrange: "GETRANGE key start end",
  setrange: "SETRANGE key offset value",
  getdel: "GETDEL key",
  getset: "GETSET key value",
  setnx: "SETNX key value",
  getex: "GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]",
  type: "TYPE key",
  rename: "RENAME key newkey",
  renamenx: "RENAMENX key newkey",
  copy: "COPY source destination [DB destination-db] [REPLACE]",
  keys: "KEYS pattern",
  scan: "SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]",
  dbsize: "DBSIZE",
  flushall: "FLUSHALL [ASYNC | SYNC]",
  flushdb: "FLUSHDB [ASYNC | SYNC]",
  expire: "EXPIRE key seconds [NX | XX | GT | LT]",
  pexpire: "PEXPIRE key milliseconds [NX | XX | GT | LT]",
  expireat: "EXPIREAT key unix-time-seconds [NX | XX | GT | LT]",
  pexpireat: "PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]",
  ttl: "TTL key",
  pttl: "PTTL key",
  expiretime: "EXPIRETIME key",
  pexpiretime: "PEXPIRETIME key",
  persist: "PERSIST key",
  ping: "PING [message]",
  echo: "ECHO message",
  quit: "QUIT",
  reset: "RESET",
  hello: "HELLO [protover [AUTH username password] [SETNAME clientname]]",
  auth: "AUTH [username] password",
  client: "CLIENT ID | SETNAME name | GETNAME | SETINFO LIB-NAME name | SETINFO LIB-VER version | INFO | LIST",
  select: "SELECT index",
  info: "INFO [section [section ...]]",
  config: "CONFIG GET parameter [parameter ...]",
  command: "COMMAND [COUNT | INFO name ... | DOCS name ... | LIST]",
  time: "TIME",
  save: "SAVE",
  bgsave: "BGSAVE",
  lastsave: "LASTSAVE",
};

/** What `help` or `help <command>` prints; null when the line is not a help request. */
export function replHelp(line: string): string | null {
  const words = line.trim().split(/\s+/);
  if (words[0]!.toLowerCase() !== "help") return null;
  if (words.length === 1) {
    return [
      "kv cli: type a command and its arguments, as to redis-cli (\"double\" and 'single' quotes group words).",
      "  help <command>   the syntax of a command, e.g. help set",
      "  quit, exit       leave the prompt",
      "Commands:",
      ...wrap(Object.keys(SYNTAX).map((n) => n.toUpperCase()), 76).map((l) => `  ${l}`),
      "",
    ].join("\n");
  }
  const name = words[1]!.toLowerCase();
  const syntax = SYNTAX[name];
  return syntax === undefined ? `no help for '${words[1]}' (help lists the commands)\n` : `  ${syntax}\n`;
}

function wrap(words: string[], width: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const w of words) {
    if (cur !== "" && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur === "" ? w : `${cur} ${w}`;
  }
  if (cur !== "") lines.push(cur);
  return lines;
}
