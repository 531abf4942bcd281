// The data plane's view of the world: a frozen per-config snapshot plus long-lived traffic state.
import type { MeridianConfig } from '../config/types.ts';
import type { Router } from '../routing/types.ts';
import type { PoolSet, UpstreamPools } from './pools.ts';
import type { GeoLocator } from '../geo/locator.ts';
import type { UploadPins } from './upload-pins.ts';
import type { EndpointLoadTable } from './load.ts';
import type { OutcomeSink } from '../health/outlier.ts';
import { STAT, STAT_ROW } from '../observe/thread-stats.ts';
import { EDGE_ROW, EDGE_STAT } from '../observe/edge-stats.ts';
import type { TlsSnapshot } from '../listen/tls.ts';
import type { RateBuckets } from './rate-buckets.ts';
import { RateLimiter } from './rate-limit.ts';

/** Built once per config load and swapped as one reference; requests keep the snapshot they started with. */
export interface DataPlane {
  readonly config: MeridianConfig;
  readonly router: Router;
  /** This snapshot's pools by its own endpoint numbers: an exchange dispatches through it for its whole life. */
  readonly pools: PoolSet;
  /** Per endpoint index: the routing response headers, or null when they are turned off. */
  readonly routingHeaders: readonly (readonly string[] | null)[];
  readonly traffic: Traffic;
  readonly locator: GeoLocator;
  readonly uploadPins: UploadPins;
  readonly load: EndpointLoadTable;
  readonly outcomes: OutcomeSink;
  /** The certificates and session-ticket key the HTTPS listeners serve with (plain data; src/listen/tls.ts builds contexts). */
  readonly tls: TlsSnapshot;
  /** The process-wide token buckets of the rate limits (src/proxy/rate-buckets.ts). */
  readonly rateBuckets: RateBuckets;
  /** This config's rate-limit rules over `rateBuckets`. */
  readonly rateLimiter: RateLimiter;
}

/** Long-lived parts that a new snapshot reuses. */
export interface DataPlaneParts {
  /** The registry that hands each endpoint list its pool set. */
  readonly pools: UpstreamPools;
  readonly traffic: Traffic;
  readonly locator: GeoLocator;
  readonly uploadPins: UploadPins;
  readonly load: EndpointLoadTable;
  readonly outcomes: OutcomeSink;
  readonly tls: TlsSnapshot;
  /** Kept across reloads that keep the same rate-limit groups and rules; each snapshot gets its own limiter over them. */
  readonly rateBuckets: RateBuckets;
}

export function createDataPlane(config: MeridianConfig, router: Router, parts: DataPlaneParts): DataPlane {
  const pools = parts.pools.sync(config.topology.endpoints, config.timeouts);
  const routingHeaders = config.topology.endpoints.map((e) =>
    config.headers.routingHeaders ? Object.freeze(['x-meridian-region', e.region, 'x-meridian-zone', e.zone]) : null,
  );
  const rateLimiter = new RateLimiter(config.rateLimits, config.input.geo.trustedProxies, parts.rateBuckets);
  return Object.freeze({ ...parts, pools, config, router, routingHeaders: Object.freeze(routingHeaders), rateLimiter });
}

/** Slots of the process-wide traffic counters; each thread's share of them follows, a 64-byte row per thread. */
const INFLIGHT = 0;
const RETRYING = 1;
/** Upload chunk bytes held for retries (src/proxy/held-chunk.ts), against `uploads.retryBufferBytes`. */
const HELD_BYTES = 2;
const ROW = 16;

/**
 * Counters and open tunnels that outlive any one config snapshot; shutdown waits on them. Exchanges in flight and
 * retrying are counted for the whole process in shared memory, because the retry budget is a share of all traffic.
 * Requests, open connections and tunnels go to this thread's stats row, which the metrics add up across threads;
 * draining, the tunnels themselves and who waits for idle belong to the thread that serves them.
 */
export class Traffic {
  draining = false;
  /** Open WebSocket tunnels, from the upgrade request until the client's socket closes. */
  readonly tunnels = new Set<TunnelHandle>();
  readonly #counters: Int32Array<SharedArrayBuffer>;
  /** This thread's share: [INFLIGHT] its own exchanges (its shutdown waits for these, not others'), [RETRYING]. */
  readonly #own: Int32Array<SharedArrayBuffer>;
  readonly #stats: Float64Array;
  /** This thread's row of the edge stats (src/observe/edge-stats.ts): rate-limit refusals, redirects. */
  readonly #edge: Float64Array;
  #idleWaiters: (() => void)[] = [];
  #tunnelWaiters: (() => void)[] = [];

