// One MaxMind-format geo database: reading the file once into shared memory, sanity-checking it (metadata, then the
// coordinates of probe addresses), detecting its schema (GeoIP2 or the flat DB-IP/ip-location-db one), mapping its
// records to GeoLocation (country centroids for country-only records), and attaching readers in other threads.
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Reader } from 'maxmind';
import type { Response } from 'maxmind';

export interface GeoLocation {
  readonly lat: number;
  readonly lon: number;
  /** ISO 3166-1 alpha-2. */
  readonly country: string | null;
  /** AF, AN, AS, EU, NA, OC or SA. */
  readonly continent: string | null;
  /** The database's own radius; null when it gives none or the point is a country centroid. */
  readonly accuracyKm: number | null;
}

export type GeoSchema = 'geoip2-city' | 'geoip2-country' | 'flat-city' | 'flat-country';

export interface GeoDatabaseInfo {
  readonly path: string;
  readonly databaseType: string;
  readonly schema: GeoSchema;
  readonly ipVersion: 4 | 6;
  readonly buildEpoch: Date;
  /** The English description, else the first one, else empty. */
  readonly description: string;
}

/**
 * An opened and checked database as it crosses to other threads by postMessage: structured cloning shares the
 * SharedArrayBuffer instead of copying it, so every thread's reader uses the one resident copy of the file.
 */
export interface PublishedGeoDatabase {
  readonly path: string;
  readonly buffer: SharedArrayBuffer;
  readonly info: GeoDatabaseInfo;
}

export interface GeoDatabase {
  readonly info: GeoDatabaseInfo;
  /** The file's bytes and metadata, for attachGeoDatabase in another thread. */
  readonly published: PublishedGeoDatabase;
  /** The location of an address of the database's IP version; may throw on corrupt data. */
  lookup(ip: string): GeoLocation | null;
}

export class GeoDatabaseError extends Error {
  readonly code = 'GEO_DATABASE_INVALID';
  /** What is wrong, without the file name the message starts with. */
  readonly problem: string;
  constructor(path: string, problem: string, cause?: unknown) {
    super(`geo database ${path}: ${problem}`, { cause });
    this.name = 'GeoDatabaseError';
    this.problem = problem;
  }
}

interface Country {
  readonly continent: string;
  readonly lat: number;
  readonly lon: number;
}

// Read once at startup; a Map so that a corrupt record's country code cannot reach Object.prototype.
const COUNTRIES: ReadonlyMap<string, Country> = new Map(
  Object.entries(JSON.parse(readFileSync(new URL('../../geo-data/countries.json', import.meta.url), 'utf8'))),
);

const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');
const SEPARATOR_BYTES = 16;
// Schema detection reads the first records in address order; this bounds the walk, also on a corrupt tree.
const SAMPLE_LOOKUPS = 256;

// Addresses every real City or Country database answers, spread over the continents: the documented entries of
// MaxMind's test databases first, then public resolvers, registries and universities. The coordinates they decode
// to are checked once at open, never per lookup.
const PROBES_V4 = [
  '81.2.69.142', '2.125.160.216', '89.160.20.112', '216.160.83.56', '67.43.156.0', '175.16.199.0',
  '1.1.1.1', '8.8.8.8', '200.160.2.3', '41.203.64.1', '105.0.0.1', '133.11.0.1', '193.0.14.129', '77.88.8.8',
];
const PROBES_V6 = [
  '2001:218::1', '2a02:d1c0::1', '2001:4860:4860::8888', '2001:67c:2e8::1', '2001:12ff::1', '2c0f:fb50::1', '2a00:1450::1',
];
// Real coordinates carry at most about seven decimals, and float noise around zero stays above 1e-17. A nonzero value
// below this is a double decoded from the wrong bytes (MaxMind's broken-double file gives 1e-33 to 1e-91) or a denormal.
const GARBAGE_BELOW = 1e-20;
// Degrees (about 10 m) within which two probes count as one point.
const SAME_POINT = 1e-4;

// Records are untrusted decoded data: every field is probed, never assumed.
interface Geoip2Record {
  location?: { latitude?: unknown; longitude?: unknown; accuracy_radius?: unknown };
  country?: { iso_code?: unknown };
  continent?: { code?: unknown };
}
interface FlatRecord {
  latitude?: unknown;
  longitude?: unknown;
  country_code?: unknown;
}

const fromGeoip2 = (record: unknown): GeoLocation | null => {
  const { location, country, continent } = record as Geoip2Record;
  return toLocation(location?.latitude, location?.longitude, country?.iso_code, continent?.code, location?.accuracy_radius);
};

