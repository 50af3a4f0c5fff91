import { after, before } from 'node:test';
import type { DialectName } from '../../src/storage/database.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';
import { startServer, type ServerProcess, type StartServerOptions } from './server-process.ts';

/**
 * For a suite that starts, kills and restarts server processes on one database: a fresh database of
 * `dialect` before the suite, and `start` for a dev server on it (log level warn unless given). After
 * the suite the last server started is killed and the database removed.
 */
export function serverOnFreshDatabase(dialect: DialectName) {
  let database: TestDatabase;
  let server: ServerProcess | null = null;
  before(async () => {
    database = await createTestDatabase(dialect);
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await database.cleanup();
  });
  return {
    start: async (opts: Partial<StartServerOptions> = {}): Promise<ServerProcess> =>
      (server = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn', ...opts })),
  };
}
