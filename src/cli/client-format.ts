// redis-cli's reply formatting and argument splitting, for `kv cli` (and JSON for --json).
import { ErrorReply, PushReply, type RespValue } from "../resp/reply-parser.ts";

/** Quotes bytes the way redis-cli does (sdscatrepr): printable ASCII as is, the rest escaped. */
export function reprBytes(b: Uint8Array | string): string {
  let out = '"';
  if (typeof b === "string") b = Buffer.from(b, "utf8");
  for (const c of b) {
    switch (c) {
      case 0x5c:
        out += "\\\\";
        break;
      case 0x22:
        out += '\\"';
        break;
      case 0x0a:
        out += "\\n";
        break;
      case 0x0d:
        out += "\\r";
        break;
      case 0x09:
        out += "\\t";
        break;
      case 0x07:
        out += "\\a";
        break;
      case 0x08:
        out += "\\b";
        break;
      default:
        out += c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
    }
  }
  return out + '"';
}

/**
 * Formats a reply as redis-cli does on a terminal: `"bar"`, `(integer) 1`, `(nil)`,
 * `1) ...` with nested indentation, `(error) ERR ...`. Bulk strings must be Uint8Array
 * (read with mode "bytes"); JS strings are status replies. Ends with a newline.
 */
export function formatReply(v: RespValue, prefix = ""): string {
  if (v === null) return "(nil)\n";
  if (v instanceof Uint8Array) return reprBytes(v) + "\n";
  if (typeof v === "string") return v + "\n";
  if (typeof v === "number") return Number.isInteger(v) ? `(integer) ${v}\n` : `(double) ${v}\n`;
  if (typeof v === "bigint") return `(integer) ${v}\n`;
  if (typeof v === "boolean") return v ? "(true)\n" : "(false)\n";
  if (v instanceof ErrorReply) return `(error) ${v.message}\n`;
  if (v instanceof PushReply) return formatAggregate(v.data, prefix, ")");
  if (v instanceof Map) {
    const flat: RespValue[] = [];
    for (const [k, val] of v) flat.push(k, val);
    return formatAggregate(flat, prefix, "#");
  }
  return formatAggregate(v, prefix, ")");
}

function formatAggregate(items: RespValue[], prefix: string, sep: ")" | "#"): string {
  if (items.length === 0) return sep === "#" ? "(empty hash)\n" : "(empty array)\n";
  const count = sep === "#" ? items.length / 2 : items.length;
  const idxLen = String(count).length;
  const childPrefix = prefix + " ".repeat(idxLen + 2);
  let out = "";
  for (let i = 0; i < items.length; i++) {
    const human = (sep === "#" ? Math.floor(i / 2) : i) + 1;
    out += `${i === 0 ? "" : prefix}${String(human).padStart(idxLen)}${sep} `;
    out += formatReply(items[i]!, childPrefix);
    if (sep === "#") {
      i++;
      out = out.slice(0, -1) + " => " + formatReply(items[i]!, childPrefix);
    }
  }
  return out;
}

/** Formats a reply in redis-cli's --raw style: bare values, one per line. */
export function formatRaw(v: RespValue): Uint8Array {
  const parts: Uint8Array[] = [];
  const walk = (x: RespValue): void => {
    if (x === null) parts.push(Buffer.from("\n"));
    else if (x instanceof Uint8Array) parts.push(x, Buffer.from("\n"));
    else if (x instanceof ErrorReply) parts.push(Buffer.from(`${x.message}\n`));
    else if (x instanceof PushReply) x.data.forEach(walk);
    else if (x instanceof Map) for (const [k, val] of x) (walk(k), walk(val));
    else if (Array.isArray(x)) x.forEach(walk);
    else parts.push(Buffer.from(`${String(x)}\n`));
  };
  walk(v);
  return Buffer.concat(parts);
}

/** A reply as JSON-able data: bytes become UTF-8 strings, errors {error}, maps objects. */
export function toJson(v: RespValue): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("utf8");
  if (typeof v === "bigint") return v.toString();
  if (v instanceof ErrorReply) return { error: v.message };
  if (v instanceof PushReply) return v.data.map(toJson);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, val] of v) o[String(toJson(k))] = toJson(val);
    return o;
  }
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}

export class SplitArgsError extends Error {
  override name = "SplitArgsError";
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * Splits a line into words as redis-cli does (sdssplitargs): whitespace separates; "..."
 * takes \n \r \t \b \a \xHH \" \\ escapes; '...' takes \'. Returns raw bytes per word.
 */
export function splitArgs(line: string): Uint8Array[] {
  const bytes = Buffer.from(line, "utf8");
  const out: Uint8Array[] = [];
  let i = 0;
  const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
  for (;;) {
    while (i < bytes.length && isSpace(bytes[i])) i++;
    if (i >= bytes.length) return out;
    const word: number[] = [];
    let inDq = false;
    let inSq = false;
    for (;;) {
      const c = bytes[i];
      if (inDq) {
        if (c === undefined) throw new SplitArgsError("Invalid argument(s): unbalanced quotes");
        if (c === 0x5c && bytes[i + 1] === 0x78 && HEX.test(String.fromCharCode(bytes[i + 2] ?? 0, bytes[i + 3] ?? 0))) {
          word.push(parseInt(String.fromCharCode(bytes[i + 2]!, bytes[i + 3]!), 16));
          i += 3;
        } else if (c === 0x5c && bytes[i + 1] !== undefined) {
          i++;
          const e = bytes[i]!;
          word.push(e === 0x6e ? 0x0a : e === 0x72 ? 0x0d : e === 0x74 ? 0x09 : e === 0x62 ? 0x08 : e === 0x61 ? 0x07 : e);
        } else if (c === 0x22) {
          if (bytes[i + 1] !== undefined && !isSpace(bytes[i + 1])) throw new SplitArgsError("Invalid argument(s): closing quote must be followed by a space");
          i++;
          break;
        } else word.push(c);
      } else if (inSq) {
        if (c === undefined) throw new SplitArgsError("Invalid argument(s): unbalanced quotes");
        if (c === 0x5c && bytes[i + 1] === 0x27) {
          i++;
          word.push(0x27);
        } else if (c === 0x27) {
          if (bytes[i + 1] !== undefined && !isSpace(bytes[i + 1])) throw new SplitArgsError("Invalid argument(s): closing quote must be followed by a space");
          i++;
          break;
        } else word.push(c);
      } else {
        if (c === undefined || isSpace(c)) break;
        if (c === 0x22 && word.length === 0) inDq = true;
        else if (c === 0x27 && word.length === 0) inSq = true;
        else word.push(c);
      }
      i++;
    }
    out.push(Uint8Array.from(word));
  }
}
