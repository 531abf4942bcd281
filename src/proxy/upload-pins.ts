// Chunked-upload pinning: every chunk of one Appwrite upload must reach the region that took the first. The pins live
// in shared memory, so the chunks of one upload agree on a region whichever data-plane thread serves them.
import type { IncomingHttpHeaders } from 'node:http';
import { SharedPinTable, type PinTableDescriptor } from './shared-pin-table.ts';

/** Everything another thread needs to open the same pins: buffers and numbers only. */
export interface UploadPinsMemory {
  readonly ttlMs: number;
  readonly uploads: PinTableDescriptor;
  readonly firstChunks: PinTableDescriptor;
  readonly regions: SharedArrayBuffer;
}

/** Every thread's clock starts at its own origin; added to it, the threads agree on the time to the millisecond. */
const ORIGIN = performance.timeOrigin;
const clock = (): number => ORIGIN + performance.now();

/** A ttl of 0 has always meant pins that never expire (lru-cache's meaning): a century, so the arithmetic stays finite. */
const NEVER_MS = 100 * 365 * 86_400_000;
const lifetime = (ttlMs: number): number => (ttlMs === 0 ? NEVER_MS : ttlMs);

/**
 * Appwrite SDKs send the first chunk (`Content-Range: bytes 0-…`) without an id and learn the file id from its
 * response; later chunks, up to 8 at once in node-appwrite ≥ 26, carry it in `x-appwrite-id`. So the first chunk
 * is remembered by client and path, and the first chunk with an id adopts that region for the whole upload.
 *
 * The bound is kept among neighbours, not exactly: a pin added past `maxEntries` pushes out the nearby pin that
 * expires soonest, which for uploads (every chunk renews its pin) is the least recently used nearby. Chunks served at
 * once in different threads settle on one region: the first pin made for an upload stays.
 */
export class UploadPins {
  #ttlMs: number;
  #lifetimeMs: number;
  #uploads: SharedPinTable;
  #firstChunks: SharedPinTable;
  readonly #regions: RegionNames;

  /** New pins for these bounds, or this thread's view of pins another thread made. */
  constructor(ttlMs: number, maxEntries: number);
  constructor(memory: UploadPinsMemory);
  constructor(source: number | UploadPinsMemory, maxEntries = 0) {
    if (typeof source === 'number') {
      const now = clock();
      this.#ttlMs = source;
      this.#lifetimeMs = lifetime(source);
      this.#uploads = SharedPinTable.create(maxEntries, now);
      this.#firstChunks = SharedPinTable.create(maxEntries, now);
      this.#regions = new RegionNames(RegionNames.allocate());
    } else {
      this.#ttlMs = source.ttlMs;
      this.#lifetimeMs = lifetime(source.ttlMs);
      this.#uploads = SharedPinTable.attach(source.uploads);
      this.#firstChunks = SharedPinTable.attach(source.firstChunks);
      this.#regions = new RegionNames(source.regions);
    }
  }

