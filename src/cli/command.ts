import type { ParseArgsOptionsConfig } from 'node:util';
import type { GlobalSettings } from './args.ts';
import type { ApiClient } from './client.ts';
import type { Input } from './input.ts';
import type { Output, Writer } from './output.ts';

/** Everything the CLI touches outside itself, injected so tests can run it in-process. */
export interface CliDeps {
  fetch: typeof fetch;
  stdin: Input;
  stdout: Writer;
  stderr: Writer;
  env: Record<string, string | undefined>;
  /** Runs the server in this process (`keyhold server`); resolves once it listens. */
  serve?: (argv: string[], env: Record<string, string | undefined>) => Promise<void>;
  /** Ends commands that run until interrupted (`audit tail --follow`); without it they end with the process (Ctrl-C). */
  signal?: AbortSignal;
}

export type Flags = Record<string, string | boolean | Array<string | boolean> | undefined>;

export interface CommandContext {
  /** Positional arguments after the command words. */
  args: string[];
  flags: Flags;
  settings: GlobalSettings;
  api: ApiClient;
  out: Output;
  deps: CliDeps;
}

export interface Command {
  name: string;
  summary: string;
  /** Synopsis without the leading "keyhold", e.g. "secrets get NAME --env E". */
  usage: string;
  /** Further help lines (option meanings, caveats). */
  help?: string[];
  options: ParseArgsOptionsConfig;
  /** Returns the exit code (0 when omitted). */
  run(ctx: CommandContext): Promise<number | void>;
}

/** A verb group ("secrets", "keys", ...); a bare command ("status") is a Command at the top level. */
export interface Group {
  name: string;
  summary: string;
  commands: Command[];
}

export type Entry = Command | Group;

export function isGroup(entry: Entry): entry is Group {
  return 'commands' in entry;
}
