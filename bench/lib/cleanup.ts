/**
 * Everything the benchmark must undo (child servers, temp dirs, PostgreSQL schemas), run in
 * reverse order of registration: on normal exit, on failure, and on SIGINT/SIGTERM.
 */
export interface Cleanup {
  add(name: string, task: () => Promise<void> | void): void;
  run(): Promise<void>;
}

export function createCleanup(): Cleanup {
  const tasks: Array<{ name: string; task: () => Promise<void> | void }> = [];
  let running: Promise<void> | null = null;

  async function runAll(): Promise<void> {
    while (tasks.length > 0) {
      const { name, task } = tasks.pop()!;
      try {
        await task();
      } catch (err) {
        process.stderr.write(`# cleanup "${name}" failed: ${(err as Error).message}\n`);
      }
    }
  }

  return {
    add(name, task) {
      tasks.push({ name, task });
    },
    run() {
      running ??= runAll().finally(() => {
        running = null;
      });
      return running;
    },
  };
}

/** Runs the cleanup before the process dies of a signal, then exits with the conventional code. */
export function cleanupOnSignals(cleanup: Cleanup): void {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      process.stderr.write(`# ${signal}: stopping child processes\n`);
      void cleanup.run().finally(() => process.exit(code));
    });
  }
}
