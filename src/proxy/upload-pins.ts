// Chunked-upload pinning: every chunk of one Appwrite upload must reach the region that took the first.
import { LRUCache } from 'lru-cache';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Appwrite SDKs send the first chunk (`Content-Range: bytes 0-…`) without an id and learn the file id from its
 * response; later chunks, up to 8 at once in node-appwrite ≥ 26, carry it in `x-appwrite-id`. So the first chunk
 * is remembered by client and path, and the first chunk with an id adopts that region for the whole upload.
 */
export class UploadPins {
  readonly #byUpload: LRUCache<string, string>;
  readonly #byFirstChunk: LRUCache<string, string>;

  constructor(ttlMs: number, maxEntries: number) {
    this.#byUpload = new LRUCache({ max: maxEntries, ttl: ttlMs, updateAgeOnGet: true });
    this.#byFirstChunk = new LRUCache({ max: maxEntries, ttl: ttlMs });
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

function isFirstChunk(range: string | undefined): boolean {
  return range !== undefined && /^bytes 0-/i.test(range);
}

function firstChunkKey(clientIp: string, path: string): string {
  const query = path.indexOf('?');
  return `${clientIp} ${query === -1 ? path : path.slice(0, query)}`;
}
