import { describe } from 'node:test';
import type { DialectName } from '../../src/storage/database.ts';
import { DIALECTS, skipReason } from './databases.ts';

/**
 * Runs the same suite against SQLite and PostgreSQL. PostgreSQL is skipped only outside CI;
 * with CI=true a missing PostgreSQL fails the run.
 */
export function describeEachDialect(name: string, body: (dialect: DialectName) => void): void {
  for (const dialect of DIALECTS) {
    describe(`${name} [${dialect}]`, async () => {
      const skip = await skipReason(dialect);
      if (skip) {
        describe('skipped', { skip }, () => {});
        return;
      }
      body(dialect);
    });
  }
}