const fromFlat = (record: unknown): GeoLocation | null => {
  const { latitude, longitude, country_code } = record as FlatRecord;
  return toLocation(latitude, longitude, country_code, undefined, undefined);
};

function toLocation(lat: unknown, lon: unknown, country: unknown, continent: unknown, accuracy: unknown): GeoLocation | null {
  const iso = typeof country === 'string' ? country : null;
  const centroid = iso === null ? undefined : COUNTRIES.get(iso);
  const known = typeof lat === 'number' && typeof lon === 'number' && Math.abs(lat) <= 90 && Math.abs(lon) <= 180;
  if (!known && centroid === undefined) return null;
  return Object.freeze({
    lat: known ? lat : centroid!.lat,
    lon: known ? lon : centroid!.lon,
    country: iso,
    continent: typeof continent === 'string' ? continent : (centroid?.continent ?? null),
    accuracyKm: known && typeof accuracy === 'number' ? accuracy : null,
  });
}

const isObject = (value: unknown): boolean => typeof value === 'object' && value !== null;

/** The schema a record shows; the database type only decides city against country where the record cannot. */
function classify(databaseType: string, record: unknown): GeoSchema | null {
  if (!isObject(record)) return null;
  const { location, country, continent, registered_country } = record as Record<string, unknown>;
  const city = /city/i.test(databaseType);
  if ([location, country, continent, registered_country].some(isObject)) {
    return city || isObject(location) ? 'geoip2-city' : 'geoip2-country';
  }
  const { latitude, country_code } = record as FlatRecord;
  if (typeof latitude === 'number' || typeof country_code === 'string') {
    return city || typeof latitude === 'number' ? 'flat-city' : 'flat-country';
  }
  return null;
}

/** The records of the database in address order, network after network, for at most SAMPLE_LOOKUPS lookups. */
function* sampleRecords(reader: Reader<Response>): Generator<unknown> {
  const v4 = reader.metadata.ipVersion === 4;
  const bits = v4 ? 32 : 128;
  const text = (address: bigint) =>
    v4
      ? [24, 16, 8, 0].map((shift) => (address >> BigInt(shift)) & 0xffn).join('.')
      : [112, 96, 80, 64, 48, 32, 16, 0].map((shift) => ((address >> BigInt(shift)) & 0xffffn).toString(16)).join(':');
  // Each lookup reports the prefix length of the network (or the empty block) it landed in: the next one starts after it.
  for (let address = 0n, lookups = 0; address < 1n << BigInt(bits) && lookups < SAMPLE_LOOKUPS; lookups++) {
    const [record, prefix] = reader.getWithPrefixLength(text(address));
    if (record !== null) yield record;
    address += 1n << BigInt(bits - prefix);
  }
}

/**
 * Refuses a database whose probe addresses decode to impossible coordinates. A corrupt file can decode every double
 * to a tiny number, which lookups would take for a place at 0°, 0°, sending every client to one region.
 */
function checkCoordinates(path: string, reader: Reader<Response>, schema: GeoSchema): void {
  const geoip2 = schema.startsWith('geoip2');
  const points: { ip: string; lat: number; lon: number }[] = [];
  for (const ip of reader.metadata.ipVersion === 4 ? PROBES_V4 : [...PROBES_V4, ...PROBES_V6]) {
    let record: unknown;
    try {
      record = reader.get(ip);
    } catch (error) {
      throw new GeoDatabaseError(path, `probe lookup of ${ip} failed (${(error as Error).message})`, error);
    }
    if (!isObject(record)) continue;
    const { latitude, longitude } = (geoip2 ? ((record as Geoip2Record).location ?? {}) : record) as FlatRecord;
    for (const [field, value, limit] of [['latitude', latitude, 90], ['longitude', longitude, 180]] as const) {
      if (typeof value !== 'number') continue;
      const decoded = `${geoip2 ? 'location.' : ''}${field} of ${ip} decodes to ${Number(value.toPrecision(3))}`;
      if (!Number.isFinite(value) || (value !== 0 && Math.abs(value) < GARBAGE_BELOW)) throw new GeoDatabaseError(path, `${decoded}, not a coordinate`);
      if (Math.abs(value) > limit) throw new GeoDatabaseError(path, `${decoded}, outside [-${limit}, ${limit}]`);
    }
    if (typeof latitude === 'number' && typeof longitude === 'number') points.push({ ip, lat: latitude, lon: longitude });
  }
  const [first] = points;
  if (points.length < 2 || points.some(({ lat, lon }) => Math.abs(lat - first.lat) >= SAME_POINT || Math.abs(lon - first.lon) >= SAME_POINT)) return;
  const ips = points.map(({ ip }) => ip).join(', ');
  throw new GeoDatabaseError(path, `all ${points.length} probe addresses with coordinates (${ips}) decode to one point, ${first.lat}, ${first.lon}`);
}

