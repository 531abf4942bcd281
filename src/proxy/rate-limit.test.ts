// The rate limits' parts on their own: the shared bucket table (GCRA buckets, all-or-nothing across rules, bounded
// memory with the least recently seen replaced, two real threads on one bucket) and the limiter over it (client groups
// by prefix, rule matching, trusted proxies, Retry-After), each on a clock the test moves.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { compileMatch, type RequestMatchInput } from '../routing/request-match.ts';
import type { RateLimits } from '../config/types.ts';
import { PASSED, PROBE_WINDOW, RateBuckets } from './rate-buckets.ts';
import { groupKey, RateLimiter, sameBuckets } from './rate-limit.ts';

/** Any instant on the callers' clock, in milliseconds. */
const T0 = 5_000_000;

/** The per-rule arguments of `take` for rules of these rates (per second) and bursts. */
function rules(...list: { rate: number; burst: number }[]): { interval: Float64Array; limit: Float64Array } {
  return {
    interval: Float64Array.from(list, (r) => 1000 / r.rate),
    limit: Float64Array.from(list, (r) => (1000 * r.burst) / r.rate),
  };
}

/** How many of `n` requests at `now` pass. */
function passes(table: RateBuckets, a: number, b: number, mask: number, r: ReturnType<typeof rules>, now: number, n: number): number {
  let passed = 0;
  for (let i = 0; i < n; i++) if (table.take(a, b, mask, r.interval, r.limit, now) === PASSED) passed++;
  return passed;
}

function limits(list: (RequestMatchInput & { name: string; rate: number; burst: number })[], prefixes: { ipv4Prefix?: number; ipv6Prefix?: number; maxClients?: number } = {}): RateLimits {
  return {
    ipv4Prefix: prefixes.ipv4Prefix ?? 32,
    ipv6Prefix: prefixes.ipv6Prefix ?? 64,
    maxClients: prefixes.maxClients ?? 1000,
    rules: list.map(({ name, rate, burst, ...match }) => ({ name, rate, burst, match: compileMatch(match) })),
  };
}

/** A limiter for `config` over a table of its own. */
function limiter(config: RateLimits, trusted: readonly string[] = []): RateLimiter {
  return new RateLimiter(config, trusted, RateBuckets.create(config.maxClients, config.rules.length, T0));
}

const key = (ip: string, v4 = 32, v6 = 64): string => {
  const out = new Int32Array(2);
  const mask = (bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits));
  if (!groupKey(ip, mask(v4), Int32Array.from([0, 1, 2, 3], (w) => mask(v6 - 32 * w)), out)) return 'none';
  return `${out[0]}/${out[1]}`;
};

