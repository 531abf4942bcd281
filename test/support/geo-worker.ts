// A worker thread that does with geo databases what a data-plane worker does: attaches the descriptors the main
// thread posts (swapping them in whole), and answers lookups and raw byte reads from the memory it received.
import { parentPort } from 'node:worker_threads';
import { attachGeoDatabase } from '../../src/geo/database.ts';
import type { GeoLocation, PublishedGeoDatabase } from '../../src/geo/database.ts';
import { GeoLocator } from '../../src/geo/locator.ts';

export type GeoWorkerRequest =
  | { readonly attach: readonly PublishedGeoDatabase[] }
  | { readonly locate: readonly string[] }
  /** The byte at `offset` of the first database's buffer, as this thread sees it. */
  | { readonly peek: number };

export type GeoWorkerReply =
  | { readonly attached: readonly { readonly shared: boolean; readonly byteLength: number }[] }
  | { readonly located: readonly (GeoLocation | null)[] }
  | { readonly byte: number };

let locator: GeoLocator | undefined;
let buffers: readonly SharedArrayBuffer[] = [];

parentPort!.on('message', (request: GeoWorkerRequest) => {
  parentPort!.postMessage(answer(request));
});

function answer(request: GeoWorkerRequest): GeoWorkerReply {
  if ('attach' in request) {
    const databases = request.attach.map(attachGeoDatabase);
    if (locator === undefined) locator = new GeoLocator(databases, { cacheSize: 100 });
    else locator.prepare(databases, 100)();
    buffers = request.attach.map((published) => published.buffer);
    return { attached: buffers.map((buffer) => ({ shared: buffer instanceof SharedArrayBuffer, byteLength: buffer.byteLength })) };
  }
  if ('locate' in request) return { located: request.locate.map((ip) => locator!.locate(ip)) };
  return { byte: new Uint8Array(buffers[0])[request.peek] };
}
