// A small MaxMind DB (.mmdb) writer after the public format spec v2.0, so tests build real database files
// (GeoIP2 and flat schemas, IPv4 and IPv6 trees, record sizes 24/28/32) instead of shipping binary fixtures.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { isIPv4 } from 'node:net';

/** Pins an MMDB type where the JS value is ambiguous: every JS number could be a double or an integer. */
export class Typed {
  readonly type: 'double' | 'uint16' | 'uint32';
  readonly value: number;
  constructor(type: 'double' | 'uint16' | 'uint32', value: number) {
    this.type = type;
    this.value = value;
  }
}

export const double = (value: number): Typed => new Typed('double', value);
export const uint16 = (value: number): Typed => new Typed('uint16', value);
export const uint32 = (value: number): Typed => new Typed('uint32', value);

/** Plain numbers are written as uint32 when they are integers in range and as doubles otherwise; bigints as uint64. */
export type MmdbValue = string | number | bigint | boolean | Typed | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbEntry {
  /** `81.2.69.0/24` or `2a02:d1c0::/29`. In an IPv6 tree, IPv4 networks sit at `::/96`. */
  network: string;
  data: MmdbValue;
}

export interface MmdbOptions {
  databaseType: string;
  ipVersion?: 4 | 6;
  recordSize?: 24 | 28 | 32;
  languages?: string[];
  description?: Record<string, string>;
  /** Unix seconds. */
  buildEpoch?: number;
}

const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');

// A trie node's record: another node, a data value, or nothing (undefined).
type Slot = TrieNode | { data: MmdbValue } | undefined;
interface TrieNode {
  children: [Slot, Slot];
}

/** Builds the bytes of an .mmdb file. A later entry overrides the part of an earlier one that it covers. */
export function writeMmdb(entries: readonly MmdbEntry[], options: MmdbOptions): Buffer {
  const ipVersion = options.ipVersion ?? 6;
  const recordSize = options.recordSize ?? 24;
  const root: TrieNode = { children: [undefined, undefined] };
  for (const { network, data } of entries) insert(root, networkBits(network, ipVersion), { data });

  const data = new DataSection();
  const nodes: TrieNode[] = [];
  const queue: TrieNode[] = [root];
  for (let node = queue.shift(); node; node = queue.shift()) {
    nodes.push(node);
    for (const slot of node.children) {
      if (slot && 'children' in slot) queue.push(slot);
      else if (slot) data.offsetOf(slot.data);
    }
  }
  const number = new Map(nodes.map((node, i) => [node, i]));
  const nodeCount = nodes.length;
  const record = (slot: Slot): number => {
    const value = !slot ? nodeCount : 'children' in slot ? number.get(slot)! : nodeCount + 16 + data.offsetOf(slot.data);
    if (value >= 2 ** recordSize) throw new RangeError(`record ${value} does not fit in ${recordSize} bits`);
    return value;
  };

  const nodeBytes = recordSize / 4;
  const tree = Buffer.alloc(nodeCount * nodeBytes);
  nodes.forEach((node, i) => writeNode(tree, i * nodeBytes, recordSize, record(node.children[0]), record(node.children[1])));

  const metadata = encode({
    node_count: uint32(nodeCount),
    record_size: uint16(recordSize),
    ip_version: uint16(ipVersion),
    database_type: options.databaseType,
    languages: options.languages ?? ['en'],
    binary_format_major_version: uint16(2),
    binary_format_minor_version: uint16(0),
    build_epoch: BigInt(options.buildEpoch ?? 1_700_000_000),
    description: options.description ?? { en: `${options.databaseType} test database` },
  });
  return Buffer.concat([tree, Buffer.alloc(16), ...data.chunks, METADATA_MARKER, metadata]);
}

function insert(root: TrieNode, bits: number[], leaf: { data: MmdbValue }): void {
  let node = root;
  bits.forEach((bit, depth) => {
    if (depth === bits.length - 1) {
      node.children[bit] = leaf;
      return;
    }
    const slot = node.children[bit];
    // A more specific network inside an existing one splits the existing leaf in two.
    const next: TrieNode = slot && 'children' in slot ? slot : { children: [slot, slot] };
    node.children[bit] = next;
    node = next;
  });
}

function networkBits(network: string, ipVersion: 4 | 6): number[] {
  const [address, prefixText] = network.split('/');
  const prefix = Number(prefixText);
  const v4 = isIPv4(address);
  if (v4 && !(prefix >= 1 && prefix <= 32)) throw new RangeError(`bad prefix in ${network}`);
  if (!v4 && (ipVersion === 4 || !(prefix >= 1 && prefix <= 128))) throw new RangeError(`${network} does not fit an IPv${ipVersion} tree`);
  const bytes = v4 ? address.split('.').map(Number) : ipv6Bytes(address);
  const bits = bytes.flatMap((byte) => [7, 6, 5, 4, 3, 2, 1, 0].map((shift) => (byte >> shift) & 1));
  const head = v4 && ipVersion === 6 ? new Array<number>(96).fill(0) : [];
  return [...head, ...bits].slice(0, head.length + prefix);
}

