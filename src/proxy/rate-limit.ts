// The rate-limit phase: per-client token buckets by rule (host, path prefix, method), keyed by the client's address
// grouped to a prefix, in the process-wide bucket table (rate-buckets.ts). Runs after client-ip, before routing.
import type { RateLimits } from '../config/types.ts';
import { parseCidr } from '../geo/cidr.ts';
import { matchesRequest, type RequestMatch } from '../routing/request-match.ts';
import { rateLimitedError, type ProxyError } from './errors.ts';
import type { DataPlane } from './plane.ts';
import { PASSED, RateBuckets } from './rate-buckets.ts';

/**
 * Every thread's performance.now() starts at its own origin; added to it, the threads agree on the time to well under
 * a millisecond, and each thread's clock only moves forward.
 */
const ORIGIN = performance.timeOrigin;
export const monotonicClock = (): number => ORIGIN + performance.now();

/**
 * The rate-limit phase for a request (or WebSocket upgrade) from `clientIp`: null when it may go on, else the 429 to
 * answer, already counted for its rule. Callers run it only when the config has rules. `startedAt` is the request's
 * performance.now(), which the exchange has read already, so the check reads no clock of its own.
 */
export function overLimit(plane: DataPlane, clientIp: string, host: string | undefined, path: string, method: string, startedAt: number): ProxyError | null {
  const limiter = plane.rateLimiter;
  const rule = limiter.check(clientIp, host, path, method, ORIGIN + startedAt);
  if (rule === PASSED) return null;
  plane.traffic.rateLimited(rule);
  return rateLimitedError(plane.config.rateLimits.rules[rule].name, limiter.retryAfter);
}

/** Whether a reload from `a` to `b` keeps the buckets: the same client groups, bound and rules (by name, in order). */
export function sameBuckets(a: RateLimits, b: RateLimits): boolean {
  return (
    a.ipv4Prefix === b.ipv4Prefix &&
    a.ipv6Prefix === b.ipv6Prefix &&
    a.maxClients === b.maxClients &&
    a.rules.length === b.rules.length &&
    a.rules.every((rule, i) => rule.name === b.rules[i].name)
  );
}

/** A new bucket table for `limits`, allocated once by the control plane and shared with every worker. */
export function allocateBuckets(limits: RateLimits, now = monotonicClock()): RateBuckets {
  return RateBuckets.create(limits.maxClients, limits.rules.length, now);
}

/**
 * One config's rules over the shared buckets; a thread builds one per data-plane snapshot, while the buckets outlive
 * reloads that keep them (`sameBuckets`), so a changed rate applies to the tokens a client has left.
 */
export class RateLimiter {
  /** After `check` refused: whole seconds until the refusing rule has a token again for the client, at least 1. */
  retryAfter = 0;
  readonly #matches: readonly RequestMatch[];
  /** Per rule: T, the ms a token takes to come back, and burst × T, how far ahead of now a bucket may run. */
  readonly #interval: Float64Array;
  readonly #limit: Float64Array;
  readonly #anyHost: boolean;
  /** The trusted proxies as [network, mask] word pairs: one word each for IPv4, four each for IPv6. */
  readonly #trustedV4: Int32Array;
  readonly #trustedV6: Int32Array;
  readonly #buckets: RateBuckets;
  readonly #v4Mask: number;
  readonly #v6Masks: Int32Array;

