// `meridian check`: validate a config file; exit 0 when valid, 1 with every problem listed.
import { loadConfigFile } from '../config/load.ts';
import { ConfigError } from '../config/errors.ts';

export async function runCheck(path: string): Promise<number> {
  try {
    const config = await loadConfigFile(path);
    const { regions, endpoints } = config.topology;
    console.log(`${path}: ok (${regions.length} regions, ${endpoints.length} endpoints)`);
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return 1;
  }
}
