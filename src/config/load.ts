// Reads a YAML or JSON config file and compiles it; every failure is a ConfigError.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { compileConfig } from './compile.ts';
import { ConfigError } from './errors.ts';
import type { MeridianConfig } from './types.ts';

export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<MeridianConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot read ${path}: ${(err as Error).message}` }]);
  }
  let raw: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both formats.
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new ConfigError([{ path: '', message: `${path} is not valid YAML/JSON: ${(err as Error).message}` }]);
  }
  return compileConfig(raw, env, path);
}
