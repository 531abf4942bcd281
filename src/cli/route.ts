// `meridian route`: explains offline where a client IP would be sent, with every endpoint taken as healthy.
import { loadConfigFile } from '../config/load.ts';
import { ConfigError } from '../config/errors.ts';
import { normalizeIp } from '../geo/client-ip.ts';
import { DEFAULT_GEO_DATABASES, GeoLocator } from '../geo/locator.ts';
import { GeoDatabaseError } from '../geo/database.ts';
import { createGeoRouter } from '../routing/geo-router.ts';
import { explainRoute, formatExplanation } from '../routing/explain.ts';

export interface RouteOptions {
  readonly config: string;
  readonly ip: string;
  readonly json: boolean;
  readonly host?: string;
  readonly project?: string;
}

export async function runRoute(options: RouteOptions): Promise<number> {
  const ip = normalizeIp(options.ip);
  if (ip === null) {
    console.error(`meridian route: --ip ${JSON.stringify(options.ip)} is not an IP address`);
    return 2;
  }
  let config;
  try {
    config = await loadConfigFile(options.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return 1;
  }
  let locator: GeoLocator;
  try {
    locator = await GeoLocator.open(config.geo.databases ?? DEFAULT_GEO_DATABASES, { cacheSize: 1 });
  } catch (err) {
    // A missing or corrupt database is the operator's to fix: one line, like a config error.
    if (!(err instanceof GeoDatabaseError)) throw err;
    console.error(`meridian route: ${err.message}`);
    return 1;
  }
  const location = locator.locate(ip);
  const decision = createGeoRouter(config).route({ clientIp: ip, host: options.host, location, project: options.project, pinnedRegion: undefined });
  const explanation = explainRoute(ip, location, decision);
  if (options.json) {
    const { location: loc, home, candidates, reason, code, regions } = explanation;
    console.log(JSON.stringify({ ip, location: loc, home, candidates, reason, code, regions }));
  } else {
    console.log(formatExplanation(explanation));
  }
  return 0;
}
