// Idle timeouts for open WebSocket tunnels: one interval per thread sweeps every open tunnel, instead of a timer on
// each of its two sockets. Ten thousand idle realtime clients then cost one timer, not twenty thousand re-armed ones,
// and moving a byte costs one field write. The price is coarseness: a tunnel is cut between its idle timeout and one
// sweep period later, which against timeouts of minutes is nothing.

/** What the sweep needs of a tunnel. */
export interface IdleWatched {
  /** Time since the last byte in either direction, as the sweep counts it; the data path sets it back to 0. */
  quietMs: number;
  /** The idle timeout this tunnel opened with. */
  readonly idleLimitMs: number;
  /** Called once, when quietMs reaches idleLimitMs; the tunnel is no longer watched by then. */
  cutIdle(): void;
}

/** One second: idle timeouts are at least minutes (timeouts.websocketIdle), so a cut is at most a second late. */
export const SWEEP_PERIOD_MS = 1_000;

export class IdleSweep<T extends IdleWatched> {
  readonly periodMs: number;
  readonly #watched = new Set<T>();
  #timer: NodeJS.Timeout | undefined = undefined;

  constructor(periodMs: number = SWEEP_PERIOD_MS) {
    this.periodMs = periodMs;
  }

  get size(): number {
    return this.#watched.size;
  }

  /** Starts watching; the interval runs only while something is watched, and never keeps the process alive. */
  add(item: T): void {
    item.quietMs = 0;
    this.#watched.add(item);
    if (this.#timer === undefined) this.#timer = setInterval(sweep, this.periodMs, this).unref();
  }

  delete(item: T): void {
    if (!this.#watched.delete(item) || this.#watched.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One pass: every watched item ages by a period; those past their limit leave the set and are told. */
  tick(): void {
    const period = this.periodMs;
    for (const item of this.#watched) {
      item.quietMs += period;
      if (item.quietMs < item.idleLimitMs) continue;
      // Deleting the current entry keeps a Set's iteration going with the next one.
      this.delete(item);
      item.cutIdle();
    }
  }
}

function sweep(self: IdleSweep<IdleWatched>): void {
  self.tick();
}
