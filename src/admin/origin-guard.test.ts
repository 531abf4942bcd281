import { describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import { compileConfig } from '../config/compile.ts';
import { ConfigError } from '../config/errors.ts';
import type { AllowedHost } from '../config/types.ts';
import { namesListener, originGuard, parseHost, parseOrigin, type Listener } from './origin-guard.ts';

function allowedHosts(...entries: string[]): readonly AllowedHost[] {
  const config = compileConfig(
    { self: { region: 'r', zone: 'z' }, regions: { r: { location: [0, 0], zones: { z: { endpoints: ['http://10.0.0.1'] } } } }, admin: { allowedHosts: entries } },
    {},
  );
  return config.admin.allowedHosts;
}

function problemsOf(entries: unknown[]): string[] {
  try {
    allowedHosts(...(entries as string[]));
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('admin.allowedHosts compiles into rules', () => {
  it('lower-cases names, splits *. and :port, and canonicalizes IP literals as a URL parser would', () => {
    expect(allowedHosts('Meridian.Internal', '*.admin.example', 'tunnel.example:19090', '[2001:DB8::0001]:9090', '127.1')).toEqual([
      { name: 'meridian.internal', subdomains: false, port: undefined },
      { name: 'admin.example', subdomains: true, port: undefined },
      { name: 'tunnel.example', subdomains: false, port: 19090 },
      { name: '[2001:db8::1]', subdomains: false, port: 9090 },
      { name: '127.0.0.1', subdomains: false, port: undefined },
    ]);
  });

  it('defaults to none', () => {
    expect(allowedHosts()).toEqual([]);
  });

  it('names the entry of every bad one', () => {
    expect(problemsOf(['http://a.example', 'a.example/x', '*.*.example', 'ok.example', 'a.example:70000', '300.1.1.1', 'user@a.example'])).toEqual([
      'admin.allowedHosts[0]: a hostname, *.suffix or IP address, with :port optional',
      'admin.allowedHosts[1]: a hostname, *.suffix or IP address, with :port optional',
      'admin.allowedHosts[2]: a hostname, *.suffix or IP address, with :port optional',
      'admin.allowedHosts[6]: a hostname, *.suffix or IP address, with :port optional',
    ]);
    expect(problemsOf(['a.example:70000', '300.1.1.1', 'a.example:0'])).toEqual([
      'admin.allowedHosts[0]: port 70000 is out of range',
      'admin.allowedHosts[1]: not a hostname or IP address ("300.1.1.1")',
      'admin.allowedHosts[2]: port 0 is out of range',
    ]);
  });
});

describe('parseHost and parseOrigin', () => {
  const hosts: [string, ReturnType<typeof parseHost>][] = [
    ['127.0.0.1:9090', { name: '127.0.0.1', port: 9090 }],
    ['LocalHost:9090', { name: 'localhost', port: 9090 }],
    ['[0:0:0:0:0:0:0:1]:9090', { name: '[::1]', port: 9090 }],
    ['admin.example', { name: 'admin.example', port: 80 }],
    ['admin.example:80', { name: 'admin.example', port: 80 }],
    // Anything a URL parser would read as userinfo, path or escape is refused before it gets the chance.
    ['evil.example@127.0.0.1:9090', null],
    ['127.0.0.1:9090/x', null],
    ['127.0.0.1:9090 ', null],
    ['%31%32%37.0.0.1:9090', null],
    ['a.example:99999', null],
    ['', null],
  ];
  it.each(hosts)('Host %j', (value, expected) => expect(parseHost(value)).toEqual(expected));

  const origins: [string, ReturnType<typeof parseOrigin>][] = [
    ['http://127.0.0.1:9090', { name: '127.0.0.1', port: 9090 }],
    ['http://[::1]:9090', { name: '[::1]', port: 9090 }],
    ['https://admin.example', { name: 'admin.example', port: 443 }],
    ['http://admin.example', { name: 'admin.example', port: 80 }],
    ['null', null],
    ['file://', null],
    ['chrome-extension://abcdef', null],
    ['http://127.0.0.1:9090/path', null],
    ['http://user@127.0.0.1:9090', null],
    ['http://127.0.0.1:9090, https://evil.example', null],
  ];
  it.each(origins)('Origin %j', (value, expected) => expect(parseOrigin(value)).toEqual(expected));
});

describe('namesListener', () => {
  const loopback: Listener = { localAddress: '127.0.0.1', localPort: 9090, boundAddress: '127.0.0.1' };
  const loopback6: Listener = { localAddress: '::1', localPort: 9090, boundAddress: '::1' };
  const specific: Listener = { localAddress: '10.0.0.5', localPort: 9090, boundAddress: '10.0.0.5' };
  // A wildcard listener reached on its external interface, and on loopback, the IPv4 one over a dual-stack `::`.
  const wildcardExternal: Listener = { localAddress: '10.0.0.5', localPort: 9090, boundAddress: '0.0.0.0' };
  const dualStackExternal: Listener = { localAddress: '::ffff:10.0.0.5', localPort: 9090, boundAddress: '::' };
  const dualStackLoopback: Listener = { localAddress: '::ffff:127.0.0.1', localPort: 9090, boundAddress: '::' };
  const none: readonly AllowedHost[] = [];
  const some = allowedHosts('meridian.internal', '*.admin.example', 'localhost:19090');

  const cases: [what: string, host: string, listener: Listener | undefined, allowed: readonly AllowedHost[], expected: boolean][] = [
    ['its own loopback address', '127.0.0.1:9090', loopback, none, true],
    ['localhost on loopback', 'localhost:9090', loopback, none, true],
    ['another loopback literal on loopback', '[::1]:9090', loopback, none, true],
    ['localhost on IPv6 loopback', 'localhost:9090', loopback6, none, true],
    ['its own IPv6 loopback address', '[::1]:9090', loopback6, none, true],
    ['a rebinding name', 'evil.example:9090', loopback, none, false],
    ['a rebinding name without a port', 'evil.example', loopback, none, false],
    ['its own address at another port (the data plane)', '127.0.0.1:8080', loopback, none, false],
    ['localhost at another port', 'localhost:8080', loopback, none, false],
    ['its own address without a port', '127.0.0.1', loopback, none, false],
    ['a specific bind: its address', '10.0.0.5:9090', specific, none, true],
    ['a specific bind: not localhost', 'localhost:9090', specific, none, false],
    ['a specific bind: not loopback literals', '127.0.0.1:9090', specific, none, false],
    ['a specific bind: not another of the host\'s addresses', '10.0.0.6:9090', specific, none, false],
    ['a wildcard bind: the interface reached', '10.0.0.5:9090', wildcardExternal, none, true],
    ['a wildcard bind: another interface', '10.0.0.6:9090', wildcardExternal, none, false],
    ['a wildcard bind: localhost (a container port mapping)', 'localhost:9090', wildcardExternal, none, true],
    ['a wildcard bind: a loopback literal (an SSH tunnel)', '127.0.0.1:9090', wildcardExternal, none, true],
    ['dual-stack: the IPv4 interface reached', '10.0.0.5:9090', dualStackExternal, none, true],
    ['dual-stack: loopback', '127.0.0.1:9090', dualStackLoopback, none, true],
    ['dual-stack: a rebinding name', 'evil.example:9090', dualStackExternal, none, false],
    ['an allowed name, at any port', 'meridian.internal:443', loopback, some, true],
    ['an allowed name, in another case', 'MERIDIAN.internal:9090', loopback, some, true],
    ['a subdomain of an allowed suffix', 'eu.admin.example:9090', loopback, some, true],
    ['the suffix itself is not a subdomain', 'admin.example:9090', loopback, some, false],
    ['a name that only ends like the suffix', 'eviladmin.example:9090', loopback, some, false],
    ['an allowed name:port at its port', 'localhost:19090', specific, some, true],
    ['an allowed name:port at another port', 'localhost:3000', specific, some, false],
    ['no connection known: only allowed names', '127.0.0.1:9090', undefined, some, false],
    ['no connection known: an allowed name', 'meridian.internal:9090', undefined, some, true],
  ];
  it.each(cases)('%s: %s', (_what, host, listener, allowed, expected) => {
    expect(namesListener(parseHost(host)!, listener, allowed)).toBe(expected);
  });
});

describe('originGuard as middleware', () => {
  const listener: Listener = { localAddress: '127.0.0.1', localPort: 9090, boundAddress: '127.0.0.1' };
  // What @hono/node-server and listenAdmin put in c.env, reduced to what the guard reads.
  const env = { incoming: { socket: { localAddress: listener.localAddress, localPort: listener.localPort } }, listener: { address: listener.boundAddress, port: 9090, family: 'IPv4' } };
  const app = new Hono();
  app.use(originGuard(() => allowedHosts('meridian.internal')));
  app.all('*', (c) => c.text('through'));

  const request = (method: string, path: string, headers: Record<string, string>) => app.request(path, { method, headers }, env);

  const cases: [what: string, method: string, path: string, headers: Record<string, string>, status: number][] = [
    ['own Host, GET', 'GET', '/status', { host: '127.0.0.1:9090' }, 200],
    ['rebinding Host, GET', 'GET', '/status', { host: 'evil.example:9090' }, 421],
    ['rebinding Host, /healthz', 'GET', '/healthz', { host: 'evil.example:9090' }, 200],
    ['rebinding Host, /readyz', 'GET', '/readyz', { host: 'anything.at.all' }, 200],
    ['a Host that is not one', 'GET', '/status', { host: 'evil.example@127.0.0.1:9090' }, 421],
    ['no Host at all (an HTTP/1.0 probe; browsers always send one)', 'GET', '/status', {}, 200],
    ['no browser headers, POST', 'POST', '/reload', { host: '127.0.0.1:9090' }, 200],
    ['same-origin POST', 'POST', '/reload', { host: '127.0.0.1:9090', origin: 'http://127.0.0.1:9090', 'sec-fetch-site': 'same-origin' }, 200],
    ['a POST the user started', 'POST', '/reload', { host: '127.0.0.1:9090', 'sec-fetch-site': 'none' }, 200],
    ['allowed name as Origin', 'POST', '/reload', { host: '127.0.0.1:9090', origin: 'https://meridian.internal' }, 200],
    ['cross-site Sec-Fetch-Site', 'POST', '/reload', { host: '127.0.0.1:9090', 'sec-fetch-site': 'cross-site' }, 403],
    ['same-site Sec-Fetch-Site (another port of this host)', 'POST', '/reload', { host: '127.0.0.1:9090', 'sec-fetch-site': 'same-site' }, 403],
    ['foreign Origin', 'POST', '/reload', { host: '127.0.0.1:9090', origin: 'https://evil.example' }, 403],
    ['Origin: null', 'POST', '/reload', { host: '127.0.0.1:9090', origin: 'null' }, 403],
    ['Origin of the data plane port', 'PUT', '/reload', { host: '127.0.0.1:9090', origin: 'http://127.0.0.1:8080' }, 403],
    ['foreign Origin on DELETE', 'DELETE', '/anything', { host: '127.0.0.1:9090', origin: 'https://evil.example' }, 403],
    ['foreign Origin on GET (reads are the Host check\'s)', 'GET', '/status', { host: '127.0.0.1:9090', origin: 'https://evil.example' }, 200],
    ['cross-site OPTIONS', 'OPTIONS', '/reload', { host: '127.0.0.1:9090', 'sec-fetch-site': 'cross-site' }, 200],
  ];
  it.each(cases)('%s → %i', async (_what, method, path, headers, status) => {
    const res = await request(method, path, headers);
    expect(res.status).toBe(status);
    if (status === 421) expect(await res.json()).toMatchObject({ code: 421, type: 'meridian_admin_misdirected', message: expect.stringContaining('admin.allowedHosts') });
    if (status === 403) expect(await res.json()).toMatchObject({ code: 403, type: 'meridian_admin_cross_site' });
  });

  it('names the Host it refused and the address that works', async () => {
    const res = await request('GET', '/status', { host: 'evil.example:9090' });
    expect(((await res.json()) as { message: string }).message).toMatch(/^Host "evil\.example:9090" does not name this admin listener.*127\.0\.0\.1:9090.*admin\.allowedHosts/);
  });
});
