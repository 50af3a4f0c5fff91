import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import type { ServerProcess } from '../helpers/server-process.ts';
import { serverOnFreshDatabase } from '../helpers/server-database.ts';
import { eachLimit } from '../helpers/each-limit.ts';

const SECRETS = ['CRASH_A', 'CRASH_B', 'CRASH_C'];
const ENVIRONMENTS = ['development', 'staging', 'production'];
const WRITERS = 8;
/** Per round: the acknowledgement after which the server is killed. Early, middle and late in a burst. */
const KILL_AFTER_ACKS = [150, 40, 260];
/** Per round, per writer: a bound so a server that never gets killed cannot loop for ever. */
const MAX_WRITES_PER_WRITER = 80;

interface Target {
  secret: string;
  env: string;
}
interface Ack extends Target {
  version: number;
  value: string;
  round: number;
}

const TARGETS: Target[] = SECRETS.flatMap((secret) => ENVIRONMENTS.map((env) => ({ secret, env })));
const keyOf = (t: Target) => `${t.secret}/${t.env}`;
const valuesPath = (t: Target) => `/v1/secrets/${t.secret}/values/${t.env}`;

describeEachDialect('crash safety', (dialect) => {
  const { start } = serverOnFreshDatabase(dialect);

  test('a crash (kill -9) during a burst of writes leaves every acknowledged version decryptable', async (t) => {
    /** Every value ever sent per target, acknowledged or not: an unacknowledged write may or may not have committed. */
    const sent = new Map<string, Set<string>>(TARGETS.map((t) => [keyOf(t), new Set<string>()]));
    const acked: Ack[] = [];

    let live = await start();
    for (const name of SECRETS) {
      const res = await live.request('POST', '/v1/secrets', { body: { name, owner: 'crash-test' } });
      assert.equal(res.status, 201, res.text);
    }

    for (const [round, killAfter] of KILL_AFTER_ACKS.entries()) {
      const current = live;
      const unexpected: string[] = [];
      let roundAcks = 0;
      let inFlight = 0;
      let inFlightAtKill = -1;
      let killed: Promise<unknown> | null = null;

      const writer = async (w: number) => {
        for (let seq = 0; seq < MAX_WRITES_PER_WRITER && !killed; seq++) {
          const target = TARGETS[(w * 5 + seq) % TARGETS.length]!;
          // Unique, and of varying size so versions straddle pages.
          const value = `r${round}.w${w}.s${seq}.${randomBytes(8 + ((w * 131 + seq * 397) % 3000)).toString('base64url')}`;
          sent.get(keyOf(target))!.add(value);
          inFlight++;
          let res;
          try {
            res = await current.request('PUT', valuesPath(target), { body: { value } });
          } catch {
            return; // the connection died with the server: the outcome of this write is unknown
          } finally {
            inFlight--;
          }
          if (res.status !== 200) {
            if (!killed) unexpected.push(`${res.status} ${res.text}`);
            return;
          }
          // A 200 that arrives after the kill was still sent by the server, so it still counts.
          acked.push({ ...target, version: (res.json as { version: number }).version, value, round });
          if (++roundAcks === killAfter) {
            inFlightAtKill = inFlight;
            killed = current.kill('SIGKILL');
          }
        }
      };
      await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
      assert.deepEqual(unexpected, [], 'no write may fail before the crash');
      assert.ok(killed, `round ${round}: the server was killed (after ${roundAcks} acknowledged writes)`);
      assert.deepEqual(await killed, { code: null, signal: 'SIGKILL' });
      assert.ok(inFlightAtKill > 0, 'writes were in flight when the server was killed');

      t.diagnostic(`round ${round}: ${roundAcks} writes acknowledged, ${inFlightAtKill} in flight at the kill`);

      live = await start();
      await verify(live, acked, sent);
    }
    assert.ok(acked.length >= KILL_AFTER_ACKS.reduce((a, b) => a + b, 0));
    assert.deepEqual(await live.stop(), { code: 0, signal: null });
  });
});

/** After a restart: every acknowledged version reads back exactly, and no version is half-written. */
async function verify(server: ServerProcess, acked: Ack[], sent: Map<string, Set<string>>): Promise<void> {
  const seen = new Set<string>();
  for (const ack of acked) {
    const id = `${keyOf(ack)}@${ack.version}`;
    assert.ok(!seen.has(id), `version ${id} was acknowledged to two writes`);
    seen.add(id);
  }

  const lost: string[] = [];
  await eachLimit(acked, 8, async (ack) => {
    const res = await server.request('GET', `${valuesPath(ack)}?version=${ack.version}`);
    if (res.status !== 200 || res.json.value !== ack.value || res.json.version !== ack.version) {
      lost.push(`${keyOf(ack)} v${ack.version} (round ${ack.round}): ${res.status} ${res.status === 200 ? 'wrong value' : res.text}`);
    }
  });
  assert.deepEqual(lost, [], 'every acknowledged version reads back with the value that was sent');

  await eachLimit(TARGETS, 3, async (target) => {
    const key = keyOf(target);
    const history = await server.request('GET', `${valuesPath(target)}/versions`);
    assert.equal(history.status, 200, history.text);
    const versions = history.json.versions as Array<{ version: number; labels: string[]; destroyedAt: string | null }>;
    const numbers = versions.map((v) => v.version).sort((a, b) => a - b);
    assert.deepEqual(numbers, numbers.map((_, i) => i + 1), `${key}: versions are numbered 1..n without gaps`);
    const newest = numbers.at(-1) ?? 0;
    const ackedHere = acked.filter((a) => keyOf(a) === key).map((a) => a.version);
    assert.ok(ackedHere.every((v) => v <= newest), `${key}: the history holds every acknowledged version`);

    for (const info of versions) {
      const res = await server.request('GET', `${valuesPath(target)}?version=${info.version}`);
      if (info.destroyedAt !== null) {
        assert.equal(res.status, 410, `${key} v${info.version} is destroyed: ${res.text}`);
        continue;
      }
      assert.equal(res.status, 200, `${key} v${info.version} is listed, so it must decrypt: ${res.text}`);
      assert.ok(sent.get(key)!.has(res.json.value), `${key} v${info.version} holds a value that was sent to it`);
    }

    const current = await server.request('GET', valuesPath(target));
    assert.equal(current.status, 200, `${key}: the current version decrypts: ${current.text}`);
    assert.equal(current.json.version, newest, `${key}: with no rollback, the newest version is current`);
    assert.ok(sent.get(key)!.has(current.json.value), `${key}: the current value is one that was written`);
    assert.deepEqual(versions.find((v) => v.version === newest)?.labels.includes('current'), true);
  });
}
