// undici's Pool class on its own: its module, without the package's index (fetch, WebSocket, caches, mocks), which a
// data-plane thread never uses and which costs each thread about 6 MiB resident. The package has no exports map, so
// the file is reachable; its type is the one the index exports.
declare module 'undici/lib/dispatcher/pool.js' {
  import { Pool } from 'undici';
  export default Pool;
}
