import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { createTestDatabase, skipReason, type TestDatabase } from '../../../test/helpers/databases.ts';
import { until, within } from '../../../test/helpers/deadline.ts';
import type { Storage } from '../database.ts';
import { createPgNotifications, type Notifications } from './notifications.ts';

const soon = (what: string, check: () => boolean) => until(what, check, 5_000);

/** Listens on `n`, recording what arrives. */
function listener(n: Notifications) {
  const got = { messages: [] as string[], gaps: 0, errors: [] as unknown[] };
  n.listen({ onMessage: (p) => void got.messages.push(p), onGap: () => void got.gaps++, onError: (e) => void got.errors.push(e) });
  return got;
}

describe('PostgreSQL notifications between the nodes of one deployment', async () => {
  const skip = await skipReason('postgres');
  if (skip) {
    describe('skipped', { skip }, () => {});
    return;
  }
  const databases: TestDatabase[] = [];
  const storages: Storage[] = [];
  const open = async (database: TestDatabase) => {
    const s = await database.open();
    storages.push(s);
    return s;
  };
  before(async () => {
    databases.push(await createTestDatabase('postgres'), await createTestDatabase('postgres'));
  });
  after(async () => {
    for (const s of storages) await s.close();
    for (const d of databases) await d.cleanup();
  });

  test('every node of a schema hears a message, the sender included; a deployment in another schema of the same database hears nothing', async () => {
    const [one, two] = databases as [TestDatabase, TestDatabase];
    const a = await open(one);
    const b = await open(one);
    const other = await open(two);
    const heard = [listener(a.notifications!), listener(b.notifications!), listener(other.notifications!)];
    await soon('all three listening', () => heard.every((h) => h.gaps === 1));
    await a.notifications!.publish('{"hello":1}');
    await other.notifications!.publish('{"elsewhere":1}');
    await soon('both nodes of the first schema heard it', () => heard[0]!.messages.length === 1 && heard[1]!.messages.length === 1);
    assert.deepEqual(heard[0]!.messages, ['{"hello":1}']);
    assert.deepEqual(heard[1]!.messages, ['{"hello":1}']);
    await soon('the other schema heard its own', () => heard[2]!.messages.length === 1);
    assert.deepEqual(heard[2]!.messages, ['{"elsewhere":1}'], 'and nothing of the first schema\'s');
  });

  test('a database that is not there: listening retries and reports, and close() ends it at once', async () => {
    const n = createPgNotifications({ db: storages[0]!.db, clientConfig: { connectionString: 'postgres://postgres@127.0.0.1:1/test', connectionTimeoutMillis: 10_000 } });
    const got = listener(n);
    await soon('two failed attempts reported', () => got.errors.length >= 2);
    assert.equal(got.gaps, 0);
    assert.equal(await within(n.close().then(() => 'closed'), 2_000, 'still closing'), 'closed');
    const reported = got.errors.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(got.errors.length, reported, 'no attempt after close');
  });

  test('a database that accepts the connection and never answers does not hold close() for the connect timeout', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => void sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const n = createPgNotifications({ db: storages[0]!.db, clientConfig: { connectionString: `postgres://postgres@127.0.0.1:${port}/test`, connectionTimeoutMillis: 10_000 } });
      listener(n);
      await soon('the attempt connected', () => sockets.length === 1);
      assert.equal(await within(n.close().then(() => 'closed'), 2_000, 'still closing'), 'closed');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