describe('RateBuckets', () => {
  it('passes a burst at once, refuses the next with the wait for one token, and passes one more once it is back', () => {
    const table = RateBuckets.create(100, 1, T0);
    const r = rules({ rate: 2, burst: 5 });
    expect(passes(table, 1, 2, 0b1, r, T0, 5)).toBe(5);
    expect(table.take(1, 2, 0b1, r.interval, r.limit, T0)).toBe(0);
    // One token every 500 ms.
    expect(table.waitMs).toBe(500);
    expect(table.take(1, 2, 0b1, r.interval, r.limit, T0 + 499)).toBe(0);
    expect(table.waitMs).toBe(1);
    expect(passes(table, 1, 2, 0b1, r, T0 + 500, 2)).toBe(1);
    // Idle long enough to refill, the bucket holds its burst again, never more.
    expect(passes(table, 1, 2, 0b1, r, T0 + 60_000, 10)).toBe(5);
  });

  it('holds the sustained rate: over ten seconds of steady asking, rate × 10 + burst pass', () => {
    const table = RateBuckets.create(100, 1, T0);
    const r = rules({ rate: 20, burst: 3 });
    let passed = 0;
    // A request every millisecond, 50 times the rate.
    for (let ms = 0; ms < 10_000; ms++) passed += passes(table, 7, 7, 0b1, r, T0 + ms, 1);
    expect(passed).toBe(20 * 10 + 3 - 1);
  });

  it('takes from every matching rule or from none, and the first rule that refuses decides', () => {
    const table = RateBuckets.create(100, 3, T0);
    // Rule 0 is generous, rule 1 allows two, rule 2 allows one.
    const r = rules({ rate: 1, burst: 100 }, { rate: 1, burst: 2 }, { rate: 1, burst: 1 });
    expect(table.take(9, 9, 0b011, r.interval, r.limit, T0)).toBe(PASSED);
    expect(table.take(9, 9, 0b011, r.interval, r.limit, T0)).toBe(PASSED);
    // Rule 1 is now empty and refuses: rule 0 must not pay for the refused request.
    for (let i = 0; i < 50; i++) expect(table.take(9, 9, 0b011, r.interval, r.limit, T0)).toBe(1);
    // Rule 2 has never been used and rule 1 is empty: rule 1 comes first and decides.
    expect(table.take(9, 9, 0b110, r.interval, r.limit, T0)).toBe(1);
    // Rule 2 alone still has its token, so rules 1 and 2 did not lose one to the refusal.
    expect(table.take(9, 9, 0b100, r.interval, r.limit, T0)).toBe(PASSED);
    // Rule 0 took exactly two: 98 left.
    expect(passes(table, 9, 9, 0b001, r, T0, 200)).toBe(98);
  });

  it('keeps groups apart: one client’s empty bucket does not limit another', () => {
    const table = RateBuckets.create(100, 1, T0);
    const r = rules({ rate: 1, burst: 1 });
    expect(passes(table, 1, 1, 1, r, T0, 3)).toBe(1);
    expect(passes(table, 1, 2, 1, r, T0, 3)).toBe(1);
    expect(passes(table, 2, 1, 1, r, T0, 3)).toBe(1);
  });

  it('stays at a fixed size through a million distinct clients, and the most recent ones are still limited', () => {
    const maxClients = 10_000;
    const table = RateBuckets.create(maxClients, 1, T0);
    const bytes = table.bytes;
    // 32 768 slots (twice maxClients, rounded up to a power of two) of 16 bytes of key and lock, 8 of last-seen, 8 of bucket.
    expect(bytes).toBe(64 + 32_768 * 32);
    const r = rules({ rate: 0.001, burst: 2 });
    const hash = (n: number): [number, number] => {
      const out = new Int32Array(2);
      groupKey(`${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`, -1, new Int32Array(4), out);
      return [out[0], out[1]];
    };
    const CLIENTS = 1_000_000;
    // Each client spends both of its tokens, a millisecond after the one before: the table must hold the latest.
    let passed = 0;
    for (let n = 0; n < CLIENTS; n++) {
      const [a, b] = hash(n);
      passed += passes(table, a, b, 1, r, T0 + n, 2);
    }
    // Every client was new to the table, so each had its burst.
    expect(passed).toBe(2 * CLIENTS);
    expect(table.bytes).toBe(bytes);
    expect(table.descriptor.buffer.byteLength).toBe(bytes);
    // Every slot came to hold a client: past that, each new one replaced the least recently seen of its window.
    expect(table.size).toBe(table.descriptor.capacity);
    // The last thousand clients are still known, with empty buckets: each is refused, and not given a fresh burst.
    const now = T0 + CLIENTS;
    let refused = 0;
    for (let n = CLIENTS - 1_000; n < CLIENTS; n++) {
      const [a, b] = hash(n);
      if (table.take(a, b, 1, r.interval, r.limit, now) === 0) refused++;
    }
    expect(refused).toBe(1_000);
    // While a client from the start, long replaced, starts over with a full bucket.
    const [a, b] = hash(0);
    expect(passes(table, a, b, 1, r, now, 3)).toBe(2);
  });

  it('gives a new group the slot of the least recently seen one once its window is full', () => {
    // Sized for two groups: four slots, all in every window.
    const table = RateBuckets.create(2, 1, T0);
    expect(table.descriptor.capacity).toBe(4);
    expect(PROBE_WINDOW).toBeGreaterThanOrEqual(4);
    const r = rules({ rate: 0.001, burst: 1 });
    // Four groups spend their one token, a millisecond apart; then the first asks again (refused, but seen).
    for (let g = 0; g < 4; g++) expect(passes(table, g, 100 + g, 1, r, T0 + g, 1)).toBe(1);
    expect(passes(table, 0, 100, 1, r, T0 + 4, 1)).toBe(0);
    expect(table.size).toBe(4);
    // A fifth group takes the slot of group 1, now the least recently seen: group 1 alone starts over.
    expect(passes(table, 4, 104, 1, r, T0 + 5, 1)).toBe(1);
    for (const g of [2, 3, 0, 4]) expect(passes(table, g, 100 + g, 1, r, T0 + 6 + g, 1), `group ${g}`).toBe(0);
    expect(passes(table, 1, 101, 1, r, T0 + 20, 1)).toBe(1);
    expect(table.size).toBe(4);
  });

  it('refuses a buffer that does not hold the slots it claims', () => {
    const { descriptor } = RateBuckets.create(10, 2, T0);
    expect(() => RateBuckets.attach({ ...descriptor, rules: 3 })).toThrow(RangeError);
    expect(() => RateBuckets.attach({ ...descriptor, capacity: descriptor.capacity * 2 })).toThrow(RangeError);
  });

  it('loses no token when two threads take from one bucket at once', async () => {
    const TAKES = 200_000;
    const SPARE = 10;
    // A token a millisecond and room for both threads' takes and SPARE more, all at one instant: every take passes,
    // and each must move the bucket on by one token. An update lost to a race would leave more than SPARE behind.
    const interval = Float64Array.of(1, 1);
    const limit = Float64Array.of(1, 2 * TAKES + SPARE);
    const table = RateBuckets.create(1_000, 2, T0);
    const control = new SharedArrayBuffer(4);
    const module = new URL('./rate-buckets.ts', import.meta.url).href;
    // Each thread attaches to the posted table, waits for its twin, then takes for one group from rule 1.
    const code = `
      import { parentPort, workerData } from 'node:worker_threads';
      const { PASSED, RateBuckets } = await import(${JSON.stringify(module)});
      const table = RateBuckets.attach(workerData.descriptor);
      const control = new Int32Array(workerData.control);
      Atomics.add(control, 0, 1);
      while (Atomics.load(control, 0) < 2);
      const interval = Float64Array.of(${interval.join(', ')});
      const limit = Float64Array.of(${limit.join(', ')});
      let passed = 0;
      for (let i = 0; i < ${TAKES}; i++) if (table.take(42, 43, 0b10, interval, limit, ${T0}) === PASSED) passed++;
      parentPort.postMessage(passed);`;
    const passed = await Promise.all(
      [0, 1].map(async () => {
        const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData: { descriptor: table.descriptor, control } });
        const [count] = (await once(worker, 'message')) as [number];
        return count;
      }),
    );
    expect(passed).toEqual([TAKES, TAKES]);
    expect(passes(table, 42, 43, 0b10, { interval, limit }, T0, 2 * SPARE)).toBe(SPARE);
  });
});

