// The error a config file fails with: every problem, each prefixed with its field path.

export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], source?: string) {
    const lines = problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`);
    super(`invalid config${source ? ` ${source}` : ''}:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `['regions', 'us-west', 'zones', 'az-1', 'endpoints', 0]` → `regions.us-west.zones.az-1.endpoints[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}
