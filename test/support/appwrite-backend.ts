// An Appwrite-shaped storage backend for tests that drive the real node-appwrite SDK through Meridian: four regions
// of two zones each, every zone a real node:http server on loopback. The zones of a region share one in-memory
// storage (as Appwrite's zones share a region's volume or bucket), and regions share nothing, so a chunk that reaches
// the wrong region finds no upload there and gets Appwrite's own 404.
//
// What node-appwrite 27 sends for `Storage.createFile` of more than 5 MiB (src: node_modules/node-appwrite/dist/
// client.mjs, `chunkedUpload`): `POST /v1/storage/buckets/{bucketId}/files`, multipart/form-data with the fields
// `fileId` (the caller's id: `ID.unique()` makes one on the client) and `file`, `Content-Range: bytes 0-5242879/size`
// and no `x-appwrite-id`; it waits for that answer and takes its `$id`; then the remaining chunks, up to 8 at once,
// each with `x-appwrite-id: <$id>` and its own `Content-Range`. Every request carries `X-Appwrite-Project`. A file of
// at most 5 MiB goes in one request without `Content-Range`. Downloads are `GET …/files/{fileId}/download` (or
// `/view`), read as bytes unless the answer is JSON.
//
// Realtime as the web SDK (`appwrite` 28, `Realtime`) speaks it: a WebSocket to `/v1/realtime?project=ID`; the server
// first sends `{"type":"connected","data":{"channels":[],"user":null}}` (an upgrade without a project gets an
// `error` frame with code 1008, then a 1008 close); the client then sends `{"type":"subscribe","data":[{subscriptionId,
// channels,queries}]}`, which is acknowledged by a `response`; `ping` gets `pong`. An event is
// `{"type":"event","data":{events,channels,timestamp,payload,subscriptions}}`, sent to the sockets whose subscriptions
// list one of its channels. Events are region-bound like storage: an upload that completes in a region is announced
// (`buckets.{bucket}.files.{id}.create`, channels `files`, `buckets.{bucket}.files`, `buckets.{bucket}.files.{id}`)
// only to the realtime sockets of that region's zones, as an Appwrite whose regions share nothing would.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Storage } from 'node-appwrite';
import { WebSocketServer, type WebSocket } from 'ws';
import { compileConfig } from '../../src/config/compile.ts';
import { startMeridian, type Meridian, type StartOptions } from '../../src/main.ts';
import { BOOT_PROBE_ONLY, type Overrides } from './harness.ts';
import { writeMmdb, cityRecord } from './mmdb-writer.ts';
import { startBackend, type Backend } from './zones.ts';

/** Appwrite's chunk size (APP_STORAGE_CHUNK_SIZE), which the SDKs use too: chunk n starts at n × 5 MiB. */
export const CHUNK_SIZE = 5 * 1024 * 1024;
/** What the backend reports as its Appwrite version, in `/v1/health/version` and in error bodies. */
export const APPWRITE_VERSION = '1.7.4';

export const REGIONS = {
  'us-west': [45.52, -122.68],
  'us-east': [39.04, -77.49],
  'eu-north': [59.33, 18.07],
  'eu-south': [45.46, 9.19],
} as const satisfies Record<string, readonly [number, number]>;
export type RegionName = keyof typeof REGIONS;
export const REGION_NAMES = Object.keys(REGIONS) as RegionName[];
export const ZONES = ['az-1', 'az-3'] as const;
export type ZoneName = (typeof ZONES)[number];

/** One upload request a zone answered (or lost while its body streamed), in the order their bodies completed. */
export interface ChunkRecord {
  readonly region: RegionName;
  readonly zone: ZoneName;
  readonly project: string;
  readonly bucketId: string;
  /** `x-appwrite-id`, else the form's `fileId`; empty when the body never arrived whole. */
  readonly fileId: string;
  /** start ÷ 5 MiB from `Content-Range` (0 for a one-request upload); -1 when there was no readable range. */
  readonly chunk: number;
  readonly contentRange: string | undefined;
  /** Body bytes received (the whole multipart body, not just the file part). */
  readonly bytes: number;
  /** The status answered: 201 when the chunk was stored; 0 when the request was cut before its body ended. */
  readonly status: number;
  /** Appwrite's error type when the status is an error. */
  readonly type: string | undefined;
}