  /**
   * `trusted`: `geo.trustedProxies` as written (checked at config load), whose own addresses are never limited. They
   * are matched here against the address already read for the client's group, rather than by the config's CidrSet,
   * which would read the address a second time.
   */
  constructor(limits: RateLimits, trusted: readonly string[], buckets: RateBuckets) {
    const { rules } = limits;
    if (rules.length > buckets.rules) throw new RangeError(`a bucket table of ${buckets.rules} rules cannot serve ${rules.length}`);
    this.#matches = rules.map((rule) => rule.match);
    this.#interval = Float64Array.from(rules, (rule) => 1000 / rule.rate);
    this.#limit = Float64Array.from(rules, (rule) => (rule.burst * 1000) / rule.rate);
    this.#anyHost = rules.some((rule) => rule.match.host !== null || rule.match.hostSuffix !== null);
    const v4: number[] = [];
    const v6: number[] = [];
    for (const text of trusted) {
      const cidr = parseCidr(text);
      if (cidr === null) continue;
      if (cidr.family === 4) v4.push(cidr.words[0] | 0, prefixMask(cidr.prefix));
      else for (let w = 0; w < 4; w++) v6.push(cidr.words[w] | 0, prefixMask(cidr.prefix - 32 * w));
    }
    this.#trustedV4 = Int32Array.from(v4);
    this.#trustedV6 = Int32Array.from(v6);
    this.#buckets = buckets;
    this.#v4Mask = prefixMask(limits.ipv4Prefix);
    this.#v6Masks = Int32Array.from([0, 1, 2, 3], (w) => prefixMask(limits.ipv6Prefix - 32 * w));
  }

  /**
   * PASSED when the request may go on: no rule matches it, its client cannot be limited (a trusted proxy's own
   * address, or none), or every matching rule had a token for the client's group, now taken. Else the index of the
   * first rule (in config order) that refused, with `retryAfter` set; a refused request takes no token from any rule.
   * `host` is the Host header as received; `path` the request target; `now` in ms on `monotonicClock`.
   */
  check(clientIp: string, host: string | undefined, path: string, method: string, now: number): number {
    const matches = this.#matches;
    const hostname = this.#anyHost && host !== undefined ? hostnameOf(host) : undefined;
    let mask = 0;
    for (let i = 0; i < matches.length; i++) if (matchesRequest(matches[i], hostname, path, method)) mask |= 1 << i;
    if (mask === 0) return PASSED;
    const family = readAddress(clientIp);
    // A trusted proxy's own address stands for every client behind it; its requests are limited by the client it names.
    if (family === 0 || this.#isTrusted(family)) return PASSED;
    groupOf(family, this.#v4Mask, this.#v6Masks, key);
    const buckets = this.#buckets;
    const rule = buckets.take(key[0], key[1], mask, this.#interval, this.#limit, now);
    if (rule !== PASSED) this.retryAfter = Math.max(1, Math.ceil(buckets.waitMs / 1000));
    return rule;
  }

  /** Whether the address last read is in a trusted proxy's CIDR. */
  #isTrusted(family: 4 | 6): boolean {
    if (family === 4) {
      const list = this.#trustedV4;
      const ip = address[0];
      for (let i = 0; i < list.length; i += 2) if ((ip & list[i + 1]) === list[i]) return true;
      return false;
    }
    const list = this.#trustedV6;
    for (let i = 0; i < list.length; i += 8) {
      if (
        (address[0] & list[i + 1]) === list[i] &&
        (address[1] & list[i + 3]) === list[i + 2] &&
        (address[2] & list[i + 5]) === list[i + 4] &&
        (address[3] & list[i + 7]) === list[i + 6]
      ) {
        return true;
      }
    }
    return false;
  }
}

/** The Host without its port, lower case, as the routing phase reads it. */
function hostnameOf(host: string): string {
  const colon = host.lastIndexOf(':');
  return (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
}

/** Bits set for the first `bits` (clamped to 0..32) of a 32-bit word. */
function prefixMask(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits);
}

// Scratch for one key at a time (JS runs one check at a time per thread): nothing on this path allocates.
const key = new Int32Array(2);
const address = new Int32Array(4);
const groups = new Uint16Array(8);

/**
 * The 64-bit hash of the client's group, its address masked to the prefix, into `out`; false when `ip` is not an
 * address. The family is hashed in, so an IPv4 group never shares a bucket with an IPv6 one. The hash mixes two
 * multiplicative lanes and ends each with the murmur3 finalizer's shifts and multipliers; it is not a secret
 * (`rateLimits.maxClients` bounds the memory whatever keys a client makes up).
 */
export function groupKey(ip: string, v4Mask: number, v6Masks: Int32Array, out: Int32Array): boolean {
  const family = readAddress(ip);
  if (family === 0) return false;
  groupOf(family, v4Mask, v6Masks, out);
  return true;
}

/** The hash of `groupKey` for the address last read. */
function groupOf(family: 4 | 6, v4Mask: number, v6Masks: Int32Array, out: Int32Array): void {
  let h1 = 0x2545f491 ^ family;
  let h2 = 0x9e3779b9 ^ family;
  const words = family === 4 ? 1 : 4;
  for (let i = 0; i < words; i++) {
    const word = address[i] & (family === 4 ? v4Mask : v6Masks[i]);
    h1 = Math.imul(h1 ^ word, 0xcc9e2d51);
    h1 = (h1 << 15) | (h1 >>> 17);
    h2 = Math.imul(h2 ^ word, 0x1b873593);
    h2 = (h2 << 13) | (h2 >>> 19);
  }
  out[0] = finish(h1 ^ h2);
  out[1] = finish(h2 + 0x6a09e667);
}

function finish(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Reads `ip` into `address` (one word for IPv4, four for IPv6) and returns its family, or 0 when it is not an address.
 * Client addresses arrive canonical from the client-ip phase, but the reader takes any text form: `::` anywhere, an
 * IPv4 tail, a `%zone` (dropped). IPv4-mapped IPv6 reads as the IPv4 address it maps.
 */
function readAddress(ip: string): 0 | 4 | 6 {
  if (readV4(ip, 0, ip.length)) {
    address[0] = v4Value;
    return 4;
  }
  if (!readV6(ip)) return 0;
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    address[0] = (groups[6] << 16) | groups[7];
    return 4;
  }
  for (let w = 0; w < 4; w++) address[w] = (groups[2 * w] << 16) | groups[2 * w + 1];
  return 6;
}

/** The value of the last dotted quad `readV4` accepted, as an int32. */
let v4Value = 0;

/** Dotted-quad IPv4 in s[start, end) into `v4Value`; false when it is not one. */
function readV4(s: string, start: number, end: number): boolean {
  let value = 0;
  let octet = -1;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (octet === -1 || dots === 3) return false;
      value = (value << 8) | octet;
      octet = -1;
      dots++;
    } else if (c >= 48 && c <= 57) {
      octet = octet === -1 ? c - 48 : octet * 10 + c - 48;
      if (octet > 255) return false;
    } else {
      return false;
    }
  }
  if (dots !== 3 || octet === -1) return false;
  v4Value = (value << 8) | octet;
  return true;
}

