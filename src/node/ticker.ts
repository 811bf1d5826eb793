// The production clock of a RaftNode: tick() every tickMs (the runtime has no timers of its own).

/** Calls `target.tick()` every `tickMs` until stopped. A tick that throws stops the ticker and goes to `onError`. */
export class Ticker {
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly target: { tick(): void },
    readonly tickMs: number,
    private readonly onError: (err: unknown) => void = (err) => {
      throw err;
    },
  ) {
    if (!(tickMs >= 1)) throw new RangeError(`tick interval ${tickMs} ms (at least 1)`);
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      try {
        this.target.tick();
      } catch (err) {
        this.stop();
        this.onError(err);
      }
    }, this.tickMs);
  }

  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }
}