/** One download or view a zone answered. */
export interface DownloadRecord {
  readonly region: RegionName;
  readonly zone: ZoneName;
  readonly project: string;
  readonly bucketId: string;
  readonly fileId: string;
  readonly range: string | undefined;
  readonly status: number;
}

/** An upload as a region's storage holds it: complete once every chunk has arrived. */
export class StoredFile {
  readonly project: string;
  readonly bucketId: string;
  readonly fileId: string;
  readonly name: string;
  readonly mimeType: string;
  readonly size: number;
  readonly chunksTotal: number;
  /** Chunk index → its bytes. Writing a chunk twice replaces it: Appwrite's chunk writes are idempotent. */
  readonly chunks = new Map<number, Buffer>();
  readonly createdAt = new Date().toISOString();
  updatedAt = this.createdAt;

  constructor(init: { project: string; bucketId: string; fileId: string; name: string; mimeType: string; size: number; chunksTotal: number }) {
    this.project = init.project;
    this.bucketId = init.bucketId;
    this.fileId = init.fileId;
    this.name = init.name;
    this.mimeType = init.mimeType;
    this.size = init.size;
    this.chunksTotal = init.chunksTotal;
  }

  get chunksUploaded(): number {
    return this.chunks.size;
  }

  get complete(): boolean {
    return this.chunks.size === this.chunksTotal;
  }

  /** The assembled file; throws until every chunk has arrived. */
  bytes(): Buffer {
    if (!this.complete) throw new Error(`upload ${this.fileId} has ${this.chunksUploaded} of ${this.chunksTotal} chunks`);
    return Buffer.concat([...this.chunks.keys()].sort((a, b) => a - b).map((n) => this.chunks.get(n)!));
  }

  /** Appwrite's File model; `$id` first, as Appwrite writes it (Meridian may read the id from the start). */
  json(): Record<string, unknown> {
    return {
      $id: this.fileId,
      bucketId: this.bucketId,
      $createdAt: this.createdAt,
      $updatedAt: this.updatedAt,
      $permissions: [],
      name: this.name,
      signature: this.complete ? createHash('md5').update(this.bytes()).digest('hex') : '',
      mimeType: this.mimeType,
      sizeOriginal: this.size,
      chunksTotal: this.chunksTotal,
      chunksUploaded: this.chunksUploaded,
    };
  }
}

/** A region's storage, shared by its zones, and what its zones served. */
export class RegionStorage {
  readonly name: RegionName;
  /** `project/bucketId/fileId` → upload. */
  readonly files = new Map<string, StoredFile>();
  readonly chunks: ChunkRecord[] = [];
  readonly downloads: DownloadRecord[] = [];
  /** Realtime sockets its zones accepted, open or closed, in order. */
  readonly realtime: RealtimeConnection[] = [];

  constructor(name: RegionName) {
    this.name = name;
  }

  file(project: string, bucketId: string, fileId: string): StoredFile | undefined {
    return this.files.get(fileKey(project, bucketId, fileId));
  }
}

const fileKey = (project: string, bucketId: string, fileId: string): string => `${project}/${bucketId}/${fileId}`;

/** One realtime socket a zone accepted. */
export interface RealtimeConnection {
  readonly region: RegionName;
  readonly zone: ZoneName;
  /** `?project=` of the upgrade. */
  readonly project: string;
  /** subscriptionId → channels, as the client's `subscribe` messages set them. */
  readonly subscriptions: Map<string, readonly string[]>;
  /** Events sent on this socket, in order. */
  readonly events: { readonly events: readonly string[]; readonly channels: readonly string[]; readonly subscriptions: readonly string[] }[];
  readonly socket: WebSocket;
}

