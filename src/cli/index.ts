#!/usr/bin/env node
// The `meridian` command: parses arguments and hands over to one of the subcommands.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { runStart } from './start.ts';
import { runCheck } from './check.ts';
import { runDemo } from './demo.ts';
import { runRoute } from './route.ts';

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, string | boolean | undefined>): Promise<number>;
}

const config = { type: 'string', short: 'c' } as const;

const COMMANDS: Record<string, Command> = {
  start: {
    summary: 'run the proxy with a config file',
    usage: 'meridian start --config FILE',
    options: { config },
    run: (v) => runStart(String(v.config ?? '')),
  },
  check: {
    summary: 'validate a config file and list every problem',
    usage: 'meridian check --config FILE',
    options: { config },
    run: (v) => runCheck(String(v.config ?? '')),
  },
  route: {
    summary: 'explain offline where a client IP would be routed',
    usage: 'meridian route --config FILE --ip IP [--json] [--host HOST] [--project ID]',
    options: { config, ip: { type: 'string' }, json: { type: 'boolean' }, host: { type: 'string' }, project: { type: 'string' } },
    run: (v) => {
      if (!v.ip) {
        console.error('meridian route: --ip IP is required');
        return Promise.resolve(2);
      }
      return runRoute({ config: String(v.config), ip: String(v.ip), json: v.json === true, host: v.host as string | undefined, project: v.project as string | undefined });
    },
  },
  demo: {
    summary: 'run four simulated Appwrite regions on loopback behind Meridian',
    usage: 'meridian demo',
    options: {},
    run: () => runDemo(),
  },
};

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`);
  return `usage: meridian <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nmeridian <command> --help shows a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    console.error(`meridian: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: rest, options: { ...command.options, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    console.error(`meridian ${name}: ${(err as Error).message}\nusage: ${command.usage}`);
    return 2;
  }
  if (values.help) {
    console.log(`usage: ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  if ('config' in command.options && !values.config) {
    console.error(`meridian ${name}: --config FILE is required\nusage: ${command.usage}`);
    return 2;
  }
  return command.run(values);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Long-running commands resolve only when they have shut down; short ones exit with their code.
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`meridian: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  },
);
