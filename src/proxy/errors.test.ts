// undici's own refusals of a request are the client's fault: the same request would be refused for any endpoint, so
// they must never be retried or count against an endpoint's health (both key on the kind's source).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { KINDS, ProxyError, translateUpstreamError } from './errors.ts';

let server: Server;
let pool: Pool;
beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
afterAll(async () => {
  await pool.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** What a real undici pool rejects the request with, translated. */
async function refusal(options: Parameters<Pool['request']>[0]): Promise<ProxyError> {
  const error = await pool.request(options).then(
    () => null,
    (err: unknown) => err,
  );
  expect(error, 'undici should refuse the request').not.toBeNull();
  return translateUpstreamError(error);
}

describe("undici's refusals of a request", () => {
  test.each([
    ['a target that is not a path', { path: 'x://y', method: 'GET' }, 'UND_ERR_INVALID_ARG'],
    ['an asterisk target', { path: '*', method: 'OPTIONS' }, 'UND_ERR_INVALID_ARG'],
    ['an Expect header', { path: '/', method: 'PUT', headers: { expect: '100-continue' }, body: 'x' }, 'UND_ERR_NOT_SUPPORTED'],
    ['a body shorter than its Content-Length', { path: '/', method: 'PUT', headers: { 'content-length': '10' }, body: 'short' }, 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'],
  ] as const)('%s is a 400 of the client, not an upstream failure', async (_name, options, code) => {
    const error = await refusal(options);
    expect((error.cause as { code?: string }).code).toBe(code);
    expect(error.kind).toBe(KINDS.badRequest);
    expect(error.kind.source).toBe('downstream');
    expect(error.status).toBe(400);
  });

  test('a refused connection stays an upstream failure', async () => {
    const dead = new Pool('http://127.0.0.1:1');
    try {
      const error = translateUpstreamError(await dead.request({ path: '/', method: 'GET' }).then(() => null, (err: unknown) => err));
      expect(error.kind).toBe(KINDS.connectFailed);
      expect(error.kind.source).toBe('upstream');
    } finally {
      await dead.destroy();
    }
  });
});