function ipv6Bytes(address: string): number[] {
  const [left, right = ''] = address.split('::');
  const groups = (text: string) => (text ? text.split(':').map((group) => parseInt(group, 16)) : []);
  const head = groups(left);
  const tail = address.includes('::') ? groups(right) : [];
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  return all.flatMap((group) => [group >> 8, group & 0xff]);
}

function writeNode(tree: Buffer, offset: number, recordSize: number, left: number, right: number): void {
  if (recordSize === 24) {
    tree.writeUIntBE(left, offset, 3);
    tree.writeUIntBE(right, offset + 3, 3);
  } else if (recordSize === 28) {
    // The middle byte carries the top nibble of each record: left's high, right's low.
    tree.writeUIntBE(left & 0xffffff, offset, 3);
    tree[offset + 3] = ((left >>> 24) << 4) | (right >>> 24);
    tree.writeUIntBE(right & 0xffffff, offset + 4, 3);
  } else {
    tree.writeUInt32BE(left, offset);
    tree.writeUInt32BE(right, offset + 4);
  }
}

/** The data section; each distinct value object is stored once and shared by every record that points at it. */
class DataSection {
  readonly chunks: Buffer[] = [];
  #size = 0;
  #offsets = new Map<MmdbValue, number>();

  offsetOf(value: MmdbValue): number {
    let offset = this.#offsets.get(value);
    if (offset === undefined) {
      const bytes = encode(value);
      offset = this.#size;
      this.chunks.push(bytes);
      this.#size += bytes.length;
      this.#offsets.set(value, offset);
    }
    return offset;
  }
}

const TYPE = { utf8: 2, double: 3, uint16: 5, uint32: 6, map: 7, uint64: 9, array: 11, boolean: 14 } as const;

function encode(value: MmdbValue): Buffer {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([control(TYPE.utf8, bytes.length), bytes]);
  }
  if (typeof value === 'boolean') return control(TYPE.boolean, value ? 1 : 0);
  if (typeof value === 'bigint') return unsigned(TYPE.uint64, value);
  if (typeof value === 'number') {
    return encode(Number.isInteger(value) && value >= 0 && value < 2 ** 32 ? uint32(value) : double(value));
  }
  if (value instanceof Typed) {
    if (value.type !== 'double') return unsigned(TYPE[value.type], BigInt(value.value));
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleBE(value.value);
    return Buffer.concat([control(TYPE.double, 8), bytes]);
  }
  if (Array.isArray(value)) return Buffer.concat([control(TYPE.array, value.length), ...value.map(encode)]);
  const pairs = Object.entries(value);
  return Buffer.concat([control(TYPE.map, pairs.length), ...pairs.flatMap(([key, item]) => [encode(key), encode(item)])]);
}

/** An unsigned integer in as few big-endian bytes as it needs (zero takes none). */
function unsigned(type: number, value: bigint): Buffer {
  const bytes: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) bytes.unshift(Number(rest & 0xffn));
  return Buffer.concat([control(type, bytes.length), Buffer.from(bytes)]);
}

/** The control byte, the extended type byte for types above 7, then the size extension for sizes of 29 and more. */
function control(type: number, size: number): Buffer {
  const [sizeBits, extra] =
    size < 29 ? [size, []]
    : size < 285 ? [29, [size - 29]]
    : size < 65_821 ? [30, [(size - 285) >> 8, (size - 285) & 0xff]]
    : [31, [(size - 65_821) >> 16, ((size - 65_821) >> 8) & 0xff, (size - 65_821) & 0xff]];
  const head = type <= 7 ? [(type << 5) | sizeBits] : [sizeBits, type - 7];
  return Buffer.from([...head, ...extra]);
}

/** A City record as GeoIP2/GeoLite2 City databases hold it: country, continent and a location. */
export function cityRecord(iso: string, continent: string, latitude: number, longitude: number): MmdbValue {
  return {
    continent: { code: continent },
    country: { iso_code: iso },
    location: { latitude: double(latitude), longitude: double(longitude), accuracy_radius: uint16(20) },
  };
}

/**
 * A GeoIP2-City database of `entries`, written to a temp folder before the calling file's tests run and removed
 * after them; call at the top level of a test file. The getter gives its path once the tests run.
 */
export function cityFixture(entries: readonly MmdbEntry[]): () => string {
  let dir = '';
  let path = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meridian-geo-fixture-'));
    path = join(dir, 'GeoIP2-City-Fixture.mmdb');
    await writeFile(path, writeMmdb(entries, { databaseType: 'GeoIP2-City', ipVersion: 6 }));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  return () => path;
}
