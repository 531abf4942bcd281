// The config fields a running instance cannot change, and which of them a newer config changes: a reload names
// these instead of reporting them applied.
import type { MeridianConfig } from './types.ts';

/**
 * Read once, when the listeners are bound (and node fixes `maxHeaderSize` at server creation), or, for `workers`,
 * when the data-plane threads are started.
 */
const RESTART_ONLY: readonly (readonly [string, (config: MeridianConfig) => unknown])[] = [
  ['workers', (c) => c.workers],
  ['listen.host', (c) => c.listen.host],
  ['listen.port', (c) => c.listen.port],
  ['listen.maxHeaderBytes', (c) => c.listen.maxHeaderBytes],
  ['admin.host', (c) => c.admin.host],
  ['admin.port', (c) => c.admin.port],
  ['probe.host', (c) => c.probe?.host],
  ['probe.port', (c) => c.probe?.port],
];

export const RESTART_ONLY_FIELDS: readonly string[] = RESTART_ONLY.map(([field]) => field);

/**
 * The restart-only fields whose value in `loaded` differs from the one the process `started` with. Compared with
 * the start and not the previous reload, so a pending change stays listed until the restart (or until reverted).
 */
export function restartRequired(started: MeridianConfig, loaded: MeridianConfig): readonly string[] {
  return Object.freeze(RESTART_ONLY.filter(([, read]) => read(started) !== read(loaded)).map(([field]) => field));
}
