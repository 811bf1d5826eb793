// The ticker drives tick() on an interval and stops cleanly (bounded by count and time).
import { expect, test } from "bun:test";
import { Ticker } from "../../src/node/ticker.ts";

test("a ticker calls tick() repeatedly until stopped, then never again", async () => {
  let ticks = 0;
  let third: () => void = () => {};
  const reached = new Promise<void>((r) => (third = r));
  const t = new Ticker({ tick: () => ++ticks === 3 && third() }, 2);
  t.start();
  t.start(); // idempotent: still one interval
  await Promise.race([reached, Bun.sleep(5000)]);
  t.stop();
  expect(ticks).toBeGreaterThanOrEqual(3);
  expect(t.running).toBe(false);
  const at = ticks;
  await Bun.sleep(20);
  expect(ticks).toBe(at);
});

test("a tick that throws stops the ticker and reports the error", async () => {
  let reported: unknown;
  let done: () => void = () => {};
  const failed = new Promise<void>((r) => (done = r));
  const t = new Ticker(
    {
      tick: () => {
        throw new Error("broken invariant");
      },
    },
    1,
    (err) => {
      reported = err;
      done();
    },
  );
  t.start();
  await Promise.race([failed, Bun.sleep(5000)]);
  expect((reported as Error).message).toBe("broken invariant");
  expect(t.running).toBe(false);
  expect(() => new Ticker({ tick: () => {} }, 0)).toThrow("at least 1");
});