/** IPv6 text into `groups`; false when it is not one address. */
function readV6(s: string): boolean {
  let end = s.indexOf('%');
  if (end === -1) end = s.length;
  let count = 0;
  /** Where `::` stood, in groups; -1 if it did not. */
  let gap = -1;
  let i = 0;
  if (end >= 2 && s.charCodeAt(0) === 58 && s.charCodeAt(1) === 58) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    if (count === 8) return false;
    const first = i;
    let value = 0;
    for (; i < end && i - first < 5; i++) {
      const digit = hexDigit(s.charCodeAt(i));
      if (digit === -1) break;
      value = (value << 4) | digit;
    }
    if (i < end && s.charCodeAt(i) === 46) {
      // An IPv4 tail fills the last two groups.
      if (count > 6) return false;
      if (!readV4(s, first, end)) return false;
      groups[count++] = v4Value >>> 16;
      groups[count++] = v4Value & 0xffff;
      i = end;
      break;
    }
    if (i === first || i - first > 4) return false;
    groups[count++] = value;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58 || ++i === end) return false;
    if (s.charCodeAt(i) === 58) {
      if (gap !== -1) return false;
      gap = count;
      i++;
    }
  }
  if (gap === -1) return count === 8;
  if (count === 8) return false;
  const zeros = 8 - count;
  for (let k = count - 1; k >= gap; k--) groups[k + zeros] = groups[k];
  groups.fill(0, gap, gap + zeros);
  return true;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 32;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}
