import { describe, expect, test } from 'vitest';
import { compileConfig } from './compile.ts';
import { ConfigError } from './errors.ts';

const raw = (extra: Record<string, unknown>): Record<string, unknown> => ({
  self: { region: 'local', zone: 'az-1' },
  regions: { local: { location: [50.11, 8.68], zones: { 'az-1': { endpoints: ['http://127.0.0.1:1'] } } } },
  ...extra,
});
const PAIR = { cert: '/etc/meridian/tls/site.crt', key: '/etc/meridian/tls/site.key' };

function problems(extra: Record<string, unknown>): string[] {
  try {
    compileConfig(raw(extra), {});
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('listeners', () => {
  test('one object is the plain listener of older configs; a list names each by its protocol', () => {
    const one = compileConfig(raw({ listen: { port: 8080 } }), {});
    expect(one.listen.map((l) => [l.name, l.protocol, l.port, l.proxyProtocol])).toEqual([['http', 'http', 8080, null]]);
    const list = compileConfig(
      raw({ listen: [{ protocol: 'redirect', port: 80 }, { protocol: 'https', port: 443, proxyProtocol: { trusted: ['10.0.0.0/8'] } }], tls: { certificates: [PAIR] } }),
      {},
    );
    expect(list.listen.map((l) => [l.name, l.protocol, l.port, l.http2])).toEqual([['redirect', 'redirect', 80, true], ['https', 'https', 443, true]]);
    // The redirect goes to the https listener's port by default, and only listed load balancers may send PROXY headers.
    expect(list.listen[0].redirect).toEqual({ httpsPort: 443, acmeChallenge: 'proxy' });
    expect(list.listen[1].proxyProtocol?.has('10.1.2.3')).toBe(true);
    expect(list.listen[1].proxyProtocol?.has('192.168.1.1')).toBe(false);
  });

  test('two listeners of one protocol get numbered names unless named', () => {
    const config = compileConfig(raw({ listen: [{ port: 8080 }, { port: 8081 }, { name: 'internal', port: 8082 }] }), {});
    expect(config.listen.map((l) => l.name)).toEqual(['http-0', 'http-1', 'internal']);
  });

  test.each([
    ['an https listener without certificates', { listen: [{ protocol: 'https', port: 443 }] }, 'listen[0].protocol: an https listener needs at least one pair in tls.certificates'],
    ['two listeners with one name', { listen: [{ name: 'edge', port: 80 }, { name: 'edge', port: 81 }] }, 'listen[1].name: "edge" is also the name of listen[0]'],
    ['two listeners on one port (reusePort would split its connections)', { listen: [{ port: 80 }, { protocol: 'redirect', host: '127.0.0.1', port: 80 }] }, 'listen[1].port: 80 is also the port of listen[0]'],
    ['redirect settings on a plain listener', { listen: [{ port: 80, redirect: { httpsPort: 443 } }] }, 'listen[0].redirect: only a listener with protocol: redirect redirects'],
    ['a PROXY protocol peer that is not a CIDR', { listen: [{ port: 80, proxyProtocol: { trusted: ['10.0.0.0/8', 'nlb'] } }] }, 'listen[0].proxyProtocol.trusted[1]: not an IP address or CIDR ("nlb")'],
    ['an unknown protocol, named as written for the one-object form', { listen: { protocol: 'quic' } }, 'listen.protocol'],
  ])('%s is refused naming the field', (_what, extra, expected) => {
    expect(problems(extra).join('\n')).toContain(expected);
  });
});