/** What a zone knows of an upload request once its head has arrived, before its body is read. */
export interface ChunkHead {
  readonly region: RegionName;
  readonly zone: ZoneName;
  readonly project: string;
  readonly bucketId: string;
  /** `x-appwrite-id`, absent on a first chunk. */
  readonly uploadId: string | undefined;
  readonly contentRange: string | undefined;
}

export interface AppwriteBackend {
  readonly regions: Record<RegionName, RegionStorage>;
  /** Zone servers by `region/zone` (zones.ts backends: `kill()`, `restart()` on the same port, `requests`, `probes`). */
  readonly zones: Record<string, Backend>;
  zone(region: RegionName, zone: ZoneName): Backend;
  /** Crash one zone: stop listening and cut its connections, a chunk streaming into it and realtime sockets included. */
  kill(region: RegionName, zone: ZoneName): Promise<void>;
  /** Listen again on the same port. */
  restart(region: RegionName, zone: ZoneName): Promise<void>;
  /**
   * Called (and awaited) when an upload request's head reaches a zone; the zone answers only after it returns and the
   * body has ended. The body is already being collected: a test can kill the zone while the chunk streams (e.g. on
   * the request's first `data`), or `req.pause()` to hold the chunk and `req.resume()` to let it go on.
   * Set it to undefined to stop.
   */
  onChunkHead: ((head: ChunkHead, req: IncomingMessage) => void | Promise<void>) | undefined;
  /** Every upload request for this id (of `project` only, if given), from every region, in the order they completed. */
  chunksOf(fileId: string, project?: string): ChunkRecord[];
  /** The regions whose zones saw any upload request for this id (of `project` only, if given), whatever they answered. */
  regionsOf(fileId: string, project?: string): RegionName[];
  /** Meridian's `regions` section for these zones: each zone one endpoint. */
  regionsConfig(): Record<string, unknown>;
  close(): Promise<void>;
}

/** Starts the eight zone servers (4 regions × az-1, az-3) on 127.0.0.1, port 0. */
export async function startAppwriteBackend(): Promise<AppwriteBackend> {
  const regions = Object.fromEntries(REGION_NAMES.map((r) => [r, new RegionStorage(r)])) as Record<RegionName, RegionStorage>;
  const zones: Record<string, Backend> = {};
  const backend: AppwriteBackend = {
    regions,
    zones,
    zone: (region, zone) => zones[`${region}/${zone}`],
    kill: async (region, zone) => {
      closeRealtime(regions[region], zone);
      await zones[`${region}/${zone}`].kill();
    },
    restart: (region, zone) => zones[`${region}/${zone}`].restart(),
    onChunkHead: undefined,
    chunksOf: (fileId, project) => REGION_NAMES.flatMap((r) => regions[r].chunks.filter((c) => c.fileId === fileId && (project === undefined || c.project === project))),
    regionsOf: (fileId, project) => REGION_NAMES.filter((r) => regions[r].chunks.some((c) => c.fileId === fileId && (project === undefined || c.project === project))),
    regionsConfig: () =>
      Object.fromEntries(
        REGION_NAMES.map((region) => [
          region,
          { location: REGIONS[region], zones: Object.fromEntries(ZONES.map((zone) => [zone, { endpoints: [zones[`${region}/${zone}`].origin] }])) },
        ]),
      ),
    close: async () => {
      for (const region of REGION_NAMES) for (const zone of ZONES) closeRealtime(regions[region], zone);
      await Promise.all(Object.values(zones).map((z) => z.close()));
    },
  };
  await Promise.all(
    REGION_NAMES.flatMap((region) =>
      ZONES.map(async (zone) => {
        // zones.ts answers Meridian's health checks (GET /v1/health/version with its user-agent) and counts them apart.
        const server = await startBackend(`${region}/${zone}`);
        server.handler = (req, res) => {
          serve(backend, regions[region], zone, req, res).catch((err: unknown) => {
            if (!res.headersSent) appwriteError(res, 500, 'general_unknown', String(err));
            else res.destroy();
          });
        };
        routeRealtime(server.server, regions[region], zone);
        zones[server.name] = server;
      }),
    ),
  );
  return backend;
}

