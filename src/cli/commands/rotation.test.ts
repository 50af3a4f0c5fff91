import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runCli } from '../../../test/helpers/cli.ts';

/** The rotation commands in-process against a real Keyhold app (fetch answered by fastify's inject). */

let h: Harness;
let dir: string;
describe('keyhold rotation', () => {
  before(async () => {
    h = await createHarness('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'keyhold-rotation-cli-'));
    await h.services.secrets.create(h.ctx, { name: 'API_TOKEN', owner: 'ops' });
    await h.services.values.write(h.ctx, 'API_TOKEN', 'staging', { value: 'cli-rotation-canary-1' });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await h.close();
  });

  const run = (argv: string[], stdin: string[] = []) => runCli(h.app, argv, { token: h.rootToken, stdin });

  test('set a policy from a file, rotate, see it in status, roll back', async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ rotator: 'random', settings: { length: 32 }, intervalMs: 86_400_000 }));
    const set = await run(['rotation', 'set', 'API_TOKEN', '--env', 'staging', '--file', file]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /Rotation policy of API_TOKEN in staging: random, next run/);

    const rehearse = await run(['rotate', 'API_TOKEN', '--env', 'staging', '--rehearse']);
    assert.equal(rehearse.code, 0, rehearse.stderr);
    assert.match(rehearse.stdout, /^Rehearsal \S+ of API_TOKEN in staging: succeeded/);

    const rotate = await run(['rotate', 'API_TOKEN', '--env', 'staging']);
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.match(rotate.stdout, /succeeded\n  current version 2 \(previous 1\)/);

    const status = await run(['rotation', 'status']);
    assert.match(status.stdout, /API_TOKEN\s+staging\s+random\s+\S+\s+succeeded\s+0/);

    const back = await run(['rotation', 'rollback', 'API_TOKEN', '--env', 'staging']);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /version 1 is current/);
    assert.equal((await h.services.values.read(h.ctx, 'API_TOKEN', 'staging')).value, 'cli-rotation-canary-1');

    const history = await run(['rotation', 'history', 'API_TOKEN', '--env', 'staging']);
    assert.match(history.stdout, /manual \(rehearsal\)\s+succeeded/);
  });

  test('status shows where a policy\'s retries stand, and says when Keyhold gave up', async () => {
    await h.services.secrets.create(h.ctx, { name: 'RETRIED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'RETRIED', 'staging', { value: 'retried-value-1' });
    const file = join(dir, 'retried.json');
    writeFileSync(file, JSON.stringify({ rotator: 'random', intervalMs: 86_400_000 }));
    assert.equal((await run(['rotation', 'set', 'RETRIED', '--env', 'staging', '--file', file])).code, 0);
    const row = h.storage.db.updateTable('rotation_policies').where('secret_name', '=', 'RETRIED');
    await row.set({ retry_attempts: 2, retry_at: Date.UTC(2030, 0, 1, 12, 0), retry_trigger: 'schedule' }).execute();
    assert.match((await run(['rotation', 'status'])).stdout, /RETRIED\s+staging\s+random\s+\S+\s+-\s+0\s+2\/6, next 2030-01-01/);
    await row.set({ retry_attempts: 6, retry_at: null, retry_trigger: null, gave_up_at: Date.UTC(2030, 0, 1) }).execute();
    const status = (await run(['rotation', 'status'])).stdout;
    assert.match(status, /RETRIED\s+staging\s+random\s+\S+\s+-\s+0\s+GAVE UP \(6\)/);
    assert.match(status, /ATTENTION RETRIED in staging: retries exhausted/);
  });

  test('a manual rotation takes its value from stdin, never an argument; bad input is a clear error', async () => {
    await h.services.secrets.create(h.ctx, { name: 'VENDOR_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'VENDOR_KEY', 'staging', { value: 'vendor-old-value' });
    const file = join(dir, 'manual.json');
    writeFileSync(file, JSON.stringify({ rotator: 'manual' }));
    assert.equal((await run(['rotation', 'set', 'VENDOR_KEY', '--env', 'staging', '--file', file])).code, 0);
    const waiting = await run(['rotate', 'VENDOR_KEY', '--env', 'staging']);
    assert.match(waiting.stdout, /awaiting_value\n  waiting for a value: keyhold rotation supply VENDOR_KEY --env staging/);
    const again = await run(['rotate', 'VENDOR_KEY', '--env', 'staging']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ROTATION_IN_PROGRESS/);
    const supplied = await run(['rotation', 'supply', 'VENDOR_KEY', '--env', 'staging'], ['vendor-new-value\n']);
    assert.equal(supplied.code, 0, supplied.stderr);
    assert.equal((await h.services.values.read(h.ctx, 'VENDOR_KEY', 'staging')).value, 'vendor-new-value');
    assert.equal((await run(['rotate', 'VENDOR_KEY'])).code, 2, '--env is required');
    const badFile = join(dir, 'bad.json');
    writeFileSync(badFile, JSON.stringify({ rotator: 'random', surprise: 1 }));
    const bad = await run(['rotation', 'set', 'VENDOR_KEY', '--env', 'staging', '--file', badFile]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /UNKNOWN_FIELD|VALIDATION_FAILED/);
  });
});
