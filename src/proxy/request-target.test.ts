import { describe, expect, test } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { settleTarget } from './request-target.ts';

const message = (method: string, url: string, host?: string): IncomingMessage =>
  ({ method, url, headers: host === undefined ? {} : { host } }) as unknown as IncomingMessage;

describe('settleTarget', () => {
  test.each([
    // [method, target, verdict, url after, host after]
    ['GET', '/v1/account', 'proxy', '/v1/account', 'given'],
    ['GET', '//double/slash', 'proxy', '//double/slash', 'given'],
    ['OPTIONS', '*', 'asterisk', '*', 'given'],
    ['GET', '*', 'invalid', '*', 'given'],
    ['GET', 'http://a.example/x?y', 'proxy', '/x?y', 'a.example'],
    ['GET', 'HTTPS://A.example:8443', 'proxy', '/', 'A.example:8443'],
    ['GET', 'http://a.example?q=1', 'proxy', '/?q=1', 'a.example'],
    ['GET', 'http://[2001:db8::1]:80/v1', 'proxy', '/v1', '[2001:db8::1]:80'],
    ['GET', 'http://10.0.0.1/v1', 'proxy', '/v1', '10.0.0.1'],
    ['GET', 'ftp://a.example/', 'invalid', 'ftp://a.example/', 'given'],
    ['GET', 'http://u@a.example/', 'invalid', 'http://u@a.example/', 'given'],
    ['GET', 'http:///x', 'invalid', 'http:///x', 'given'],
    ['GET', 'http://a.example/x#f', 'invalid', 'http://a.example/x#f', 'given'],
    ['GET', 'http://a.example:99999999/', 'invalid', 'http://a.example:99999999/', 'given'],
    ['GET', 'a.example:443', 'invalid', 'a.example:443', 'given'],
    ['GET', '', 'invalid', '', 'given'],
  ])('%s %s → %s', (method, target, verdict, url, host) => {
    const req = message(method, target, 'given');
    expect(settleTarget(req)).toBe(verdict);
    expect(req.url).toBe(url);
    expect(req.headers.host).toBe(host);
  });
});
