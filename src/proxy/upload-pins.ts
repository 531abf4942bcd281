// Chunked-upload pinning: every chunk of one Appwrite upload must reach the region that took the first. Pins are keyed
// by the upload's identity (project and file id), learned from the first chunk's answer, and live in shared memory,
// so the chunks of one upload agree on a region whichever data-plane thread serves them.
import type { IncomingHttpHeaders } from 'node:http';
import { SharedPinTable, type PinTableDescriptor } from './shared-pin-table.ts';

/** Everything another thread needs to open the same pins: buffers and numbers only. */
export interface UploadPinsMemory {
  readonly ttlMs: number;
  readonly uploads: PinTableDescriptor;
  readonly regions: SharedArrayBuffer;
}

/** Every thread's clock starts at its own origin; added to it, the threads agree on the time to the millisecond. */
const ORIGIN = performance.timeOrigin;
const clock = (): number => ORIGIN + performance.now();

/** A ttl of 0 has always meant pins that never expire (lru-cache's meaning): a century, so the arithmetic stays finite. */
const NEVER_MS = 100 * 365 * 86_400_000;
const lifetime = (ttlMs: number): number => (ttlMs === 0 ? NEVER_MS : ttlMs);

/** What a chunk request says about its upload (README: Routing, affinity). */
export type ChunkKind =
  /** `Content-Range: bytes 0-…` without an id: it starts an upload, whose id its answer carries. */
  | { readonly kind: 'first' }
  /** A chunk with `x-appwrite-id`: it belongs to the upload under `key`. */
  | { readonly kind: 'later'; readonly key: string }
  | null;

const FIRST: ChunkKind = Object.freeze({ kind: 'first' });

/**
 * Which upload a request with `Content-Range` belongs to. Appwrite SDKs send the first chunk without an id and learn
 * the file id from its answer; later chunks (node-appwrite sends up to 8 at once) carry it in `x-appwrite-id`. The
 * key is the project and the id together: two projects may use the same file id, and each lives where its project does.
 */
export function chunkKind(headers: IncomingHttpHeaders, project: string | undefined): ChunkKind {
  const id = headers['x-appwrite-id'];
  if (typeof id === 'string' && id !== '') return { kind: 'later', key: uploadKey(project, id) };
  const range = headers['content-range'];
  return range !== undefined && /^bytes 0-/i.test(range) ? FIRST : null;
}

/** The project's length leads, so no project and id pair can spell another's key. */
export function uploadKey(project: string | undefined, id: string): string {
  const name = project ?? '';
  return `${name.length}:${name}${id}`;
}

/**
 * Upload key → region. Nothing is pinned before an upload's first answer: until then its id is unknown, and a pin by
 * anything else (client and path) would let two uploads from one client take each other's region.
 *
 * The bound is kept among neighbours, not exactly: a pin added past `maxEntries` pushes out the nearby pin that
 * expires soonest, which for uploads (every chunk renews its pin) is the least recently used nearby. Chunks served at
 * once in different threads settle on one region: the first pin made for an upload stays.
 */
export class UploadPins {
  #ttlMs: number;
  #lifetimeMs: number;
  #uploads: SharedPinTable;
  readonly #regions: RegionNames;

  /** New pins for these bounds, or this thread's view of pins another thread made. */
  constructor(ttlMs: number, maxEntries: number);
  constructor(memory: UploadPinsMemory);
  constructor(source: number | UploadPinsMemory, maxEntries = 0) {
    if (typeof source === 'number') {
      this.#ttlMs = source;
      this.#lifetimeMs = lifetime(source);
      this.#uploads = SharedPinTable.create(maxEntries, clock());
      this.#regions = new RegionNames(RegionNames.allocate());
    } else {
      this.#ttlMs = source.ttlMs;
      this.#lifetimeMs = lifetime(source.ttlMs);
      this.#uploads = SharedPinTable.attach(source.uploads);
      this.#regions = new RegionNames(source.regions);
    }
  }

  /** What another thread attaches to. A reload with new bounds replaces the table, so it is sent again after one. */
  get memory(): UploadPinsMemory {
    return { ttlMs: this.#ttlMs, uploads: this.#uploads.descriptor, regions: this.#regions.buffer };
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  get maxEntries(): number {
    return this.#uploads.maxEntries;
  }

  /** Uploads pinned now (expired ones included until their slot is reused). */
  get entries(): { readonly uploads: number } {
    return { uploads: this.#uploads.size };
  }

  /**
   * Readies a config reload's bounds and returns the swap; the new table is allocated here, so the swap cannot
   * fail. A table's size is fixed, so the pins move over: uploads in progress keep their region (the most recent
   * ones, when the new bound is smaller), and their age carries over into the new ttl.
   */
  prepare(ttlMs: number, maxEntries: number): () => void {
    if (ttlMs === this.#ttlMs && maxEntries === this.maxEntries) return () => {};
    const uploads = SharedPinTable.create(maxEntries, clock());
    return () => {
      this.#uploads.copyTo(uploads, clock(), lifetime(ttlMs) - this.#lifetimeMs);
      this.#uploads = uploads;
      this.#ttlMs = ttlMs;
      this.#lifetimeMs = lifetime(ttlMs);
    };
  }

  /** The region the upload under `key` is pinned to, or undefined; reading a pin renews it (the ttl runs from the last chunk). */
  regionFor(key: string): string | undefined {
    const region = this.#uploads.get(key, clock(), this.#lifetimeMs);
    return region === -1 ? undefined : this.#regions.name(region);
  }

  /**
   * `region` accepted a chunk of the upload under `key`: its first chunk (the id read from the answer), or a later
   * one whose upload had no pin here (another instance, or this one before a restart, saw the first). An existing
   * pin stands: a later chunk's answer never moves it.
   */
  pin(key: string, region: string): void {
    const index = this.#regions.indexOf(region);
    if (index !== -1) this.#uploads.add(key, index, clock(), this.#lifetimeMs);
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
