// The pieces of a config reload that touch files or text: opening a new geo database list, and the log line.
import type { MeridianConfig } from '../config/types.ts';
import type { ConfigProblem } from '../config/errors.ts';
import { DEFAULT_GEO_DATABASES, type GeoLocator } from '../geo/locator.ts';
import { openGeoDatabase, type GeoDatabase } from '../geo/database.ts';

/**
 * A reload applies whole or not at all. `restartRequired` names the fields whose new value waits for a restart
 * (compared with the config the process started with), everything else is serving.
 */
export type ReloadResult =
  | { readonly ok: true; readonly version: number; readonly restartRequired: readonly string[] }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/**
 * Opens the files of a new `geo.databases` list that the locator does not have open (the watcher keeps those
 * current). Returns every database of the new list in order, or a problem per file that is missing or fails its checks.
 */
export async function openDatabasesFor(
  locator: GeoLocator,
  next: MeridianConfig,
): Promise<{ readonly databases: readonly GeoDatabase[] } | { readonly problems: readonly ConfigProblem[] }> {
  const open = new Map(locator.open.map((db) => [db.info.path, db]));
  const paths = next.geo.databases ?? DEFAULT_GEO_DATABASES;
  const fresh = [...new Set(paths)].filter((path) => !open.has(path));
  const results = await Promise.allSettled(fresh.map((path) => openGeoDatabase(path)));
  const problems = results.flatMap((result, i): ConfigProblem[] => {
    if (result.status === 'fulfilled') return [];
    const field = next.geo.databases === null ? 'geo.databases' : `geo.databases[${paths.indexOf(fresh[i])}]`;
    return [{ path: field, message: (result.reason as Error)?.message ?? String(result.reason) }];
  });
  if (problems.length > 0) return { problems };
  results.forEach((result, i) => open.set(fresh[i], (result as PromiseFulfilledResult<GeoDatabase>).value));
  return { databases: paths.map((path) => open.get(path)!) };
}

/** The log line of a reload, for SIGHUP and POST /reload alike. */
export function describeReload(result: ReloadResult): string {
  if (!result.ok) {
    return `meridian: config reload rejected, the old config keeps serving:\n${result.problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`).join('\n')}`;
  }
  const pending = result.restartRequired.length === 0 ? '' : `; these fields change only after a restart: ${result.restartRequired.join(', ')}`;
  return `meridian: config reloaded (version ${result.version})${pending}`;
}