/**
 * Takes `/v1/realtime` upgrades on a zone's server; any other upgrade goes on to zones.ts's own handlers (its
 * WebSocket server that greets with the zone's name, and its request count). Realtime upgrades are not counted in
 * the zone's `requests`: `RegionStorage.realtime` records them.
 */
function routeRealtime(server: Server, storage: RegionStorage, zone: ZoneName): void {
  const wss = new WebSocketServer({ noServer: true });
  const others = server.listeners('upgrade') as ((...args: unknown[]) => void)[];
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://appwrite.test');
    if (url.pathname !== '/v1/realtime') {
      for (const listener of others) listener.call(server, req, socket, head);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => acceptRealtime(storage, zone, url.searchParams.get('project') ?? '', ws));
  });
}

function acceptRealtime(storage: RegionStorage, zone: ZoneName, project: string, socket: WebSocket): void {
  socket.on('error', () => {});
  if (project === '') {
    // Appwrite's answer to an upgrade without a project: an error frame, then a policy-violation close.
    socket.send(JSON.stringify({ type: 'error', data: { code: 1008, message: 'Missing or unknown project ID' } }));
    socket.close(1008, 'Missing or unknown project ID');
    return;
  }
  const connection: RealtimeConnection = { region: storage.name, zone, project, subscriptions: new Map(), events: [], socket };
  storage.realtime.push(connection);
  socket.on('message', (data) => {
    let message: { type?: unknown; data?: unknown };
    try {
      message = JSON.parse(String(data)) as typeof message;
    } catch {
      return;
    }
    if (message.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong' }));
    } else if (message.type === 'subscribe' && Array.isArray(message.data)) {
      const rows = message.data as { subscriptionId?: unknown; channels?: unknown }[];
      for (const row of rows) {
        if (typeof row.subscriptionId === 'string' && Array.isArray(row.channels)) connection.subscriptions.set(row.subscriptionId, row.channels.map(String));
      }
      socket.send(JSON.stringify({ type: 'response', data: { to: 'subscribe', success: true, subscriptions: rows.map((r) => r.subscriptionId) } }));
    } else if (message.type === 'unsubscribe' && Array.isArray(message.data)) {
      for (const row of message.data as { subscriptionId?: unknown }[]) connection.subscriptions.delete(String(row.subscriptionId));
    }
  });
  socket.send(JSON.stringify({ type: 'connected', data: { channels: [], user: null } }));
}

/** Sends an event to the region's open realtime sockets of `project` whose subscriptions list one of its channels. */
function publish(storage: RegionStorage, project: string, events: readonly string[], channels: readonly string[], payload: unknown): void {
  for (const connection of storage.realtime) {
    if (connection.project !== project || connection.socket.readyState !== connection.socket.OPEN) continue;
    const subscriptions = [...connection.subscriptions].filter(([, wanted]) => wanted.some((c) => channels.includes(c))).map(([id]) => id);
    if (subscriptions.length === 0) continue;
    connection.events.push({ events, channels, subscriptions });
    connection.socket.send(JSON.stringify({ type: 'event', data: { events, channels, timestamp: new Date().toISOString(), payload, subscriptions } }));
  }
}

/** Cuts a zone's realtime sockets, as its crash would. */
function closeRealtime(storage: RegionStorage, zone: ZoneName): void {
  for (const connection of storage.realtime) if (connection.zone === zone) connection.socket.terminate();
}

