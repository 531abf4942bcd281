// Readiness for GeoDNS: can this AZ still serve locally? The answer `/readyz` gives.
import type { MeridianConfig } from '../config/types.ts';
import type { HealthSnapshot } from './state.ts';

export interface Readiness {
  readonly ok: boolean;
  readonly reason: string;
}

/**
 * `local-zone` and `local-region` let GeoDNS move new clients away as soon as the local capacity is gone
 * (Meridian keeps serving the stragglers from elsewhere); `any-region` keeps the instance in DNS while any
 * endpoint anywhere is up, for deployments whose Meridians are the only way in.
 */
export function readiness(config: MeridianConfig, health: HealthSnapshot, draining: boolean): Readiness {
  if (draining) return { ok: false, reason: 'draining: shutting down' };
  const { policy } = config.readiness;
  const { self, endpoints } = config.topology;
  const counted = endpoints.filter((e) => policy === 'any-region' || (e.region === self.region && (policy === 'local-region' || e.zone === self.zone)));
  const usable = counted.filter((e) => health.usable[e.index] !== false).length;
  const scope = policy === 'local-zone' ? `${self.region}/${self.zone}` : policy === 'local-region' ? self.region : 'any region';
  return usable > 0
    ? { ok: true, reason: `${usable} of ${counted.length} endpoints healthy in ${scope}` }
    : { ok: false, reason: `no healthy endpoint in ${scope} (policy ${policy})` };
}
