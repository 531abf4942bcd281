// Topology order: the local zone, then its sibling zones, then every other region in config order.
import type { Topology } from '../config/types.ts';
import type { RouteDecision, Router } from './types.ts';

/** Computed once per snapshot, so every request shares one frozen decision. */
export function createStaticRouter(topology: Topology): Router {
  const { region: selfRegion, zone: selfZone } = topology.self;
  const local = topology.regions.find((r) => r.name === selfRegion);
  const others = topology.regions.filter((r) => r !== local);
  const zones = local ? [...local.zones.filter((z) => z.name === selfZone), ...local.zones.filter((z) => z.name !== selfZone)] : [];
  const candidates = [...zones, ...others.flatMap((r) => r.zones)].flatMap((z) => z.endpoints);
  const decision: RouteDecision = Object.freeze({ candidates: Object.freeze(candidates), reason: 'topology order: local zone, sibling zones, other regions' });
  return { route: () => decision };
}
