// One undici Pool per endpoint origin, kept across config reloads; the only undici importer.
// Pool's own module, not the package index: the index also loads fetch, WebSocket, caches and mocks (109 modules
// where Pool needs about 25), which no data-plane thread uses and which cost each thread about 6 MiB.
import Pool from 'undici/lib/dispatcher/pool.js';
import type { Dispatcher } from 'undici';
import type { Endpoint, Timeouts } from '../config/types.ts';
import { DEFAULT_UPSTREAM_KEEP_ALIVE_MS } from '../config/defaults.ts';

export type { Dispatcher };

/**
 * The pools one endpoint list dispatches to, indexed by that list's `Endpoint.index`. Endpoint numbers mean
 * nothing outside the config they came from, so an exchange keeps the set its snapshot had for its whole life,
 * failovers included; a pool that a reload removed closes only once no exchange can still reach it.
 */
export class PoolSet {
  readonly #byIndex: readonly Pool[];
  readonly #owner: UpstreamPools;
  /** Exchanges started on this set and not yet ended. */
  #active = 0;
  #retired = false;

  constructor(byIndex: readonly Pool[], owner: UpstreamPools) {
    this.#byIndex = byIndex;
    this.#owner = owner;
  }

  get(endpoint: Endpoint): Pool {
    return this.#byIndex[endpoint.index];
  }

  /** The distinct pools of this set. */
  pools(): Set<Pool> {
    return new Set(this.#byIndex);
  }

  acquire(): void {
    this.#active++;
  }

  release(): void {
    if (--this.#active === 0 && this.#retired) this.#owner.released(this);
  }

  /** A newer set replaced this one: its pools stay open while any of its exchanges is still running. */
  retire(): void {
    this.#retired = true;
    if (this.#active === 0) this.#owner.released(this);
  }
}

export class UpstreamPools {
  /** How many live sets (the current one, and retired ones with exchanges running) hold each pool. */
  #holders = new Map<Pool, number>();
  #byOrigin = new Map<string, Pool>();
  #current: PoolSet | null = null;
  #currentKey = '';
  #timeouts: Timeouts | undefined;

  /**
   * The pool set for an endpoint list. The same list and timeouts give back the current set (health changes rebuild
   * snapshots often); anything else makes a new set that reuses pools by origin, and retires the old one.
   */
  sync(endpoints: readonly Endpoint[], timeouts: Timeouts): PoolSet {
    const key = endpoints.map((e) => e.key).join('\n');
    if (this.#current !== null && key === this.#currentKey && sameTimeouts(this.#timeouts!, timeouts)) return this.#current;
    // Pool options are fixed at construction, so new timeouts need fresh pools.
    if (this.#timeouts !== undefined && !sameTimeouts(this.#timeouts, timeouts)) this.#byOrigin = new Map();
    this.#timeouts = timeouts;
    const byIndex: Pool[] = [];
    for (const endpoint of endpoints) {
      let pool = this.#byOrigin.get(endpoint.origin);
      if (pool === undefined) this.#byOrigin.set(endpoint.origin, (pool = createPool(endpoint.origin, timeouts)));
      byIndex[endpoint.index] = pool;
    }
    // Origins the new list no longer names are forgotten here; their pools close when their last set lets go.
    const named = new Set(endpoints.map((e) => e.origin));
    for (const origin of this.#byOrigin.keys()) if (!named.has(origin)) this.#byOrigin.delete(origin);
    const next = new PoolSet(Object.freeze(byIndex), this);
    for (const pool of next.pools()) this.#holders.set(pool, (this.#holders.get(pool) ?? 0) + 1);
    const previous = this.#current;
    this.#current = next;
    this.#currentKey = key;
    previous?.retire();
    return next;
  }

  /** Called once by a retired set whose last exchange ended. */
  released(set: PoolSet): void {
    for (const pool of set.pools()) {
      const holders = (this.#holders.get(pool) ?? 1) - 1;
      if (holders > 0) {
        this.#holders.set(pool, holders);
        continue;
      }
      this.#holders.delete(pool);
      // close() lets requests already queued on the pool finish; nothing new can reach it.
      void pool.close();
    }
  }

  async close(): Promise<void> {
    const pools = [...this.#holders.keys()];
    this.#holders.clear();
    this.#byOrigin.clear();
    this.#current = null;
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
