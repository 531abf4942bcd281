// Serves the admin app with @hono/node-server on the admin address.
import { createAdaptorServer, type HttpBindings } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Hono } from 'hono';

/** What an admin request's `c.env` holds: node's request and response, and the address the server is bound to. */
export interface AdminBindings extends HttpBindings {
  /** Read per request from the server itself, so it is the real port even when the config asked for port 0. */
  readonly listener: AddressInfo;
}

export function listenAdmin(app: Hono, host: string, port: number): Promise<{ server: Server; address: AddressInfo }> {
  const server: Server = createAdaptorServer({
    fetch: (request, env) => app.fetch(request, { ...(env as HttpBindings), listener: server.address() as AddressInfo } satisfies AdminBindings),
  }) as Server;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({ server, address: server.address() as AddressInfo });
    });
  });
}