async function serve(backend: AppwriteBackend, storage: RegionStorage, zone: ZoneName, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://appwrite.test');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/v1/health/version') {
    req.resume();
    sendJson(res, 200, { version: APPWRITE_VERSION });
    return;
  }
  const header = req.headers['x-appwrite-project'];
  const project = typeof header === 'string' && header !== '' ? header : (url.searchParams.get('project') ?? '');
  const files = /^\/v1\/storage\/buckets\/([^/]+)\/files$/.exec(path);
  if (files && req.method === 'POST') {
    await upload(backend, storage, zone, project, decodeURIComponent(files[1]), req, res);
    return;
  }
  const file = /^\/v1\/storage\/buckets\/([^/]+)\/files\/([^/]+)(\/download|\/view)?$/.exec(path);
  if (file && req.method === 'GET') {
    req.resume();
    if (project === '') return appwriteError(res, 401, 'general_unauthorized_scope', 'No project given.');
    const [bucketId, fileId] = [decodeURIComponent(file[1]), decodeURIComponent(file[2])];
    const stored = storage.file(project, bucketId, fileId);
    if (file[3] === undefined) {
      if (stored === undefined) return notFound(res);
      return sendJson(res, 200, stored.json());
    }
    download(storage, zone, project, bucketId, fileId, stored, file[3] === '/view', req, res);
    return;
  }
  req.resume();
  appwriteError(res, 404, 'general_route_not_found', 'The requested route was not found. Please refer to the API docs and try again.');
}

/**
 * `Storage.createFile`: one request for a small file, else one per chunk. The first chunk creates the upload under
 * the form's `fileId` (`unique()` asks the server for one); a later chunk names its upload in `x-appwrite-id` and
 * gets Appwrite's 404 where the region does not know it. The request is answered once its whole body has arrived.
 */
async function upload(
  backend: AppwriteBackend,
  storage: RegionStorage,
  zone: ZoneName,
  project: string,
  bucketId: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const idHeader = req.headers['x-appwrite-id'];
  const uploadId = typeof idHeader === 'string' && idHeader !== '' ? idHeader : undefined;
  const contentRange = req.headers['content-range'];
  // The body is collected from its first byte, so nothing a hook does with the request can lose part of it.
  const reading = readAll(req);
  reading.catch(() => {});
  await backend.onChunkHead?.({ region: storage.name, zone, project, bucketId, uploadId, contentRange }, req);
  const record = (fields: Partial<ChunkRecord> & { status: number }): void => {
    storage.chunks.push({ region: storage.name, zone, project, bucketId, fileId: uploadId ?? '', chunk: -1, contentRange, bytes: 0, type: undefined, ...fields });
  };
  let body: Buffer;
  try {
    body = await reading;
  } catch (err) {
    record({ status: 0, bytes: (err as { received?: number }).received ?? 0 });
    return;
  }
  const fail = (status: number, type: string, message: string, fields: Partial<ChunkRecord> = {}): void => {
    record({ status, type, bytes: body.length, ...fields });
    appwriteError(res, status, type, message);
  };
  if (project === '') return fail(401, 'general_unauthorized_scope', 'No project given.');

  const form = await new Response(new Uint8Array(body), { headers: { 'content-type': req.headers['content-type'] ?? '' } }).formData().catch(() => undefined);
  const part = form?.get('file');
  const formId = form?.get('fileId');
  if (form === undefined || typeof part !== 'object' || part === null) return fail(400, 'storage_file_empty', 'Empty file passed to the endpoint.');
  const bytes = Buffer.from(await part.arrayBuffer());
  const mimeType = part.type === '' ? 'application/octet-stream' : part.type;
  const requested = typeof formId === 'string' && formId !== '' ? formId : 'unique()';
  const fileId = uploadId ?? (requested === 'unique()' ? uniqueId() : requested);

  let chunk = 0;
  let size = bytes.length;
  if (contentRange !== undefined) {
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange);
    const [start, end, total] = range ? [Number(range[1]), Number(range[2]), Number(range[3])] : [NaN, NaN, NaN];
    if (!range || end < start || end >= total || end - start + 1 !== bytes.length) {
      return fail(416, 'storage_invalid_content_range', 'The content range is invalid.', { fileId });
    }
    chunk = Math.floor(start / CHUNK_SIZE);
    size = total;
  }
  const chunksTotal = contentRange === undefined ? 1 : Math.ceil(size / CHUNK_SIZE);
  const key = fileKey(project, bucketId, fileId);
  let stored = storage.files.get(key);
  if (stored?.complete) return fail(409, 'storage_file_already_exists', 'A storage file with the requested ID already exists.', { fileId, chunk });
  if (stored === undefined) {
    // Only an upload's first chunk creates it: a later chunk here means the first went to another region.
    if (chunk > 0) return fail(404, 'storage_file_not_found', 'The requested file could not be found.', { fileId, chunk });
    stored = new StoredFile({ project, bucketId, fileId, name: part.name, mimeType, size, chunksTotal });
    storage.files.set(key, stored);
  }
  const completes = !stored.complete && !stored.chunks.has(chunk) && stored.chunks.size + 1 === stored.chunksTotal;
  stored.chunks.set(chunk, bytes);
  stored.updatedAt = new Date().toISOString();
  record({ status: 201, fileId, chunk, bytes: body.length });
  sendJson(res, 201, stored.json());
  if (completes) {
    const events = ['create', ''].flatMap((action) =>
      [`buckets.${bucketId}.files.${fileId}`, `buckets.${bucketId}.files.*`, `buckets.*.files.${fileId}`, 'buckets.*.files.*'].map((e) => (action ? `${e}.${action}` : e)),
    );
    publish(storage, project, events, ['files', `buckets.${bucketId}.files`, `buckets.${bucketId}.files.${fileId}`], stored.json());
  }
}

