// Chunked-upload pinning: every chunk of one Appwrite upload must reach the region that took the first.
import { LRUCache } from 'lru-cache';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Appwrite SDKs send the first chunk (`Content-Range: bytes 0-…`) without an id and learn the file id from its
 * response; later chunks, up to 8 at once in node-appwrite ≥ 26, carry it in `x-appwrite-id`. So the first chunk
 * is remembered by client and path, and the first chunk with an id adopts that region for the whole upload.
 */
export class UploadPins {
  #byUpload: LRUCache<string, string>;
  #byFirstChunk: LRUCache<string, string>;

  constructor(ttlMs: number, maxEntries: number) {
    this.#byUpload = new LRUCache({ max: maxEntries, ttl: ttlMs, updateAgeOnGet: true });
    this.#byFirstChunk = new LRUCache({ max: maxEntries, ttl: ttlMs });
  }

  get ttlMs(): number {
    return this.#byUpload.ttl;
  }

  get maxEntries(): number {
    return this.#byUpload.max;
  }

  /** Uploads pinned by id, and first chunks waiting for their upload's id; either may hold up to `maxEntries`. */
  get entries(): { readonly uploads: number; readonly firstChunks: number } {
    return { uploads: this.#byUpload.size, firstChunks: this.#byFirstChunk.size };
  }

  /**
   * Readies a config reload's bounds and returns the swap; the new caches are allocated here, so the swap cannot
   * fail. lru-cache fixes `max` at construction, so the pins move over: uploads in progress keep their region (the
   * most recent ones, when the new bound is smaller), and their age carries over into the new ttl.
   */
  prepare(ttlMs: number, maxEntries: number): () => void {
    if (ttlMs === this.ttlMs && maxEntries === this.maxEntries) return () => {};
    const byUpload = new LRUCache<string, string>({ max: maxEntries, ttl: ttlMs, updateAgeOnGet: true });
    const byFirstChunk = new LRUCache<string, string>({ max: maxEntries, ttl: ttlMs });
    return () => {
      this.#byUpload = carryOver(this.#byUpload, byUpload);
      this.#byFirstChunk = carryOver(this.#byFirstChunk, byFirstChunk);
    };
  }

  /** The pinned region for a chunk, or undefined for requests that are not later chunks of a known upload. */
  regionFor(headers: IncomingHttpHeaders, clientIp: string, path: string): string | undefined {
    const id = headers['x-appwrite-id'];
    if (typeof id !== 'string' || id === '') return undefined;
    const pinned = this.#byUpload.get(id);
    if (pinned !== undefined) return pinned;
    const first = this.#byFirstChunk.get(firstChunkKey(clientIp, path));
    if (first !== undefined) this.#byUpload.set(id, first);
    return first;
  }

  /** Called when an upload chunk got a response from `region`. */
  served(headers: IncomingHttpHeaders, clientIp: string, path: string, region: string): void {
    const id = headers['x-appwrite-id'];
    if (typeof id === 'string' && id !== '') {
      if (!this.#byUpload.has(id)) this.#byUpload.set(id, region);
    } else if (isFirstChunk(headers['content-range'])) {
      this.#byFirstChunk.set(firstChunkKey(clientIp, path), region);
    }
  }
}

/** `dump()` lists least recent first, so loading it into a smaller cache keeps the most recent pins. */
function carryOver(from: LRUCache<string, string>, to: LRUCache<string, string>): LRUCache<string, string> {
  to.load(from.dump().map(([key, entry]) => [key, { ...entry, ttl: to.ttl }]));
  return to;
}

function isFirstChunk(range: string | undefined): boolean {
  return range !== undefined && /^bytes 0-/i.test(range);
}

function firstChunkKey(clientIp: string, path: string): string {
  const query = path.indexOf('?');
  return `${clientIp} ${query === -1 ? path : path.slice(0, query)}`;
}
