import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withoutPassword } from './database.ts';

test('a message about a database that cannot be opened keeps no trace of the URL password, as written or decoded', () => {
  const cases: Array<[url: string, message: string, expected: string]> = [
    ['postgres://app:s3cr%2Fet@db:5432/k', 'could not open postgres://app:s3cr%2Fet@db:5432/k', 'could not open postgres://app:***@db:5432/k'],
    ['postgres://app:s3cr%2Fet@db:5432/k', 'password "s3cr/et" rejected', 'password "***" rejected'],
    // Not valid percent-encoding, and a port out of range: pg still reads it, URL does not.
    ['postgresql://app:pa%zz@db:99999/k', 'bad pa%zz here', 'bad *** here'],
    ['postgres://app@db/k', 'connect ECONNREFUSED', 'connect ECONNREFUSED'],
    ['sqlite:/var/lib/keyhold/keyhold.db', 'SQLITE_CANTOPEN', 'SQLITE_CANTOPEN'],
  ];
  for (const [url, message, expected] of cases) assert.equal(withoutPassword(message, url), expected, url);
});