/** `…/download` and `…/view`: the whole file (200) or one byte range (206), as Appwrite serves them. */
function download(
  storage: RegionStorage,
  zone: ZoneName,
  project: string,
  bucketId: string,
  fileId: string,
  stored: StoredFile | undefined,
  inline: boolean,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const range = req.headers.range;
  const record = (status: number): void => {
    storage.downloads.push({ region: storage.name, zone, project, bucketId, fileId, range, status });
  };
  if (stored === undefined || !stored.complete) {
    record(404);
    return notFound(res);
  }
  const bytes = stored.bytes();
  const headers = {
    'content-type': stored.mimeType,
    'content-disposition': `${inline ? 'inline' : 'attachment'}; filename="${stored.name}"`,
    'accept-ranges': 'bytes',
  };
  if (range === undefined) {
    record(200);
    res.writeHead(200, { ...headers, 'content-length': bytes.length }).end(bytes);
    return;
  }
  const match = /^bytes=(\d*)-(\d*)$/.exec(range);
  let start = NaN;
  let end = NaN;
  if (match && match[1] !== '') {
    start = Number(match[1]);
    end = match[2] === '' ? bytes.length - 1 : Math.min(Number(match[2]), bytes.length - 1);
  } else if (match && match[2] !== '') {
    start = Math.max(bytes.length - Number(match[2]), 0);
    end = bytes.length - 1;
  }
  if (!(start <= end) || start >= bytes.length) {
    record(416);
    res.setHeader('content-range', `bytes */${bytes.length}`);
    return appwriteError(res, 416, 'storage_invalid_range', 'The requested range is not satisfiable.');
  }
  record(206);
  res
    .writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${bytes.length}`, 'content-length': end - start + 1 })
    .end(bytes.subarray(start, end + 1));
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let received = 0;
    req.on('data', (part: Buffer) => {
      parts.push(part);
      received += part.length;
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    // A cut connection: `aborted` on the request, or `close` without `end`.
    const cut = (): void => reject(Object.assign(new Error('request body cut'), { received }));
    req.on('error', cut);
    req.on('close', () => {
      if (!req.complete) cut();
    });
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** Appwrite's error body: message, code, type, version. */
function appwriteError(res: ServerResponse, status: number, type: string, message: string): void {
  sendJson(res, status, { message, code: status, type, version: APPWRITE_VERSION });
}

const notFound = (res: ServerResponse): void => appwriteError(res, 404, 'storage_file_not_found', 'The requested file could not be found.');

/** Appwrite's ID::unique(): a hex timestamp and random padding. */
function uniqueId(): string {
  const now = Date.now();
  const hex = Math.floor(now / 1000).toString(16) + (now % 1000).toString(16).padStart(5, '0');
  return hex + createHash('md5').update(String(Math.random())).digest('hex').slice(0, 7);
}

/** Client addresses the geo fixture places, and the region nearest to each. */
export const PLACES = {
  stockholm: { ip: '89.160.20.112', region: 'eu-north' },
  milan: { ip: '93.40.7.9', region: 'eu-south' },
  seattle: { ip: '216.160.83.56', region: 'us-west' },
  newYork: { ip: '66.108.1.2', region: 'us-east' },
} as const satisfies Record<string, { ip: string; region: RegionName }>;

const city = cityRecord;

/** A GeoIP2-City .mmdb placing the addresses of PLACES, in a fresh temporary directory; `remove()` deletes it. */
export async function writeGeoFixture(): Promise<{ readonly path: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-appwrite-'));
  const path = join(dir, 'GeoIP2-City-Fixture.mmdb');
  const entries = [
    { network: '89.160.20.0/24', data: city('SE', 'EU', 59.33, 18.07) },
    { network: '93.40.0.0/16', data: city('IT', 'EU', 45.46, 9.19) },
    { network: '216.160.83.0/24', data: city('US', 'NA', 47.61, -122.33) },
    { network: '66.108.0.0/16', data: city('US', 'NA', 40.71, -74.01) },
  ];
  await writeFile(path, writeMmdb(entries, { databaseType: 'GeoIP2-City', ipVersion: 6 }));
  return { path, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface AppwriteFront {
  readonly meridian: Meridian;
  readonly port: number;
  readonly adminPort: number;
  /** The SDK's endpoint through this Meridian: `http://127.0.0.1:PORT/v1`. */
  readonly endpoint: string;
  shutdown(): Promise<void>;
}

