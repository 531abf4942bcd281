// What a data-plane worker thread loads is paid for once per thread. node's bundled undici (its fetch, WebSocket and
// EventSource, about 6 MiB before collection) is not used on the request path, but comes along with any ES import of
// node:http: building that builtin's namespace reads its lazy WebSocket getters. A real worker thread imports what
// src/proxy/worker.ts imports, and reports the builtins it loaded.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const WORKER_IMPORTS = [
  '../src/proxy/server.ts',
  '../src/listen/listeners.ts',
  '../src/observe/listener-stats.ts',
  '../src/config/build.ts',
  '../src/proxy/worker-plane.ts',
  '../src/observe/access-log.ts',
  '../src/control/release-memory.ts',
].map((path) => fileURLToPath(new URL(path, import.meta.url)));

test("a data-plane thread's modules do not load node's bundled undici", { timeout: 30_000 }, async () => {
  const code = `(async () => {
    for (const path of ${JSON.stringify(WORKER_IMPORTS)}) await import(path);
    require('node:worker_threads').parentPort.postMessage(process.moduleLoadList);
  })()`;
  const worker = new Worker(code, { eval: true });
  try {
    const loaded = await new Promise<string[]>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    // The thread did load its modules (node:http2 is among them), so an empty list cannot pass by accident.
    expect(loaded).toContain('NativeModule http2');
    expect(loaded.filter((name) => name.includes('deps/undici'))).toEqual([]);
  } finally {
    await worker.terminate();
  }
});