  /** What another thread attaches to. A reload with new bounds replaces the tables, so it is sent again after one. */
  get memory(): UploadPinsMemory {
    return { ttlMs: this.#ttlMs, uploads: this.#uploads.descriptor, firstChunks: this.#firstChunks.descriptor, regions: this.#regions.buffer };
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  get maxEntries(): number {
    return this.#uploads.maxEntries;
  }

  /** Uploads pinned by id, and first chunks waiting for their upload's id; either may hold up to `maxEntries`. */
  get entries(): { readonly uploads: number; readonly firstChunks: number } {
    return { uploads: this.#uploads.size, firstChunks: this.#firstChunks.size };
  }

  /**
   * Readies a config reload's bounds and returns the swap; the new tables are allocated here, so the swap cannot
   * fail. A table's size is fixed, so the pins move over: uploads in progress keep their region (the most recent
   * ones, when the new bound is smaller), and their age carries over into the new ttl.
   */
  prepare(ttlMs: number, maxEntries: number): () => void {
    if (ttlMs === this.#ttlMs && maxEntries === this.maxEntries) return () => {};
    const now = clock();
    const uploads = SharedPinTable.create(maxEntries, now);
    const firstChunks = SharedPinTable.create(maxEntries, now);
    return () => {
      const swappedAt = clock();
      const extendMs = lifetime(ttlMs) - this.#lifetimeMs;
      this.#uploads.copyTo(uploads, swappedAt, extendMs);
      this.#firstChunks.copyTo(firstChunks, swappedAt, extendMs);
      this.#uploads = uploads;
      this.#firstChunks = firstChunks;
      this.#ttlMs = ttlMs;
      this.#lifetimeMs = lifetime(ttlMs);
    };
  }

  /** The pinned region for a chunk, or undefined for requests that are not later chunks of a known upload. */
  regionFor(headers: IncomingHttpHeaders, clientIp: string, path: string): string | undefined {
    const id = headers['x-appwrite-id'];
    if (typeof id !== 'string' || id === '') return undefined;
    const now = clock();
    // Reading an upload's pin keeps it alive: the ttl runs from the upload's last chunk.
    let region = this.#uploads.get(id, now, this.#lifetimeMs);
    if (region === -1) {
      const first = this.#firstChunks.get(firstChunkKey(clientIp, path), now);
      if (first === -1) return undefined;
      // Another thread may have pinned this upload since the read above; its pin stands.
      region = this.#uploads.add(id, first, now, this.#lifetimeMs);
      if (region === -1) region = first;
    }
    return this.#regions.name(region);
  }

  /** Called when an upload chunk got a response from `region`. */
  served(headers: IncomingHttpHeaders, clientIp: string, path: string, region: string): void {
    const id = headers['x-appwrite-id'];
    const hasId = typeof id === 'string' && id !== '';
    if (!hasId && !isFirstChunk(headers['content-range'])) return;
    const index = this.#regions.indexOf(region);
    if (index === -1) return;
    // A later chunk's response never moves its upload's pin; a new first chunk on the same path replaces the old one.
    if (hasId) this.#uploads.add(id, index, clock(), this.#lifetimeMs);
    else this.#firstChunks.set(firstChunkKey(clientIp, path), index, clock(), this.#lifetimeMs);
  }
}

/** Region names live by number: enough for any topology and its renames over a process's life. */
const MAX_NAMES = 1024;
const MAX_NAME_UNITS = 32_768;
/** Int32 words: names numbered so far, code units used so far, then per number its first unit and its length + 1. */
const NAME_COUNT = 0;
const UNITS_USED = 1;
const STARTS = 2;
const SIZES = STARTS + MAX_NAMES;
const NAME_WORDS = SIZES + MAX_NAMES;

/**
 * The pin tables hold a number per region, and this list names it, the same in every thread. A name keeps its
 * number for the life of the process and numbers are never reused, so a reload that renames, reorders, adds or drops
 * regions cannot make a pin point at another region: a pin to a dropped region still names the dropped region.
 */
class RegionNames {
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array<SharedArrayBuffer>;
  readonly #units: Uint16Array<SharedArrayBuffer>;
  /** This thread's copy of what it has read so far. */
  readonly #names: (string | undefined)[] = [];
  readonly #indexes = new Map<string, number>();

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(NAME_WORDS * Int32Array.BYTES_PER_ELEMENT + MAX_NAME_UNITS * Uint16Array.BYTES_PER_ELEMENT);
  }

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#words = new Int32Array(buffer, 0, NAME_WORDS);
    this.#units = new Uint16Array(buffer, NAME_WORDS * Int32Array.BYTES_PER_ELEMENT, MAX_NAME_UNITS);
  }

  name(index: number): string | undefined {
    return this.#names[index] ?? this.#read(index);
  }

  /** The name's number, given one on first sight; -1 once the list is full. */
  indexOf(name: string): number {
    const known = this.#indexes.get(name);
    if (known !== undefined) return known;
    const count = Math.min(Atomics.load(this.#words, NAME_COUNT), MAX_NAMES);
    for (let index = 0; index < count; index++) if (this.name(index) === name) return index;
    return this.#append(name);
  }

  /** Undefined for a number not (yet) named: a pin made by a thread still writing its name reads as no pin. */
  #read(index: number): string | undefined {
    if (index >= Math.min(Atomics.load(this.#words, NAME_COUNT), MAX_NAMES)) return undefined;
    const size = Atomics.load(this.#words, SIZES + index);
    if (size <= 0) return undefined;
    const start = Atomics.load(this.#words, STARTS + index);
    const name = String.fromCharCode(...this.#units.subarray(start, start + size - 1));
    this.#remember(index, name);
    return name;
  }

  /**
   * Takes the next number and the room for the name, then publishes its length last. No lock: two threads naming one
   * region at once can give it two numbers, and both read back as that region, which is all a pin needs.
   */
  #append(name: string): number {
    const words = this.#words;
    let index = Atomics.load(words, NAME_COUNT);
    for (;;) {
      if (index >= MAX_NAMES) return -1;
      const seen = Atomics.compareExchange(words, NAME_COUNT, index, index + 1);
      if (seen === index) break;
      index = seen;
    }
    const start = Atomics.add(words, UNITS_USED, name.length);
    if (start + name.length > MAX_NAME_UNITS) return -1;
    for (let i = 0; i < name.length; i++) this.#units[start + i] = name.charCodeAt(i);
    Atomics.store(words, STARTS + index, start);
    Atomics.store(words, SIZES + index, name.length + 1);
    this.#remember(index, name);
    return index;
  }

  #remember(index: number, name: string): void {
    this.#names[index] = name;
    if (!this.#indexes.has(name)) this.#indexes.set(name, index);
  }
}

function isFirstChunk(range: string | undefined): boolean {
  return range !== undefined && /^bytes 0-/i.test(range);
}

function firstChunkKey(clientIp: string, path: string): string {
  const query = path.indexOf('?');
  return `${clientIp} ${query === -1 ? path : path.slice(0, query)}`;
}
