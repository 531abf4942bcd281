// The config fields a running instance cannot change, and which of them a newer config changes: a reload names
// these instead of reporting them applied.
import type { MeridianConfig } from './types.ts';

/**
 * Read once, when the listeners are bound (and node fixes `maxHeaderSize` at server creation), or, for `workers`,
 * when the data-plane threads are started.
 */
const RESTART_ONLY: readonly (readonly [string, (config: MeridianConfig) => unknown])[] = [
  ['workers', (c) => c.workers],
  // Every listener setting (compared field by field below): sockets, node servers and PROXY peers are fixed when bound.
  ['listen', (c) => JSON.stringify(c.input.listen)],
  ['timeouts.handshake', (c) => c.timeouts.handshake],
  ['tls.ticketKeyRotation', (c) => c.tls.ticketKeyRotation],
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
  const fields = RESTART_ONLY.filter(([, read]) => read(started) !== read(loaded)).map(([field]) => field);
  const at = fields.indexOf('listen');
  if (at !== -1) fields.splice(at, 1, ...listenerFields(started.input.listen, loaded.input.listen));
  return Object.freeze(fields);
}

/** Which listener fields changed: `listen.port` for the one listener of older configs, `listen[1].port` in a list. */
function listenerFields(started: readonly object[], loaded: readonly object[]): string[] {
  if (started.length !== loaded.length) return ['listen'];
  const out: string[] = [];
  started.forEach((before, i) => {
    const after = loaded[i] as Record<string, unknown>;
    const old = before as Record<string, unknown>;
    for (const key of new Set([...Object.keys(old), ...Object.keys(after)])) {
      if (JSON.stringify(old[key]) !== JSON.stringify(after[key])) out.push(started.length === 1 ? `listen.${key}` : `listen[${i}].${key}`);
    }
  });
  return out;
}
