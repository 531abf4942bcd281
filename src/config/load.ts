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
  const shape = rootShapeProblem(raw);
  if (shape !== null) throw new ConfigError([{ path: '', message: shape }], path);
  return compileConfig(raw, env, path);
}

/** The file as a whole must be a mapping of sections; YAML reads an empty file (or only comments) as null. */
function rootShapeProblem(raw: unknown): string | null {
  if (raw === null || raw === undefined) return 'the config file is empty';
  if (Array.isArray(raw)) return 'must be a mapping of sections, got a list';
  if (typeof raw !== 'object') return `must be a mapping of sections, got a ${typeof raw}`;
  return null;
}