describe('client groups', () => {
  it('are single IPv4 addresses by default, and a whole /24 when the prefix says so', () => {
    expect(key('203.0.113.7')).toBe(key('203.0.113.7'));
    expect(key('203.0.113.7')).not.toBe(key('203.0.113.8'));
    expect(key('203.0.113.7', 24)).toBe(key('203.0.113.200', 24));
    expect(key('203.0.113.7', 24)).not.toBe(key('203.0.114.7', 24));
  });

  it('are a /64 for IPv6 by default, whatever the text form of the address', () => {
    expect(key('2001:db8:1:2::a')).toBe(key('2001:db8:1:2:ffff:1:2:3'));
    expect(key('2001:db8:1:2::a')).toBe(key('2001:0DB8:0001:0002:0000:0000:0000:000b'));
    expect(key('2001:db8:1:2::a')).not.toBe(key('2001:db8:1:3::a'));
    expect(key('2001:db8:1:2::a', 32, 128)).not.toBe(key('2001:db8:1:2::b', 32, 128));
    expect(key('fe80::1%eth0', 32, 128)).toBe(key('fe80::1', 32, 128));
    expect(key('::', 32, 128)).toBe(key('0:0:0:0:0:0:0:0', 32, 128));
  });

  it('read an IPv4-mapped IPv6 address as its IPv4 address, and keep the families apart otherwise', () => {
    expect(key('::ffff:198.51.100.1')).toBe(key('198.51.100.1'));
    expect(key('::ffff:c633:6401')).toBe(key('198.51.100.1'));
    expect(key('::c633:6401', 32, 128)).not.toBe(key('198.51.100.1'));
    expect(key('255.255.255.255')).not.toBe('none');
  });

  it('are none for anything that is not an address', () => {
    for (const text of ['', 'unknown', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '2001:db8::1::2', '1:2:3:4:5:6:7:8:9', ':1::', '12345::', '::ffff:1.2.3', 'g::1']) {
      expect(key(text), text).toBe('none');
    }
  });
});

