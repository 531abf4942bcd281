// Security regression story: a client must not choose its own address (and so its region and fence) by sending
// X-Forwarded-For or CF-Connecting-IP. Real sockets, so the peer address is what the kernel says, not what a test says.
import { once } from 'node:events';
import { request, createServer } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { compileCidrs } from '../src/geo/cidr.ts';
import { resolveClientIp } from '../src/geo/client-ip.ts';

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A server that answers every request with the client address it resolved, trusting `trusted`. */
async function serve(trusted: string[], host = '127.0.0.1'): Promise<{ host: string; port: number }> {
  const proxies = compileCidrs(trusted);
  const server = createServer((req, res) => {
    const single = req.headers['cf-connecting-ip'];
    res.end(resolveClientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], proxies, typeof single === 'string' ? single : undefined));
  });
  servers.push(server);
  server.listen(0, host);
  await once(server, 'listening');
  return { host, port: (server.address() as AddressInfo).port };
}

async function clientIpSeenBy(target: { host: string; port: number }, headers: OutgoingHttpHeaders = {}): Promise<string> {
  const req = request({ host: target.host, port: target.port, headers, agent: false }).end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let body = '';
  for await (const chunk of res) body += String(chunk);
  return body;
}

describe('when loopback is not a trusted proxy', () => {
  it('ignores a spoofed X-Forwarded-For and reports the socket peer', async () => {
    const target = await serve(['10.0.0.0/8']);
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '203.0.113.5' })).toBe('127.0.0.1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': ['203.0.113.5', '10.1.1.1'] })).toBe('127.0.0.1');
  });

  it('ignores a spoofed single-value header', async () => {
    const target = await serve(['10.0.0.0/8']);
    expect(await clientIpSeenBy(target, { 'cf-connecting-ip': '203.0.113.5' })).toBe('127.0.0.1');
  });

  it('trusts nothing by default', async () => {
    const target = await serve([]);
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '203.0.113.5' })).toBe('127.0.0.1');
  });
});

describe('when loopback is a trusted proxy', () => {
  it('honors X-Forwarded-For', async () => {
    const target = await serve(['127.0.0.0/8']);
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '203.0.113.5' })).toBe('203.0.113.5');
    expect(await clientIpSeenBy(target)).toBe('127.0.0.1');
  });

  it('walks past trusted intermediate proxies, and a client cannot hide behind a forged leftmost entry', async () => {
    const target = await serve(['127.0.0.0/8', '10.0.0.0/8']);
    const chain = { 'x-forwarded-for': '6.6.6.6, 203.0.113.5, 10.1.1.1, 10.2.2.2' };
    expect(await clientIpSeenBy(target, chain)).toBe('203.0.113.5');
    // Several header lines are one list, in order.
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': ['6.6.6.6, 203.0.113.5', '10.1.1.1'] })).toBe('203.0.113.5');
  });

  it('stops at garbage and falls back to the trusted hop that appended it', async () => {
    const target = await serve(['127.0.0.0/8', '10.0.0.0/8']);
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '203.0.113.5, <script>, 10.1.1.1' })).toBe('10.1.1.1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': 'unknown' })).toBe('127.0.0.1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '999.1.1.1' })).toBe('127.0.0.1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': ' 203.0.113.5:4711 ' })).toBe('203.0.113.5');
  });

  it('honors a valid single-value header and falls back to X-Forwarded-For on an invalid one', async () => {
    const target = await serve(['127.0.0.0/8']);
    expect(await clientIpSeenBy(target, { 'cf-connecting-ip': '198.51.100.9', 'x-forwarded-for': '203.0.113.5' })).toBe('198.51.100.9');
    expect(await clientIpSeenBy(target, { 'cf-connecting-ip': 'nope', 'x-forwarded-for': '203.0.113.5' })).toBe('203.0.113.5');
  });

  it('matches an IPv4 peer on a dual-stack listener, where the socket says ::ffff:127.0.0.1', async () => {
    const target = await serve(['127.0.0.0/8'], '::');
    expect(await clientIpSeenBy({ host: '127.0.0.1', port: target.port }, { 'x-forwarded-for': '203.0.113.5' })).toBe('203.0.113.5');
    const untrusting = await serve([], '::');
    expect(await clientIpSeenBy({ host: '127.0.0.1', port: untrusting.port }, { 'x-forwarded-for': '203.0.113.5' })).toBe('127.0.0.1');
  });
});

describe('over IPv6 loopback', () => {
  it('ignores X-Forwarded-For from an untrusted ::1', async () => {
    const target = await serve(['127.0.0.0/8'], '::1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '2001:db8::5' })).toBe('::1');
  });

  it('honors X-Forwarded-For from a trusted ::1, bracketed and with a port', async () => {
    const target = await serve(['::1/128'], '::1');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '[2001:DB8::5]:443' })).toBe('2001:db8::5');
    expect(await clientIpSeenBy(target, { 'x-forwarded-for': '203.0.113.5' })).toBe('203.0.113.5');
  });
});
