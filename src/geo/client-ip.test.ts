import { describe, expect, it } from 'vitest';
import { compileCidrs } from './cidr.ts';
import type { CidrSet } from './cidr.ts';
import { normalizeIp, resolveClientIp } from './client-ip.ts';

describe('normalizeIp', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['  1.2.3.4\t', '1.2.3.4'],
    ['1.2.3.4:5678', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['[::ffff:1.2.3.4]:80', '1.2.3.4'],
    ['2001:DB8::1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:db8::1]:443', '2001:db8::1'],
    [' [2001:db8::1]:443 ', '2001:db8::1'],
  ])('%j → %s', (text, expected) => {
    expect(normalizeIp(text)).toBe(expected);
  });

  it.each(['', ' ', 'unknown', '_hidden', '1.2.3.4:', '1.2.3.4:port', '1.2.3.4:123456', '[2001:db8::1', '[2001:db8::1]443',
    '[2001:db8::1]:', '2001:db8::1:443x', '1.2.3.4 5.6.7.8', '300.1.1.1', '"1.2.3.4"'])('refuses %j', (text) => {
    expect(normalizeIp(text)).toBeNull();
  });
});

describe('resolveClientIp', () => {
  const proxies = compileCidrs(['10.0.0.0/8', 'fd00::/8']);
  const cases: [name: string, peer: string | undefined, xff: string | string[] | undefined, single: string | undefined, expected: string][] = [
    ['untrusted peer ignores XFF', '203.0.113.9', '1.1.1.1', undefined, '203.0.113.9'],
    ['untrusted mapped peer is plain IPv4', '::ffff:203.0.113.9', '1.1.1.1', undefined, '203.0.113.9'],
    ['untrusted IPv6 peer, canonical form', '2001:DB8::9', '1.1.1.1', undefined, '2001:db8::9'],
    ['unknown peer', undefined, '1.1.1.1', undefined, ''],
    ['garbage peer', 'nonsense', '1.1.1.1', undefined, ''],
    ['trusted peer without XFF', '10.0.0.1', undefined, undefined, '10.0.0.1'],
    ['trusted mapped peer', '::ffff:10.0.0.1', '198.51.100.7', undefined, '198.51.100.7'],
    ['one hop', '10.0.0.1', '198.51.100.7', undefined, '198.51.100.7'],
    ['the rightmost untrusted hop, not the spoofable leftmost', '10.0.0.1', '6.6.6.6, 198.51.100.7', undefined, '198.51.100.7'],
    ['past trusted hops', '10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.3, 10.0.0.2', undefined, '198.51.100.7'],
    ['all hops trusted: the leftmost', '10.0.0.1', '10.0.0.9,10.0.0.8', undefined, '10.0.0.9'],
    ['several header lines joined in order', '10.0.0.1', ['6.6.6.6, 198.51.100.7', '10.0.0.2'], undefined, '198.51.100.7'],
    ['empty header', '10.0.0.1', '', undefined, '10.0.0.1'],
    ['ports, brackets and blanks', '10.0.0.1', ' 2001:db8::7 ,[fd00::2]:443, 10.0.0.2:9000 ', undefined, '2001:db8::7'],
    ['IPv4 behind IPv6 proxies', 'fd00::1', '198.51.100.7:1234, [fd00::2]', undefined, '198.51.100.7'],
    ['mapped hops', '10.0.0.1', '::ffff:198.51.100.7, ::ffff:10.0.0.2', undefined, '198.51.100.7'],
    ['garbage stops at the trusted hop that appended it', '10.0.0.1', '198.51.100.7, unknown, 10.0.0.2', undefined, '10.0.0.2'],
    ['garbage right after the peer', '10.0.0.1', '198.51.100.7, 1.2.3.999', undefined, '10.0.0.1'],
    ['empty entry stops the walk', '10.0.0.1', '198.51.100.7,,10.0.0.2', undefined, '10.0.0.2'],
    ['leading comma', '10.0.0.1', ',10.0.0.2', undefined, '10.0.0.2'],
    ['single header wins behind a trusted peer', '10.0.0.1', '6.6.6.6', '198.51.100.7', '198.51.100.7'],
    ['single header normalized', '10.0.0.1', undefined, ' [2001:db8::7]:443', '2001:db8::7'],
    ['invalid single header falls back to XFF', '10.0.0.1', '198.51.100.7', 'bogus', '198.51.100.7'],
    ['single header ignored from an untrusted peer', '203.0.113.9', undefined, '198.51.100.7', '203.0.113.9'],
  ];
  it.each(cases)('%s', (_name, peer, xff, single, expected) => {
    expect(resolveClientIp(peer, xff, proxies, single)).toBe(expected);
  });

  it('does no work on the header when the peer is not trusted', () => {
    let calls = 0;
    const counting: CidrSet = { has: (ip) => (calls++, ip.startsWith('10.')) };
    const header = { toString: () => expect.unreachable('header read') } as unknown as string;
    expect(resolveClientIp('203.0.113.9', header, counting, header)).toBe('203.0.113.9');
    expect(calls).toBe(1);
  });

  it('trusts everything when told to: /0 takes the leftmost valid hop', () => {
    const all = compileCidrs(['0.0.0.0/0', '::/0']);
    expect(resolveClientIp('127.0.0.1', '1.1.1.1, 2.2.2.2', all)).toBe('1.1.1.1');
  });
});