/**
 * Reads a whole file into a new SharedArrayBuffer, with no second copy. The open handle keeps reading the file it
 * opened when an updater renames a new one over it; a file cut short meanwhile is an error, not a short database.
 */
async function readShared(path: string): Promise<SharedArrayBuffer> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const buffer = new SharedArrayBuffer(size);
    const view = Buffer.from(buffer);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await file.read(view, at, size - at, at);
      if (bytesRead === 0) throw new Error(`the file shrank from ${size} to ${at} bytes while being read`);
      at += bytesRead;
    }
    return buffer;
  } finally {
    await file.close();
  }
}

/** Opens and sanity-checks a database; any problem is a GeoDatabaseError naming the path. */
export async function openGeoDatabase(path: string): Promise<GeoDatabase> {
  let buffer: SharedArrayBuffer;
  try {
    buffer = await readShared(path);
  } catch (error) {
    throw new GeoDatabaseError(path, `cannot read the file (${(error as Error).message})`, error);
  }
  // A view, not a copy: mmdb-lib keeps the Buffer it is given and slices it for strings.
  const db = Buffer.from(buffer);
  let reader: Reader<Response>;
  try {
    reader = new Reader(db);
  } catch (error) {
    throw new GeoDatabaseError(path, `not a MaxMind DB file (${(error as Error).message})`, error);
  }
  const { binaryFormatMajorVersion, ipVersion, nodeCount, searchTreeSize, databaseType, buildEpoch, description } = reader.metadata;
  const problem =
    binaryFormatMajorVersion !== 2 ? `binary format major version ${binaryFormatMajorVersion}, expected 2`
    : ipVersion !== 4 && ipVersion !== 6 ? `ip_version ${ipVersion}, expected 4 or 6`
    : typeof databaseType !== 'string' ? 'no database_type in the metadata'
    : Number.isNaN(buildEpoch.getTime()) ? 'build_epoch is not a valid time'
    : !(Number.isSafeInteger(nodeCount) && nodeCount > 0) ? `node_count ${nodeCount} is not a positive integer`
    : searchTreeSize + SEPARATOR_BYTES > db.lastIndexOf(METADATA_MARKER) ? `node_count ${nodeCount} does not fit the file (truncated?)`
    : db.subarray(searchTreeSize, searchTreeSize + SEPARATOR_BYTES).some((byte) => byte !== 0) ? `node_count ${nodeCount} disagrees with the data section separator`
    : null;
  if (problem !== null) throw new GeoDatabaseError(path, problem);

  let schema: GeoSchema | null = null;
  try {
    for (const record of sampleRecords(reader)) {
      schema = classify(databaseType, record);
      if (schema !== null) break;
    }
  } catch (error) {
    throw new GeoDatabaseError(path, `probe lookup failed (${(error as Error).message})`, error);
  }
  if (schema === null) throw new GeoDatabaseError(path, `no record carries a location or a country (database_type ${databaseType})`);
  checkCoordinates(path, reader, schema);

  // The metadata description is a map of language to text, whatever mmdb-lib's type says.
  const descriptions = (isObject(description) ? description : {}) as unknown as Record<string, unknown>;
  const text = descriptions.en ?? Object.values(descriptions)[0];
  const info: GeoDatabaseInfo = Object.freeze({
    path,
    databaseType,
    schema,
    ipVersion: ipVersion as 4 | 6,
    buildEpoch,
    description: typeof text === 'string' ? text : '',
  });
  return readerDatabase(Object.freeze({ path, buffer, info }), reader);
}

/**
 * The database another thread opened and checked, read from the same shared memory: no file read, no copy, no
 * checks again. The reader's view keeps the buffer alive, so a database swapped out elsewhere serves here until
 * this thread swaps too; the memory is freed once no thread holds a view.
 */
export function attachGeoDatabase(published: PublishedGeoDatabase): GeoDatabase {
  // Structured cloning gives a fresh, unfrozen info in the receiving thread.
  const info = Object.freeze(published.info);
  return readerDatabase(Object.freeze({ path: published.path, buffer: published.buffer, info }), new Reader(Buffer.from(published.buffer)));
}

function readerDatabase(published: PublishedGeoDatabase, reader: Reader<Response>): GeoDatabase {
  const map = published.info.schema.startsWith('geoip2') ? fromGeoip2 : fromFlat;
  return Object.freeze({
    info: published.info,
    published,
    lookup(ip: string): GeoLocation | null {
      const record: unknown = reader.get(ip);
      return record === null ? null : map(record);
    },
  });
}
