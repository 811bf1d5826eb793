// Glob matching as Redis's stringmatchlen (the transcript test also checks 600 random
// pattern/key pairs against a real redis-server).
import { describe, expect, test } from "bun:test";
import { globMatch, globMatchesAll } from "../../src/kv/glob.ts";

describe("globMatch", () => {
  const cases: [pattern: string, key: string, match: boolean][] = [
    ["", "", true],
    ["", "a", false],
    ["*", "", false], // stringmatchlen's quirk; KEYS * and MATCH * skip matching and do return ""
    ["**", "", false],
    ["*", "anything", true],
    ["a", "a", true],
    ["a", "A", false],
    ["h?llo", "hello", true],
    ["h?llo", "hllo", false],
    ["h*llo", "hllo", true],
    ["h*llo", "heeeello", true],
    ["h*llo", "hello!", false],
    ["h[ae]llo", "hallo", true],
    ["h[ae]llo", "hillo", false],
    ["h[^e]llo", "hallo", true],
    ["h[^e]llo", "hello", false],
    ["h[a-b]llo", "hbllo", true],
    ["h[a-b]llo", "hcllo", false],
    ["h[b-a]llo", "hallo", true], // reversed range
    ["[a-]", "-", false], // "a-" then "]" : '-' is a range start needing 3 chars
    ["[a\\-c]", "-", true],
    ["[a\\-c]", "b", false],
    ["[\\]]", "]", true],
    ["[]", "]", false],
    ["[", "a", false],
    ["[^", "a", true], // unterminated negated set matches any one byte
    ["[abc", "b", true],
    ["a\\*b", "a*b", true],
    ["a\\*b", "axb", false],
    ["a\\", "a\\", true], // a trailing backslash is literal
    ["\\?", "?", true],
    ["\\?", "x", false],
    ["*a*b*c", "xaxbxc", true],
    ["*a*b*c", "xaxbx", false],
    ["**o", "foo", true],
    ["a*", "a", true],
    ["a**", "a", true],
    ["?", "", false],
    ["\x00*\xff", "\x00\x01\xff", true],
    ["[\x80-\xff]", "\xc3", true],
    ["[\x80-\xff]", "a", false],
  ];
  for (const [pattern, key, match] of cases) {
    test(`${JSON.stringify(pattern)} ${match ? "matches" : "does not match"} ${JSON.stringify(key)}`, () => {
      expect(globMatch(pattern, key)).toBe(match);
    });
  }

  test("many stars against a long non-matching key stay fast (Redis's skipLongerMatches)", () => {
    const key = "a".repeat(10_000);
    const pattern = `${"*a".repeat(40)}*b`;
    expect(globMatch(pattern, key)).toBe(false);
  });

  test("nesting past the limit gives no match instead of a stack overflow", () => {
    const pattern = "*a".repeat(1100);
    expect(globMatch(pattern, "a".repeat(1100))).toBe(false);
    expect(globMatch("*a".repeat(900), "a".repeat(900))).toBe(true);
  });
});

test("globMatchesAll", () => {
  expect(globMatchesAll("*")).toBe(true);
  expect(globMatchesAll("***")).toBe(false);
  expect(globMatchesAll("")).toBe(false);
  expect(globMatchesAll("*a")).toBe(false);
  expect(globMatchesAll("\\*")).toBe(false);
});
