// Validates a raw config object and compiles it into the frozen snapshot the data plane reads.
import { configSchema } from './schema.ts';
import { ConfigError, formatPath, type ConfigProblem } from './errors.ts';
import { buildConfig } from './build.ts';
import type { MeridianConfig } from './types.ts';

/** Environment variables that override the file, so one image and one file serve every AZ. */
export const ENV_OVERRIDES = {
  MERIDIAN_REGION: 'self.region',
  MERIDIAN_ZONE: 'self.zone',
  MERIDIAN_ADMIN_TOKEN: 'admin.token',
} as const;

export function compileConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, source?: string): MeridianConfig {
  const shape = rootShapeProblem(raw);
  if (shape !== null) throw new ConfigError([{ path: '', message: shape }], source);
  const withEnv = applyEnv(raw, env);
  const parsed = configSchema.safeParse(withEnv);
  if (!parsed.success) {
    const problems: ConfigProblem[] = [];
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.push({ path: formatPath([...issue.path, key]), message: 'unknown key' });
      } else {
        problems.push({ path: formatPath(issue.path), message: issue.message.replace(/^Invalid input: /, '') });
      }
    }
    throw new ConfigError(listenPaths(problems, withEnv), source);
  }
  try {
    return buildConfig(parsed.data, source);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(listenPaths(err.problems, withEnv), source);
    throw err;
  }
}

/**
 * `listen` written as one object is read as a list of one: its problems are named as written (`listen.port`), not
 * as `listen[0].port`.
 */
function listenPaths(problems: readonly ConfigProblem[], raw: unknown): ConfigProblem[] {
  const listen = (raw as { listen?: unknown }).listen;
  if (listen === null || typeof listen !== 'object' || Array.isArray(listen)) return [...problems];
  return problems.map((p) => (p.path.startsWith('listen[0]') ? { ...p, path: `listen${p.path.slice('listen[0]'.length)}` } : p));
}

/** The config as a whole must be a mapping of sections; YAML reads an empty file (or only comments) as null. */
function rootShapeProblem(raw: unknown): string | null {
  if (raw === null || raw === undefined) return 'the config file is empty';
  if (Array.isArray(raw)) return 'must be a mapping of sections, got a list';
  if (typeof raw !== 'object') return `must be a mapping of sections, got a ${typeof raw}`;
  return null;
}

function applyEnv(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  let out = raw as Record<string, unknown>;
  for (const [variable, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    const [section, key] = path.split('.');
    const current = out[section];
    const base = current !== null && typeof current === 'object' && !Array.isArray(current) ? current : {};
    out = { ...out, [section]: { ...base, [key]: value } };
  }
  return out;
}