describe('RateLimiter', () => {
  it('refuses past the burst with Retry-After in whole seconds, at least 1, and passes again once a token is back', () => {
    const l = limiter(limits([{ name: 'all', rate: 0.25, burst: 2 }]));
    const ask = (now: number): number => l.check('198.51.100.1', 'api.example.com', '/v1/account', 'GET', now);
    expect([ask(T0), ask(T0), ask(T0)]).toEqual([PASSED, PASSED, 0]);
    // A token every 4 s.
    expect(l.retryAfter).toBe(4);
    expect(ask(T0 + 3_500)).toBe(0);
    expect(l.retryAfter).toBe(1);
    expect(ask(T0 + 4_000)).toBe(PASSED);
  });

  it('applies a rule only to its path prefix, methods and host', () => {
    const l = limiter(
      limits([
        { name: 'sessions', pathPrefix: '/v1/account/sessions', methods: ['POST'], rate: 0.001, burst: 1 },
        { name: 'tenant', host: '*.tenant.example', rate: 0.001, burst: 1 },
      ]),
    );
    const ask = (host: string, path: string, method: string): number => l.check('192.0.2.10', host, path, method, T0);
    for (let i = 0; i < 5; i++) {
      expect(ask('api.example.com', '/v1/account/sessions/current', 'GET')).toBe(PASSED);
      expect(ask('api.example.com', '/v1/account', 'POST')).toBe(PASSED);
      expect(ask('tenant.example', '/', 'GET')).toBe(PASSED);
    }
    expect(ask('api.example.com', '/v1/account/sessions/email', 'POST')).toBe(PASSED);
    expect(ask('api.example.com', '/v1/account/sessions/email', 'POST')).toBe(0);
    // Host matching ignores the port and the case, as routing does.
    expect(ask('A.Tenant.Example:8443', '/', 'GET')).toBe(PASSED);
    expect(ask('b.tenant.example', '/anything', 'PUT')).toBe(1);
    // A request that matches both: the sessions rule, first in order, refuses it.
    expect(ask('x.tenant.example', '/v1/account/sessions', 'POST')).toBe(0);
  });

  it('never limits a trusted proxy’s own address, and groups clients by the configured prefixes', () => {
    const l = limiter(limits([{ name: 'all', rate: 0.001, burst: 1 }], { ipv4Prefix: 24, ipv6Prefix: 48 }), ['10.0.0.0/8', '192.0.2.1', 'fd00::/8', '::ffff:172.16.0.0/108']);
    const ask = (ip: string): number => l.check(ip, undefined, '/', 'GET', T0);
    for (let i = 0; i < 10; i++) {
      for (const trusted of ['10.1.2.3', '192.0.2.1', 'fd00::1', '172.16.9.9', '::ffff:10.9.9.9']) expect(ask(trusted), trusted).toBe(PASSED);
    }
    // Its neighbours are clients like any other (192.0.2.1 is trusted alone, yet its /24 is one group).
    expect([ask('192.0.2.2'), ask('192.0.2.3'), ask('11.0.0.1'), ask('11.0.0.2')]).toEqual([PASSED, 0, PASSED, 0]);
    expect([ask('2001:db8:5::1'), ask('2001:db8:5:ffff::1'), ask('2001:db8:6::1')]).toEqual([PASSED, 0, PASSED]);
    // An unknown client (a socket that closed before its request was read) has no group to limit.
    expect(ask('')).toBe(PASSED);
    expect(ask('')).toBe(PASSED);
  });

  it('keeps the buckets across a reload only when the groups, the bound and the rules stay the same', () => {
    const base = limits([{ name: 'a', rate: 1, burst: 1 }, { name: 'b', rate: 1, burst: 1 }]);
    expect(sameBuckets(base, limits([{ name: 'a', rate: 5, burst: 10, pathPrefix: '/v1' }, { name: 'b', rate: 1, burst: 1 }]))).toBe(true);
    expect(sameBuckets(base, limits([{ name: 'b', rate: 1, burst: 1 }, { name: 'a', rate: 1, burst: 1 }]))).toBe(false);
    expect(sameBuckets(base, limits([{ name: 'a', rate: 1, burst: 1 }]))).toBe(false);
    expect(sameBuckets(base, limits([{ name: 'a', rate: 1, burst: 1 }, { name: 'b', rate: 1, burst: 1 }], { ipv6Prefix: 56 }))).toBe(false);
    expect(sameBuckets(base, limits([{ name: 'a', rate: 1, burst: 1 }, { name: 'b', rate: 1, burst: 1 }], { maxClients: 5 }))).toBe(false);
  });
});
