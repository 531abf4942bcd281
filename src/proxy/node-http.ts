// node:http's values for the data plane, read from the builtin itself rather than through an ES module import. To
// build a builtin's module namespace, node reads every export, and node:http's WebSocket, CloseEvent and MessageEvent
// are lazy getters that load node's bundled undici (its fetch, WebSocket and EventSource): about 6 MiB resident in
// every thread whose modules `import ... from 'node:http'`, for nothing a data-plane thread uses. Reading only the
// names needed leaves them unloaded. Types still come from `import type`, which costs nothing at run time.
const http = process.getBuiltinModule('node:http');

export const { createServer, STATUS_CODES } = http;
