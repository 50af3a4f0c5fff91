import { DEFAULT_ADDR } from './args.ts';
import { isGroup, type Command, type Entry, type Group } from './command.ts';

const GLOBAL_HELP = [
  'Global options (accepted anywhere on the line, by every command):',
  `  --addr URL      server address (env KEYHOLD_ADDR; default ${DEFAULT_ADDR}); https, or http to loopback only`,
  '  --token T       API token (env KEYHOLD_TOKEN; prefer the variable: arguments show in ps and history)',
  '  --tenant NAME   tenant to act in (env KEYHOLD_TENANT; root tokens default to "default")',
  '  --json          machine-readable output: the JSON the server returned',
  '  -h, --help      help for any group or command',
];

const FOOTER = [
  'Exit codes: 0 success; 1 an error from the server (printed as "error: CODE: message") or the',
  'network; 2 a usage error; 130 interrupted (Ctrl-C).',
];

function columns(rows: Array<[string, string]>): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
}

/** `keyhold help`: every command and group on one screen. */
export function mainHelp(entries: Entry[]): string {
  const rows: Array<[string, string]> = [];
  for (const entry of entries) {
    if (isGroup(entry)) for (const c of entry.commands) rows.push([`${entry.name} ${c.name}`, c.summary]);
    else rows.push([entry.name, entry.summary]);
  }
  return [
    'keyhold: command line for the Keyhold secrets service',
    '',
    'Usage: keyhold <command> [arguments] [options]',
    '',
    'Commands:',
    ...columns(rows),
    '',
    ...GLOBAL_HELP,
    '',
    ...FOOTER,
    "Details: 'keyhold <group> help' (e.g. 'keyhold secrets help') or 'keyhold <command> --help'.",
  ].join('\n');
}

/** `keyhold secrets help`: the full synopsis of each verb. */
export function groupHelp(group: Group): string {
  return [
    `keyhold ${group.name}: ${group.summary}`,
    '',
    'Commands:',
    ...group.commands.flatMap((c) => [`  keyhold ${c.usage}`, `      ${c.summary}`]),
    '',
    `Details: 'keyhold ${group.name} <command> --help'. Global options: 'keyhold help'.`,
  ].join('\n');
}

/** `keyhold secrets set --help`. */
export function commandHelp(command: Command): string {
  return [
    `Usage: keyhold ${command.usage}`,
    '',
    command.summary + '.',
    ...(command.help ? ['', ...command.help] : []),
    '',
    ...GLOBAL_HELP,
  ].join('\n');
}
