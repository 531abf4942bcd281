// Shutdown for WebSocket tunnels (README: Operations, Shutdown): they keep serving through the drain and are sent 1001 Going Away one
// by one across it, so realtime clients reconnect to other instances spread over the window, not in the same second.
import type { Traffic } from './plane.ts';

/** How long a tunnel gets after its close frame before both sides are cut; at most a quarter of the window. */
export const GO_AWAY_GRACE_MS = 1_000;

/**
 * Tunnel i of the n open when this starts (1-based, in the order they opened) gets its close frame at i/n of the
 * window less the grace, so the last is cut when the window ends. Resolves once every tunnel has closed, or at the
 * end of the window, when whatever is still open (one upgraded after this started, say) is cut.
 */
export async function endTunnels(traffic: Traffic, windowMs: number): Promise<void> {
  if (traffic.tunnels.size === 0) return;
  const grace = Math.min(GO_AWAY_GRACE_MS, windowMs / 4);
  const spread = windowMs - grace;
  const order = [...traffic.tunnels];
  const startedAt = performance.now();
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const elapsed = performance.now() - startedAt;
    // One timer for all of them: each tick sends every close frame that is due, however many that is.
    const due = elapsed >= spread ? order.length : Math.floor((elapsed / spread) * order.length);
    while (next < due) order[next++].goAway(grace);
    if (next < order.length) timer = setTimeout(tick, ((next + 1) / order.length) * spread - elapsed);
    else for (const tunnel of traffic.tunnels) tunnel.goAway(grace);
  };
  tick();
  // Tunnels also close by themselves, before their turn: once none is left there is nothing to wait for.
  await traffic.whenNoTunnels(windowMs);
  clearTimeout(timer);
  for (const tunnel of traffic.tunnels) tunnel.destroy();
}
