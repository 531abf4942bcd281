import { describe, expect, it } from 'vitest';
import { canonicalIp, compileCidrs, parseCidr } from './cidr.ts';

describe('compileCidrs().has', () => {
  const cases: [cidrs: string[], ip: string, expected: boolean][] = [
    [['10.0.0.0/8'], '10.255.3.4', true],
    [['10.0.0.0/8'], '11.0.0.0', false],
    [['10.0.0.0/8'], '9.255.255.255', false],
    [['192.168.1.7/32'], '192.168.1.7', true],
    [['192.168.1.7/32'], '192.168.1.8', false],
    [['192.168.1.7'], '192.168.1.7', true],
    [['0.0.0.0/0'], '255.255.255.255', true],
    [['0.0.0.0/0'], '0.0.0.0', true],
    [['0.0.0.0/0'], '2001:db8::1', false],
    [['128.0.0.0/1'], '200.1.1.1', true],
    [['128.0.0.0/1'], '127.255.255.255', false],
    [['172.16.0.0/12'], '172.31.255.255', true],
    [['172.16.0.0/12'], '172.32.0.0', false],
    [['10.1.2.3/8'], '10.9.9.9', true], // host bits in the rule are cleared, not refused
    [['2001:db8::/32'], '2001:db8:ffff::1', true],
    [['2001:db8::/32'], '2001:db9::1', false],
    [['2001:db8::/32'], '2001:DB8::ABCD', true],
    [['2001:db8::/32'], '10.0.0.1', false],
    [['::1/128'], '::1', true],
    [['::1/128'], '::2', false],
    [['::1'], '0:0:0:0:0:0:0:1', true],
    [['::/0'], 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true],
    [['fe80::/10'], 'febf::1', true],
    [['fe80::/10'], 'fec0::1', false],
    [['fe80::/10'], 'fe80::1%eth0', true],
    [['2001:db8:0:0:8000::/65'], '2001:db8::8000:0:0:1', true],
    [['2001:db8:0:0:8000::/65'], '2001:db8::7fff:0:0:1', false],
    [['1:2:3:4:5:6:7:8/127'], '1:2:3:4:5:6:7:9', true],
    [['1:2:3:4:5:6:7:8/127'], '1:2:3:4:5:6:7:a', false],
    // IPv4-mapped IPv6 is IPv4: mapped addresses match IPv4 rules, and mapped rules are IPv4 rules.
    [['127.0.0.0/8'], '::ffff:127.0.0.1', true],
    [['127.0.0.0/8'], '::FFFF:7f00:1', true],
    [['::ffff:10.0.0.0/104'], '10.2.3.4', true],
    [['::ffff:10.0.0.0/104'], '11.2.3.4', false],
    [['::/0'], '::ffff:1.2.3.4', false],
    [['127.0.0.1'], '::127.0.0.1', false], // IPv4-compatible is not IPv4-mapped
    [[], '127.0.0.1', false],
    // garbage is never a member, even of the widest set
    ...['', ' 1.2.3.4', '1.2.3.4 ', '1.2.3', '1.2.3.4.5', '1.2.3.256', '01.2.3.4', '1..2.3', '1.2.3.4:80', 'localhost',
      '::ffff:1.2.3', ':::', ':1::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7:8::', '[::1]', 'fe80::1%',
      '1:2:3:4:5:6:7:1.2.3.4', 'unknown'].map((ip): [string[], string, boolean] => [['0.0.0.0/0', '::/0'], ip, false]),
  ];
  it.each(cases)('%j has %j → %s', (cidrs, ip, expected) => {
    expect(compileCidrs(cidrs).has(ip)).toBe(expected);
  });

  it('matches any rule of a mixed list', () => {
    const set = compileCidrs(['10.0.0.0/8', '2001:db8::/32', '192.168.0.1']);
    expect(['10.1.1.1', '2001:db8::5', '192.168.0.1', '::ffff:192.168.0.1'].map((ip) => set.has(ip))).toEqual([true, true, true, true]);
    expect(['192.168.0.2', '2001:db9::', '8.8.8.8'].map((ip) => set.has(ip))).toEqual([false, false, false]);
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', { family: 4, prefix: 8, words: [0x0a000000] }],
    ['10.9.8.7/16', { family: 4, prefix: 16, words: [0x0a090000] }],
    ['255.255.255.255', { family: 4, prefix: 32, words: [0xffffffff] }],
    ['::ffff:192.0.2.0/120', { family: 4, prefix: 24, words: [0xc0000200] }],
    ['2001:db8::/32', { family: 6, prefix: 32, words: [0x20010db8, 0, 0, 0] }],
    ['::1', { family: 6, prefix: 128, words: [0, 0, 0, 1] }],
    ['::/0', { family: 6, prefix: 0, words: [0, 0, 0, 0] }],
  ])('%s', (text, expected) => {
    expect(parseCidr(text)).toEqual(expected);
  });

  it.each(['', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/-1', '10.0.0.0/8/8', '/8', '::/129', 'fe80::/10%eth0',
    'fe80::1%eth0', '10.0.0.0/ 8', 'example.com', '10.0.0.0/8 '])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeNull();
  });
});

describe('compileCidrs errors', () => {
  it('names the index and the value so the config layer only prefixes the field path', () => {
    expect(() => compileCidrs(['127.0.0.1', '::1', '10.0.0.0/33'])).toThrow('[2]: not a CIDR ("10.0.0.0/33")');
  });
});

describe('canonicalIp', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::ffff:102:304', '1.2.3.4'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8::0001', '2001:db8::1'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // the longest zero run is compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // on a tie, the first
    ['2001:db8:1:1:1:1:0:1', '2001:db8:1:1:1:1:0:1'], // a lone zero group stays
    ['0:0:0:0:0:0:0:0', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::1.2.3.4', '::102:304'],
  ])('%s → %s', (ip, expected) => {
    expect(canonicalIp(ip)).toBe(expected);
  });

  it('reads a range of a larger string', () => {
    expect(canonicalIp('x1.2.3.4y', 1, 8)).toBe('1.2.3.4');
    expect(canonicalIp('[::1]', 1, 4)).toBe('::1');
  });

  it.each(['', '1.2.3', 'x', '::ffff:1.2.3.4.5', '1.2.3.4/32'])('refuses %j', (ip) => {
    expect(canonicalIp(ip)).toBeNull();
  });
});