export interface FrontOptions {
  /** This instance's AZ; us-east/az-1 unless given. */
  readonly self?: { region: RegionName; zone: ZoneName };
  /** A geo database (writeGeoFixture): clients are then placed by `X-Forwarded-For` from 127.0.0.0/8. */
  readonly geoDatabase?: string;
  /** Sections merged one level deep over the defaults, as in the harness (e.g. `{ routing: { projects } }`). */
  readonly overrides?: Overrides;
  /** 2 unless given. */
  readonly workers?: number | 'auto';
  readonly start?: StartOptions;
}

/**
 * A Meridian in front of the backend's zones, on 127.0.0.1 port 0 (start several for several instances). Health
 * checks run at boot only unless the overrides set `health`, so a zone a test kills stays a candidate and the test
 * sees the data plane's own handling.
 */
export async function startAppwriteFront(backend: AppwriteBackend, options: FrontOptions = {}): Promise<AppwriteFront> {
  const base: Overrides = {
    self: options.self ?? { region: 'us-east', zone: 'az-1' },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    regions: backend.regionsConfig(),
    health: BOOT_PROBE_ONLY,
    shutdown: { drainDelay: 0 },
    ...(options.geoDatabase === undefined ? {} : { geo: { databases: [options.geoDatabase], trustedProxies: ['127.0.0.0/8'] } }),
  };
  const raw: Record<string, unknown> = { ...base, workers: options.workers ?? 2 };
  for (const [section, values] of Object.entries(options.overrides ?? {})) raw[section] = { ...base[section], ...values };
  const meridian = await startMeridian(compileConfig(raw, {}), options.start);
  const port = meridian.proxyAddress.port;
  return { meridian, port, adminPort: meridian.adminAddress.port, endpoint: `http://127.0.0.1:${port}/v1`, shutdown: () => meridian.shutdown() };
}

/** node-appwrite's Client and Storage for a project through `endpoint`, placed at `ip` by `X-Forwarded-For` if given. */
export function appwriteStorage(endpoint: string, project: string, ip?: string): { readonly client: Client; readonly storage: Storage } {
  const client = new Client().setEndpoint(endpoint).setProject(project).setKey('test-api-key');
  if (ip !== undefined) client.addHeader('X-Forwarded-For', ip);
  return { client, storage: new Storage(client) };
}

/** Deterministic, position-dependent bytes: a chunk stored at the wrong offset or from another upload cannot compare equal. */
export function patternBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(Math.ceil(size / 4) * 4);
  let x = Math.imul(seed, 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, size);
}
