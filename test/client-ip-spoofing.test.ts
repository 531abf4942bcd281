// Security regression story: a client must not choose its own address (and so its region and fence) by sending
// X-Forwarded-For or a client IP header such as CF-Connecting-IP. A real Meridian in front of a real upstream that
// records what Appwrite would read; real sockets, so the peer address is what the kernel says. The client plays a
// trusted proxy by binding to 127.0.0.2, an ordinary client by binding to 127.0.0.1.
import { once } from 'node:events';
import { request, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, startUpstream, type RunningProxy, type Upstream } from './support/harness.ts';

const TRUSTED = '127.0.0.2';
const UNTRUSTED = '127.0.0.1';

let upstream: Upstream;
/** Dual-stack, trusting 127.0.0.2 and 10.0.0.0/8 (intermediate hops) but not 127.0.0.1 or ::1; names CF-Connecting-IP. */
let edge: RunningProxy;
/** IPv6 only, trusting ::1. */
let v6Edge: RunningProxy;
/** geo left at its defaults: trusts no one. */
let defaults: RunningProxy;

beforeAll(async () => {
  // Answers with the headers it received: X-Forwarded-For is the address Appwrite takes as the client's.
  upstream = await startUpstream((req, res) => {
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  // The configured name in mixed case: node lower-cases what arrives, so the config must too.
  edge = await startProxy([upstream.origin], {
    listen: { host: '::' },
    geo: { trustedProxies: [`${TRUSTED}/32`, '10.0.0.0/8'], clientIpHeader: 'CF-Connecting-IP' },
  });
  v6Edge = await startProxy([upstream.origin], { listen: { host: '::1' }, geo: { trustedProxies: ['::1/128'] } });
  defaults = await startProxy([upstream.origin]);
});

afterAll(async () => {
  await edge?.shutdown();
  await v6Edge?.shutdown();
  await defaults?.shutdown();
  await upstream?.close();
});

interface From {
  /** The address the client connects to: 127.0.0.1 unless it is ::1. */
  readonly host?: string;
  /** The address the client connects from, and so the peer address Meridian sees. */
  readonly localAddress?: string;
}

/** The headers the upstream received for one request through `proxy`. */
async function upstreamSaw(proxy: RunningProxy, headers: OutgoingHttpHeaders = {}, from: From = {}): Promise<IncomingMessage['headers']> {
  const host = from.host ?? '127.0.0.1';
  const localAddress = from.localAddress ?? (host === '::1' ? '::1' : UNTRUSTED);
  const req = request({ host, port: proxy.port, localAddress, headers, agent: false }).end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let body = '';
  for await (const chunk of res) body += String(chunk);
  expect(res.statusCode, body).toBe(200);
  return JSON.parse(body) as IncomingMessage['headers'];
}

/** The client address Appwrite would read: the X-Forwarded-For Meridian wrote (overwrite mode, the default). */
async function clientIpSeenBy(proxy: RunningProxy, headers: OutgoingHttpHeaders = {}, from: From = {}): Promise<string | undefined> {
  return (await upstreamSaw(proxy, headers, from))['x-forwarded-for'] as string | undefined;
}

describe('when the peer is not a trusted proxy', () => {
  it('ignores a spoofed X-Forwarded-For and reports the socket peer', async () => {
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '203.0.113.5' })).toBe('127.0.0.1');
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': ['203.0.113.5', '10.1.1.1'] })).toBe('127.0.0.1');
  });

  it('ignores a spoofed client IP header, and drops it before Appwrite can read it', async () => {
    const seen = await upstreamSaw(edge, { 'cf-connecting-ip': '203.0.113.5', 'x-forwarded-for': '203.0.113.6' });
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['cf-connecting-ip']).toBeUndefined();
  });

  it('trusts nothing by default', async () => {
    expect(await clientIpSeenBy(defaults, { 'x-forwarded-for': '203.0.113.5' })).toBe('127.0.0.1');
    expect(await clientIpSeenBy(defaults, { 'x-forwarded-for': '203.0.113.5' }, { localAddress: TRUSTED })).toBe(TRUSTED);
  });
});

describe('when the peer is a trusted proxy', () => {
  const viaEdge = { localAddress: TRUSTED };

  it('honors X-Forwarded-For', async () => {
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '203.0.113.5' }, viaEdge)).toBe('203.0.113.5');
    expect(await clientIpSeenBy(edge, {}, viaEdge)).toBe(TRUSTED);
  });

  it('walks past trusted intermediate proxies, and a client cannot hide behind a forged leftmost entry', async () => {
    const chain = { 'x-forwarded-for': '6.6.6.6, 203.0.113.5, 10.1.1.1, 10.2.2.2' };
    expect(await clientIpSeenBy(edge, chain, viaEdge)).toBe('203.0.113.5');
    // Several header lines are one list, in order.
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': ['6.6.6.6, 203.0.113.5', '10.1.1.1'] }, viaEdge)).toBe('203.0.113.5');
  });

  it('stops at garbage and falls back to the trusted hop that appended it', async () => {
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '203.0.113.5, <script>, 10.1.1.1' }, viaEdge)).toBe('10.1.1.1');
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': 'unknown' }, viaEdge)).toBe(TRUSTED);
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '999.1.1.1' }, viaEdge)).toBe(TRUSTED);
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': ' 203.0.113.5:4711 ' }, viaEdge)).toBe('203.0.113.5');
  });

  it('honors a valid client IP header (geo.clientIpHeader) and falls back to X-Forwarded-For on an invalid one', async () => {
    const seen = await upstreamSaw(edge, { 'cf-connecting-ip': '198.51.100.9', 'x-forwarded-for': '203.0.113.5' }, viaEdge);
    expect(seen['x-forwarded-for']).toBe('198.51.100.9');
    // From a trusted proxy the header itself passes as sent.
    expect(seen['cf-connecting-ip']).toBe('198.51.100.9');
    expect(await clientIpSeenBy(edge, { 'cf-connecting-ip': 'nope', 'x-forwarded-for': '203.0.113.5' }, viaEdge)).toBe('203.0.113.5');
  });

  it('matches an IPv4 peer on a dual-stack listener, where the socket says ::ffff:127.0.0.2, and trusts no neighbour', async () => {
    // The edge listens on `::`; every case above already came from ::ffff:127.0.0.2. Its neighbour 127.0.0.1 is no proxy.
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '203.0.113.5' }, viaEdge)).toBe('203.0.113.5');
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '203.0.113.5' }, { localAddress: UNTRUSTED })).toBe('127.0.0.1');
  });
});

describe('over IPv6 loopback', () => {
  it('ignores X-Forwarded-For from an untrusted ::1, even where IPv4 loopback is trusted', async () => {
    expect(await clientIpSeenBy(edge, { 'x-forwarded-for': '2001:db8::5' }, { host: '::1' })).toBe('::1');
  });

  it('honors X-Forwarded-For from a trusted ::1, bracketed and with a port', async () => {
    expect(await clientIpSeenBy(v6Edge, { 'x-forwarded-for': '[2001:DB8::5]:443' }, { host: '::1' })).toBe('2001:db8::5');
    expect(await clientIpSeenBy(v6Edge, { 'x-forwarded-for': '203.0.113.5' }, { host: '::1' })).toBe('203.0.113.5');
  });
});
