import { positionals } from '../args.ts';
import type { Command } from '../command.ts';

/** `keyhold server`: the server in this process, configured like `src/main/server.ts` (KEYHOLD_* env). */
export const serverCommand: Command = {
  name: 'server',
  summary: 'Run the Keyhold server in this process',
  usage: 'server [--dev]',
  help: [
    'Configured by KEYHOLD_DATA_DIR, KEYHOLD_DATABASE_URL, KEYHOLD_HOST, KEYHOLD_PORT, KEYHOLD_LOG_LEVEL, ...',
    '--dev   initialise and unseal automatically; keeps the unseal key and root token IN THE CLEAR',
    '        in the data directory. Never for real secrets.',
    'Logs are JSON lines on stdout whether or not --json is given.',
  ],
  options: { dev: { type: 'boolean' } },
  async run({ args, flags, deps }) {
    positionals(args, [], serverCommand.usage);
    if (!deps.serve) throw new Error('this build of the CLI cannot run the server');
    await deps.serve(flags.dev === true ? ['--dev'] : [], deps.env);
  },
};
