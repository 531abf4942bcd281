// IP address parsing and compiled CIDR sets (trusted proxies): parsed once at config load,
// matched per request by hand-rolled parsers that neither allocate nor throw on the IPv4 path.

/** A set of CIDRs that answers membership for an address string; garbage is never a member. */
export interface CidrSet {
  has(ip: string): boolean;
}

/** One parsed CIDR. An IPv4-mapped IPv6 prefix (`::ffff:10.0.0.0/104`) is folded into IPv4 (`10.0.0.0/8`). */
export interface Cidr {
  readonly family: 4 | 6;
  readonly prefix: number;
  /** The network address with host bits cleared: one 32-bit word for IPv4, four for IPv6. */
  readonly words: readonly number[];
}

// Scratch for the IPv6 parser: per-request matching must not allocate, and JS runs one parse at a time.
const groups = new Uint16Array(8);

/** Parses `a.b.c.d` within [start, end) to an unsigned 32-bit number, or -1. Leading zeros are refused (octal to some parsers). */
function parseV4(s: string, start: number, end: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + c - 48;
      if (octet > 255) return -1;
      digits++;
    } else if (c === 46 && digits > 0 && dots < 3) {
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : -1;
}

// Hex digit values by char code, -1 for anything else: a table lookup is cheaper than branching per char.
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 22; i++) HEX['0123456789abcdefABCDEF'.charCodeAt(i)] = i < 16 ? i : i - 6;

// Where the IPv4 tail of the last parsed IPv6 address began (-1 if none), so a mapped address slices its text instead of formatting it.
let v4Tail = -1;

/** Parses an IPv6 address (with `::`, an IPv4 tail and an ignored `%zone`) in s[start, end) into `groups`. */
function parseV6(s: string, start: number, end: number): boolean {
  let n = 0;
  let gap = -1;
  let i = start;
  v4Tail = -1;
  if (s.charCodeAt(i) === 58) {
    if (s.charCodeAt(i + 1) !== 58 || i + 1 >= end) return false;
    gap = 0;
    i += 2;
  }
  while (i < end && s.charCodeAt(i) !== 37) {
    if (n === 8) return false;
    const first = i;
    let value = 0;
    let c = -1;
    for (; i < end; i++) {
      c = s.charCodeAt(i);
      const digit = c < 128 ? HEX[c] : -1;
      if (digit === -1) break;
      value = (value << 4) | digit;
    }
    if (i < end && c === 46) {
      const v4 = n <= 6 ? parseV4(s, first, end) : -1;
      if (v4 === -1) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      v4Tail = first;
      i = end;
      break;
    }
    if (i === first || i - first > 4) return false;
    groups[n++] = value;
    if (i === end || c === 37) break;
    if (c !== 58 || ++i === end) return false;
    if (s.charCodeAt(i) === 58) {
      if (gap !== -1) return false;
      gap = n;
      i++;
    }
  }
  // What is left is a zone (`fe80::1%eth0`): link-local peers carry one, and CIDRs cannot, so it is dropped.
  if (i < end && i + 1 === end) return false;
  if (gap === -1) return n === 8;
  if (n === 8) return false;
  const zeros = 8 - n;
  for (let k = n - 1; k >= gap; k--) groups[k + zeros] = groups[k];
  for (let k = gap; k < gap + zeros; k++) groups[k] = 0;
  return true;
}

/** 32-bit word `i` (0-3) of the last parsed IPv6 address, as int32. */
function word(i: number): number {
  return (groups[2 * i] << 16) | groups[2 * i + 1];
}

function isMapped(): boolean {
  return groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff;
}

function formatV4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups as `::`. */
function formatV6(): string {
  let runAt = -1;
  let runLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLength) {
      runAt = i;
      runLength = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === runAt) {
      out += '::';
      i += runLength - 1;
      continue;
    }
    if (i > 0 && i !== runAt + runLength) out += ':';
    out += groups[i].toString(16);
  }
  return out;
}

