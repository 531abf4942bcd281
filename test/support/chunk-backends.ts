// Upload-chunk backends for health-and-failover worlds (test/support/zones.ts): one that takes a whole chunk and
// answers Appwrite's File JSON with what it received, one whose connection dies part-way through a chunk.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Reads the whole chunk, then answers 201 with a File JSON naming the backend and the digest of what it received. */
export function acceptsChunk(name: string): Handler {
  return (req, res) => {
    const hash = createHash('sha256');
    req.on('data', (chunk: Buffer) => hash.update(chunk));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ $id: 'upload-1', served: name, sha256: hash.digest('hex') }));
    });
  };
}

/** Takes part of the chunk, then the connection dies under it: a zone going down mid-chunk. */
export function diesAfter(bytes: number): Handler {
  return (req) => {
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen >= bytes) req.socket.destroy();
    });
  };
}
