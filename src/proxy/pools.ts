// One undici Pool per endpoint origin, kept across config reloads; the only undici importer.
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { Endpoint, Timeouts } from '../config/types.ts';
import { DEFAULT_UPSTREAM_KEEP_ALIVE_MS } from '../config/defaults.ts';

export type { Dispatcher };

export class UpstreamPools {
  #byOrigin = new Map<string, Pool>();
  /** Indexed by `Endpoint.index` so the request path does an array read, not a map lookup. */
  #byIndex: Pool[] = [];
  #timeouts: Timeouts | undefined;

  /** Point at a new endpoint list, reusing pools whose origin stays and closing the ones that go. */
  sync(endpoints: readonly Endpoint[], timeouts: Timeouts): void {
    if (this.#timeouts !== undefined && !sameTimeouts(this.#timeouts, timeouts)) {
      // Pool options are fixed at construction, so new timeouts need fresh pools.
      for (const pool of this.#byOrigin.values()) void pool.close();
      this.#byOrigin.clear();
    }
    this.#timeouts = timeouts;
    const next = new Map<string, Pool>();
    const byIndex: Pool[] = [];
    for (const endpoint of endpoints) {
      const pool = this.#byOrigin.get(endpoint.origin) ?? next.get(endpoint.origin) ?? createPool(endpoint.origin, timeouts);
      next.set(endpoint.origin, pool);
      byIndex[endpoint.index] = pool;
    }
    for (const [origin, pool] of this.#byOrigin) if (!next.has(origin)) void pool.close();
    this.#byOrigin = next;
    this.#byIndex = byIndex;
  }

  get(endpoint: Endpoint): Pool {
    return this.#byIndex[endpoint.index];
  }

  async close(): Promise<void> {
    const pools = [...this.#byOrigin.values()];
    this.#byOrigin.clear();
    this.#byIndex = [];
    await Promise.all(pools.map((pool) => pool.destroy()));
  }
}

function createPool(origin: string, timeouts: Timeouts): Pool {
  return new Pool(origin, {
    connect: { timeout: timeouts.connect, noDelay: true },
    headersTimeout: timeouts.response,
    bodyTimeout: timeouts.idle,
    keepAliveTimeout: DEFAULT_UPSTREAM_KEEP_ALIVE_MS,
    keepAliveMaxTimeout: DEFAULT_UPSTREAM_KEEP_ALIVE_MS,
  });
}

function sameTimeouts(a: Timeouts, b: Timeouts): boolean {
  return a.connect === b.connect && a.response === b.response && a.idle === b.idle;
}
