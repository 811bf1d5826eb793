// kv serve and kv repair refuse flags they do not know, instead of running with the defaults.
import { expect, test } from "bun:test";
import type { ArgsDef } from "citty";
import { checkArgs } from "../../src/cli/strict.ts";

const def: ArgsDef = {
  port: { type: "string" },
  fsync: { type: "enum", options: ["always", "no"] },
  verbose: { type: "boolean", alias: "v" },
};

test("known flags, with values as the next word or after =, booleans and their negation pass", () => {
  expect(checkArgs([], def)).toBeNull();
  expect(checkArgs(["--port", "0", "--fsync", "no"], def)).toBeNull();
  expect(checkArgs(["--port=6380", "--fsync=always", "--verbose", "--no-verbose", "-v"], def)).toBeNull();
  expect(checkArgs(["--port", "--weird-but-a-value"], def)).toBeNull(); // a value may start with a dash
  expect(checkArgs(["--help"], def)).toBeNull();
});

test("a misspelled or unknown flag, or a stray word, is named", () => {
  expect(checkArgs(["--fsycn", "no"], def)).toBe("unknown option: --fsycn");
  expect(checkArgs(["--port", "1", "--bogus=1"], def)).toBe("unknown option: --bogus");
  expect(checkArgs(["-x"], def)).toBe("unknown option: -x");
  expect(checkArgs(["--no-port"], def)).toBe("unknown option: --no-port"); // only booleans negate
  expect(checkArgs(["--port", "1", "6380"], def)).toBe("unexpected argument: 6380");
  expect(checkArgs(["--verbose", "yes"], def)).toBe("unexpected argument: yes");
  expect(checkArgs(["--", "x"], def)).toBe("unexpected argument: x");
});

test("commands with positional arguments take words, and still refuse unknown flags", () => {
  const setDef: ArgsDef = {
    key: { type: "positional" },
    value: { type: "positional", required: false },
    ex: { type: "string" },
    nx: { type: "boolean" },
  };
  expect(checkArgs(["k", "v", "--ex", "60", "--nx"], setDef)).toBeNull();
  expect(checkArgs(["k", "--", "-v-"], setDef)).toBeNull();
  const hint = " (a value that begins with a dash goes after --)";
  expect(checkArgs(["k", "v", "--exx", "60"], setDef)).toBe(`unknown option: --exx${hint}`);
  expect(checkArgs(["k", "v", "--key", "x"], setDef)).toBe(`unknown option: --key${hint}`); // positionals are not flags
  expect(checkArgs(["k", "-1"], setDef)).toBe(`unknown option: -1${hint}`);
});
