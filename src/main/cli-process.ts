import { entries } from '../cli/commands/index.ts';
import { createCli } from '../cli/run.ts';
import { loopbackDirect } from '../cli/loopback-fetch.ts';

/** Composition root of the CLI process (started by cli.ts): real streams, fetch and environment; the server only on demand. */
const cli = createCli({
  entries,
  fetch: loopbackDirect(globalThis.fetch, process.env),
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  // Imported lazily: every other command stays free of the server's dependencies and start-up cost.
  serve: async (argv, env) => (await import('./server.ts')).main(argv, env),
});

// exitCode, not exit(): `keyhold server` keeps running, and piped output is flushed before exit.
process.exitCode = await cli.run(process.argv.slice(2));
