// The data plane's view of the world: a frozen per-config snapshot plus long-lived traffic state.
import type { MeridianConfig } from '../config/types.ts';
import type { Router } from '../routing/types.ts';
import type { PoolSet, UpstreamPools } from './pools.ts';
import type { GeoLocator } from '../geo/locator.ts';
import type { UploadPins } from './upload-pins.ts';
import type { EndpointLoadTable } from './load.ts';
import type { OutcomeSink } from '../health/outlier.ts';

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
}

export function createDataPlane(config: MeridianConfig, router: Router, parts: DataPlaneParts): DataPlane {
  const pools = parts.pools.sync(config.topology.endpoints, config.timeouts);
  const routingHeaders = config.topology.endpoints.map((e) =>
    config.headers.routingHeaders ? Object.freeze(['x-meridian-region', e.region, 'x-meridian-zone', e.zone]) : null,
  );
  return Object.freeze({ ...parts, pools, config, router, routingHeaders: Object.freeze(routingHeaders) });
}

/** Counters and open tunnels that outlive any one config snapshot; shutdown waits on them. */
export class Traffic {
  inflight = 0;
  /** Exchanges that have retried at least once and are still open: the retry budget counts these. */
  retrying = 0;
  /** Open downstream HTTP connections (WebSockets are in `tunnels`). */
  connections = 0;
  draining = false;
  /** Open WebSocket tunnels, from the upgrade request until the client's socket closes. */
  readonly tunnels = new Set<TunnelHandle>();
  #idleWaiters: (() => void)[] = [];
  #tunnelWaiters: (() => void)[] = [];

  exchangeStarted(): void {
    this.inflight++;
  }

  exchangeEnded(): void {
    this.inflight--;
    if (this.inflight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** A retry is admitted while retrying exchanges stay under `percent` of those in flight, or under `minimum`. */
  admitRetry(percent: number, minimum: number): boolean {
    if (this.retrying >= Math.max(minimum, (this.inflight * percent) / 100)) return false;
    this.retrying++;
    return true;
  }

  retryEnded(): void {
    this.retrying--;
  }

  tunnelOpened(tunnel: TunnelHandle): void {
    this.tunnels.add(tunnel);
  }

  tunnelClosed(tunnel: TunnelHandle): void {
    this.tunnels.delete(tunnel);
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

  /** Resolves when no HTTP exchange is in flight, or after `timeoutMs`; true when it went idle. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    return waitFor(this.inflight === 0, this.#idleWaiters, timeoutMs);
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