/** The canonical text of the address in s[start, end), IPv4-mapped IPv6 as plain IPv4; null if it is not one address. */
export function canonicalIp(s: string, start = 0, end = s.length): string | null {
  if (parseV4(s, start, end) !== -1) return start === 0 && end === s.length ? s : s.slice(start, end);
  if (!parseV6(s, start, end)) return null;
  if (!isMapped()) return formatV6();
  return v4Tail === -1 ? formatV4(word(3) >>> 0) : s.slice(v4Tail, end);
}

function parsePrefix(s: string, start: number, max: number): number {
  const length = s.length - start;
  if (length < 1 || length > 3 || (length > 1 && s.charCodeAt(start) === 48)) return -1;
  let value = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    value = value * 10 + c - 48;
  }
  return value <= max ? value : -1;
}

function maskWord(prefix: number): number {
  return prefix <= 0 ? 0 : prefix >= 32 ? -1 : -1 << (32 - prefix);
}

/** Parses `addr/prefix` or a bare address (a host prefix); null when it is neither. Host bits are cleared, not refused. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const end = slash === -1 ? text.length : slash;
  const v4 = parseV4(text, 0, end);
  if (v4 !== -1) {
    const prefix = slash === -1 ? 32 : parsePrefix(text, slash + 1, 32);
    return prefix === -1 ? null : { family: 4, prefix, words: [(v4 & maskWord(prefix)) >>> 0] };
  }
  if (!parseV6(text, 0, end) || text.includes('%')) return null;
  const prefix = slash === -1 ? 128 : parsePrefix(text, slash + 1, 128);
  if (prefix === -1) return null;
  if (isMapped() && prefix >= 96) {
    return { family: 4, prefix: prefix - 96, words: [(word(3) & maskWord(prefix - 96)) >>> 0] };
  }
  const words = [0, 1, 2, 3].map((w) => (word(w) & maskWord(prefix - 32 * w)) >>> 0);
  return { family: 6, prefix, words };
}

class CompiledCidrSet implements CidrSet {
  // Flat [network, mask] pairs (IPv4) and [4 network words, 4 mask words] octets (IPv6), as int32 so `&` compares directly.
  readonly #v4: Int32Array;
  readonly #v6: Int32Array;

  constructor(cidrs: readonly Cidr[]) {
    const v4: number[] = [];
    const v6: number[] = [];
    for (const { family, prefix, words } of cidrs) {
      if (family === 4) v4.push(words[0] | 0, maskWord(prefix));
      else v6.push(...words.map((w) => w | 0), ...[0, 1, 2, 3].map((w) => maskWord(prefix - 32 * w)));
    }
    this.#v4 = Int32Array.from(v4);
    this.#v6 = Int32Array.from(v6);
  }

  has(ip: string): boolean {
    const v4 = parseV4(ip, 0, ip.length);
    if (v4 !== -1) return this.#hasV4(v4);
    if (!parseV6(ip, 0, ip.length)) return false;
    if (isMapped()) return this.#hasV4(word(3));
    const w0 = word(0);
    const w1 = word(1);
    const w2 = word(2);
    const w3 = word(3);
    const r = this.#v6;
    for (let i = 0; i < r.length; i += 8) {
      if ((w0 & r[i + 4]) === r[i] && (w1 & r[i + 5]) === r[i + 1] && (w2 & r[i + 6]) === r[i + 2] && (w3 & r[i + 7]) === r[i + 3]) {
        return true;
      }
    }
    return false;
  }

  #hasV4(ip: number): boolean {
    const r = this.#v4;
    for (let i = 0; i < r.length; i += 2) if ((ip & r[i + 1]) === r[i]) return true;
    return false;
  }
}

/**
 * Compiles a CIDR list once, at config load. An invalid entry throws an Error whose message names its index and value,
 * `[2]: not a CIDR ("10.0.0.0/33")`, so the config layer only prefixes the field path.
 */
export function compileCidrs(list: readonly string[]): CidrSet {
  const cidrs = list.map((text, i) => {
    const cidr = parseCidr(text);
    if (cidr === null) throw new Error(`[${i}]: not a CIDR (${JSON.stringify(text)})`);
    return cidr;
  });
  return Object.freeze(new CompiledCidrSet(cidrs));
}
