import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { GLOBAL_OPTIONS, globalSettings, UsageError } from './args.ts';
import { ApiError, createApiClient, UnreachableError } from './client.ts';
import { isGroup, type CliDeps, type Command, type Entry, type Flags } from './command.ts';
import { commandHelp, groupHelp, mainHelp } from './help.ts';
import { InterruptedError } from './input.ts';
import { createOutput } from './output.ts';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

type Target =
  | { kind: 'help'; text: string; exit: number }
  | { kind: 'command'; command: Command; words: number };

/** Every option any command knows, to find the command words before its own strict parse. */
function allOptions(entries: Entry[]): ParseArgsOptionsConfig {
  const commands = entries.flatMap((e) => (isGroup(e) ? e.commands : [e]));
  return Object.assign({}, GLOBAL_OPTIONS, ...commands.map((c) => c.options)) as ParseArgsOptionsConfig;
}

/** Finds the command (or the help asked for) from the positional words: "status", "secrets set", "help secrets". */
function resolve(entries: Entry[], argv: string[]): Target {
  const known = allOptions(entries);
  const { positionals: words, tokens, values } = parseArgs({ args: argv, options: known, strict: false, allowPositionals: true, tokens: true });
  // Reported here, not by the strict parse: an unknown option would shift which word looks like the command.
  const unknown = tokens.find((t) => t.kind === 'option' && !(t.name in known));
  if (unknown && unknown.kind === 'option') throw new UsageError(`unknown option ${unknown.rawName}`);
  const asksHelp = values.help === true;
  const find = (name: string | undefined) => entries.find((e) => e.name === name);
  let [first, second, third] = words;
  if (first === undefined) return { kind: 'help', text: mainHelp(entries), exit: asksHelp ? EXIT_OK : EXIT_USAGE };
  let explicit = asksHelp;
  if (first === 'help') {
    if (second === undefined) return { kind: 'help', text: mainHelp(entries), exit: EXIT_OK };
    [first, second, third, explicit] = [second, third, undefined, true];
  }
  const entry = find(first);
  if (!entry) throw new UsageError(`unknown command "${first}"`);
  if (!isGroup(entry)) return explicit ? { kind: 'help', text: commandHelp(entry), exit: EXIT_OK } : { kind: 'command', command: entry, words: 1 };
  if (second === 'help') [second, explicit] = [third, true];
  if (second === undefined) return { kind: 'help', text: groupHelp(entry), exit: explicit ? EXIT_OK : EXIT_USAGE };
  const command = entry.commands.find((c) => c.name === second);
  if (!command) throw new UsageError(`unknown command "${entry.name} ${second}"`, `run 'keyhold ${entry.name} help' for its commands`);
  return explicit ? { kind: 'help', text: commandHelp(command), exit: EXIT_OK } : { kind: 'command', command, words: 2 };
}

function strictParse(argv: string[], command: Command) {
  try {
    return parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...command.options }, strict: true, allowPositionals: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message, `usage: keyhold ${command.usage}`);
    throw err;
  }
}

function hintFor(err: ApiError, hasToken: boolean): string | null {
  if (err.hint) return err.hint;
  if (err.code === 'SEALED') return "unseal it: 'keyhold unseal', once per share";
  if (err.code === 'NOT_INITIALIZED') return "initialise it: 'keyhold init'";
  if (err.code === 'UNAUTHENTICATED' && !hasToken) return 'set KEYHOLD_TOKEN';
  return null;
}

/**
 * The CLI as a function of its inputs: parses argv, runs one command, writes to the injected
 * streams and returns the exit code. It never calls process.exit, so tests can run it in-process.
 */
export function createCli(deps: CliDeps & { entries: Entry[] }) {
  const { entries, stdout, stderr } = deps;
  const fail = (lines: Array<string | null>, code: number) => {
    for (const line of lines) if (line) stderr.write(line + '\n');
    return code;
  };

  return {
    async run(argv: string[]): Promise<number> {
      let hasToken = false;
      try {
        const target = resolve(entries, argv);
        if (target.kind === 'help') {
          (target.exit === EXIT_OK ? stdout : stderr).write(target.text + '\n');
          return target.exit;
        }
        const { command, words } = target;
        const { values, positionals } = strictParse(argv, command);
        const settings = globalSettings(values as Flags, deps.env);
        hasToken = settings.token !== null;
        // The flag stays for compatibility, but nobody should learn from a silent success that it is safe.
        if (typeof values.token === 'string') stderr.write('warning: --token is visible to every user of this machine (ps) and kept in shell history; prefer KEYHOLD_TOKEN\n');
        const api = createApiClient({ fetch: deps.fetch, addr: settings.addr, token: settings.token, tenant: settings.tenant });
        const out = createOutput({ stdout, stderr, json: settings.json });
        const code = await command.run({ args: positionals.slice(words), flags: values as Flags, settings, api, out, deps });
        return code ?? EXIT_OK;
      } catch (err) {
        if (err instanceof UsageError) return fail([`error: ${err.message}`, `hint: ${err.hint}`], EXIT_USAGE);
        if (err instanceof ApiError) {
          const hint = hintFor(err, hasToken);
          return fail([`error: ${err.code}: ${err.message}`, hint && `hint: ${hint}`], EXIT_ERROR);
        }
        if (err instanceof UnreachableError) return fail([`error: ${err.message}`], EXIT_ERROR);
        if (err instanceof InterruptedError) return fail([], EXIT_INTERRUPTED);
        return fail([`error: ${(err as Error).message ?? String(err)}`], EXIT_ERROR);
      }
    },
  };
}