  /**
   * New process-wide counters, or a view over the ones another thread allocated; `stats` is this thread's row of
   * the shared thread stats (src/observe/thread-stats.ts), by default a row of its own; `thread` is this thread's
   * row of the counters.
   */
  constructor(counters: SharedArrayBuffer = Traffic.allocate(), stats: Float64Array = new Float64Array(STAT_ROW), thread = 0, edge: Float64Array = new Float64Array(EDGE_ROW)) {
    this.#counters = new Int32Array(counters);
    this.#stats = stats;
    this.#edge = edge;
    if (this.#counters.length < 2 * ROW || this.#counters.length % ROW !== 0) throw new RangeError('traffic counters have the wrong size');
    if ((thread + 2) * ROW > this.#counters.length) throw new RangeError(`traffic counters have no row for thread ${thread}`);
    this.#own = this.#counters.subarray((thread + 1) * ROW, (thread + 1) * ROW + 3);
  }

  /** `threads`: how many data-plane threads will count. */
  static allocate(threads = 1): SharedArrayBuffer {
    return new SharedArrayBuffer((threads + 1) * ROW * Int32Array.BYTES_PER_ELEMENT);
  }

  /**
   * `thread` died with exchanges open: take them out of the process's counts (and the chunk bytes it held), or the
   * retry budget would be reckoned against exchanges that no longer exist. Called once the thread has exited, so nothing writes its row any more.
   */
  forget(thread: number): void {
    const at = (thread + 1) * ROW;
    if (at + ROW > this.#counters.length) return;
    for (const slot of [INFLIGHT, RETRYING, HELD_BYTES]) {
      Atomics.sub(this.#counters, slot, this.#counters[at + slot]);
      this.#counters[at + slot] = 0;
    }
  }

  /** The process-wide counters, for another thread's view. */
  get buffer(): SharedArrayBuffer {
    return this.#counters.buffer;
  }

  /** One more of a per-thread counter (src/observe/thread-stats.ts STAT), for the metrics to add up. */
  tally(stat: number): void {
    this.#stats[stat]++;
  }

  /** A request refused by rate-limit rule `rule` (its index in `rateLimits.rules`). */
  rateLimited(rule: number): void {
    this.#edge[EDGE_STAT.rateLimited + rule]++;
  }

  /** A request redirected to region `region` (its index in the topology). */
  redirected(region: number): void {
    this.#edge[EDGE_STAT.redirected + region]++;
  }

  connectionOpened(): void {
    this.#stats[STAT.connections]++;
  }

  connectionClosed(): void {
    this.#stats[STAT.connections]--;
  }

  /** HTTP exchanges in flight in the whole process. */
  get inflight(): number {
    return Atomics.load(this.#counters, INFLIGHT);
  }

  /** Exchanges in the whole process that have retried at least once and are still open: the retry budget counts these. */
  get retrying(): number {
    return Atomics.load(this.#counters, RETRYING);
  }

  exchangeStarted(): void {
    this.#own[INFLIGHT]++;
    this.#stats[STAT.requests]++;
    Atomics.add(this.#counters, INFLIGHT, 1);
  }

  exchangeEnded(): void {
    Atomics.sub(this.#counters, INFLIGHT, 1);
    if (--this.#own[INFLIGHT] === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /**
   * A retry is admitted while retrying exchanges stay under `percent` of those in flight, or under `minimum`. The
   * check and the increment are one compare-and-swap, so threads admitting at once never overshoot the budget.
   */
  admitRetry(percent: number, minimum: number): boolean {
    const counters = this.#counters;
    let retrying = Atomics.load(counters, RETRYING);
    while (retrying < Math.max(minimum, (Atomics.load(counters, INFLIGHT) * percent) / 100)) {
      const seen = Atomics.compareExchange(counters, RETRYING, retrying, retrying + 1);
      if (seen === retrying) {
        this.#own[RETRYING]++;
        return true;
      }
      retrying = seen;
    }
    return false;
  }

  retryEnded(): void {
    Atomics.sub(this.#counters, RETRYING, 1);
    this.#own[RETRYING]--;
  }

  /** Upload chunk bytes held for retries in the whole process. */
  get heldBytes(): number {
    return Atomics.load(this.#counters, HELD_BYTES);
  }

  /** Reserve `bytes` of the process's chunk-retry memory unless that would pass `limit`; one compare-and-swap. */
  tryHold(bytes: number, limit: number): boolean {
    const counters = this.#counters;
    let held = Atomics.load(counters, HELD_BYTES);
    while (held + bytes <= limit) {
      const seen = Atomics.compareExchange(counters, HELD_BYTES, held, held + bytes);
      if (seen === held) {
        this.#own[HELD_BYTES] += bytes;
        return true;
      }
      held = seen;
    }
    return false;
  }

  releaseHeld(bytes: number): void {
    Atomics.sub(this.#counters, HELD_BYTES, bytes);
    this.#own[HELD_BYTES] -= bytes;
  }

  tunnelOpened(tunnel: TunnelHandle): void {
    this.tunnels.add(tunnel);
    this.#stats[STAT.websockets] = this.tunnels.size;
  }

  tunnelClosed(tunnel: TunnelHandle): void {
    this.tunnels.delete(tunnel);
    this.#stats[STAT.websockets] = this.tunnels.size;
    if (this.tunnels.size === 0 && this.#tunnelWaiters.length > 0) {
      const waiters = this.#tunnelWaiters;
      this.#tunnelWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Resolves when no tunnel is open, or after `timeoutMs`; true when the last one closed. */
  whenNoTunnels(timeoutMs: number): Promise<boolean> {
    return waitFor(this.tunnels.size === 0, this.#tunnelWaiters, timeoutMs);
  }

  /** Resolves when no HTTP exchange of this thread is in flight, or after `timeoutMs`; true when it went idle. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    return waitFor(this.#own[INFLIGHT] === 0, this.#idleWaiters, timeoutMs);
  }
}

/** What shutdown asks of an open WebSocket tunnel (src/proxy/websocket.ts). */
export interface TunnelHandle {
  /** Close toward the client with 1001 Going Away between two messages, let the upstream side follow, cut both after `graceMs`. */
  goAway(graceMs: number): void;
  /** Cut both sides now. */
  destroy(): void;
}

function waitFor(done: boolean, waiters: (() => void)[], timeoutMs: number): Promise<boolean> {
  if (done) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    waiters.push(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
