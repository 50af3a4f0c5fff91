import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import { verifyExportFiles } from '../../cli/commands/audit-offline.ts';
import { auditFrom } from './audit-log.ts';

/**
 * Offline verification end to end: what the API exports (whole-log events, checkpoints, the public
 * key) proves the log with no server, and every kind of damage to the files is named.
 */
describeEachDialect('audit export verified offline against the pinned key', (dialect) => {
  let h: Harness;
  let dir: string;
  let root: Record<string, string>;
  let publicKey: string;
  const paths = () => ({ events: join(dir, 'events.jsonl'), checkpoints: join(dir, 'checkpoints.jsonl') });

  before(async () => {
    h = await createHarness(dialect);
    dir = await mkdtemp(join(tmpdir(), 'keyhold-offline-'));
    root = { authorization: `Bearer ${h.rootToken}` };
    await h.services.secrets.create(h.ctx, { name: 'OFFLINE', owner: 'ops' });
    for (let i = 0; i < 3; i++) {
      await h.services.values.write(h.ctx, 'OFFLINE', 'production', { value: `offline-canary-${i}` });
      await h.services.checkpoints.checkpoint();
    }
    await h.services.values.read(h.ctx, 'OFFLINE', 'production'); // after the last checkpoint: the unsigned tail
    const key = await h.app.inject({ method: 'GET', url: '/v1/audit/public-key', headers: root });
    assert.equal(key.statusCode, 200);
    publicKey = key.json().publicKey;
    const events = await h.app.inject({ method: 'GET', url: '/v1/audit/export?allTenants=true&format=json', headers: root });
    const checkpoints = await h.app.inject({ method: 'GET', url: '/v1/audit/checkpoints', headers: root });
    assert.equal(checkpoints.statusCode, 200);
    assert.match(String(checkpoints.headers['content-type']), /application\/x-ndjson/);
    await writeFile(paths().events, events.body);
    await writeFile(paths().checkpoints, checkpoints.body);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await h.close();
  });

  /** Runs the offline proof on a copy of the files, the events file edited by `edit`. */
  async function verifyEdited(edit: (lines: string[]) => string[], editCheckpoints: (lines: string[]) => string[] = (l) => l, key = publicKey, opts: { partial?: boolean } = {}) {
    const copy = { events: join(dir, 'e.jsonl'), checkpoints: join(dir, 'c.jsonl') };
    const lines = (text: string) => text.split('\n').filter((l) => l !== '');
    await writeFile(copy.events, edit(lines(await readFile(paths().events, 'utf8'))).join('\n') + '\n');
    await writeFile(copy.checkpoints, editCheckpoints(lines(await readFile(paths().checkpoints, 'utf8'))).join('\n') + '\n');
    return verifyExportFiles(copy, key, opts);
  }
  const withEvent = (seq: number, change: (e: Record<string, unknown>) => void) => (lines: string[]) => lines.map((l) => {
    const e = JSON.parse(l) as Record<string, unknown>;
    if (e.seq === seq) change(e);
    return JSON.stringify(e);
  });
  /** Edits the text of line `n` as it is, where `withEvent` would parse and write it again. */
  const atLine = (n: number, change: (line: string) => string) => (lines: string[]) => lines.map((l, i) => (i === n - 1 ? change(l) : l));

  test('the exports as they are verify offline, and match what the server says', async () => {
    const offline = await verifyExportFiles(paths(), publicKey);
    const online = await h.services.auditQueries.verify(h.ctx);
    const exported = (await readFile(paths().events, 'utf8')).trim().split('\n').length;
    assert.equal(offline.ok, true, JSON.stringify(offline));
    assert.deepEqual([offline.events, offline.lastSeq, offline.checkpoints], [exported, exported, 3]);
    assert.ok(online.ok && online.events > exported, 'the log has moved on since (the exports are events themselves)');

    // Who took a copy of the trail, and of what: recorded before the first byte, so an export holds its own event.
    const egress = (await h.services.audit.readAfter(offline.lastSeq! - 1, 100)).filter((e) => e.action.startsWith('audit.'));
    assert.deepEqual(egress.map((e) => [e.seq, e.action, e.tenantId, e.actor.type, e.context.format ?? null, e.context.allTenants ?? null]), [
      [offline.lastSeq, 'audit.export', null, 'root', 'json', 'true'], [offline.lastSeq! + 1, 'audit.checkpoints-export', null, 'root', null, null],
    ]);
    const text = await readFile(paths().events, 'utf8') + await readFile(paths().checkpoints, 'utf8');
    assert.ok(!text.includes('offline-canary'), 'no value in either export');
  });

  test('an altered, removed, inserted or reordered event, or a cut tail, is named', async () => {
    const cases: Array<[string, (lines: string[]) => string[], RegExp, number]> = [
      ['altered outcome', withEvent(5, (e) => { e.outcome = 'denied'; }), /event 5 was altered/, 5],
      ['removed event', (l) => l.filter((x) => JSON.parse(x).seq !== 6), /events 6\.\.6 are missing/, 7],
      ['two swapped', (l) => [...l.slice(0, 3), l[4]!, l[3]!, ...l.slice(5)], /missing|out of order/, 5],
      ['a line repeating seq 4 with other content', (l) => [...l.slice(0, 4), withEvent(4, (e) => { e.outcome = 'denied'; })([l[3]!])[0]!, ...l.slice(4)], /event 4 appears twice with different content/, 4],
      ['a line repeating seq 4 with other content but its hash', (l) => [...l.slice(0, 4), withEvent(4, (e) => { e.resource = { ...(e.resource as object), name: 'OTHER' }; })([l[3]!])[0]!, ...l.slice(4)], /event 4 appears twice with different content/, 4],
      ['an earlier event moved later', (l) => [...l.slice(0, 2), ...l.slice(3, 6), l[2]!, ...l.slice(6)], /events 3\.\.3 are missing/, 4],
      ['a garbage line', (l) => [...l.slice(0, 2), 'not json', ...l.slice(2)], /line 3 is not JSON/, 3],
      ['an event whose context is null', withEvent(5, (e) => { e.context = null; }), /line 5 \(after event 4\) is not an audit event/, 5],
      // JSON.parse keeps the last of two equal keys; a reader that keeps the first (or every one: a SIEM's multivalue
      // field, a grep) sees the text put before it, which no hash covers. So does a field added beside the hashed ones.
      ['a hashed field repeated before the real one', atLine(5, (x) => x.replace('{"seq":5,', '{"seq":5,"outcome":"denied","actor":{"type":"root","id":"someone-else"},')), /line 5 \(event 5\) is not the event as Keyhold writes it/, 5],
      ['a key repeated inside the context', atLine(5, (x) => x.replace('"context":{"requestId":', '"context":{"requestId":"approved-by-the-ciso","requestId":')), /line 5 \(event 5\) is not the event as Keyhold writes it/, 5],
      ['a field no hash covers', atLine(5, (x) => x.replace('{"seq":5,', '{"seq":5,"approvedBy":"ciso",')), /line 5 \(event 5\) is not the event as Keyhold writes it/, 5],
    ];
    for (const [what, edit, problem, firstBad] of cases) {
      const r = await verifyEdited(edit);
      assert.equal(r.ok, false, what);
      assert.match(r.problem!, problem, what);
      assert.equal(r.firstBadSeq, firstBad, what);
    }
    const cps = (await readFile(paths().checkpoints, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { seq: number });
    const lastSigned = cps.at(-1)!.seq;
    const cut = await verifyEdited((l) => l.filter((x) => JSON.parse(x).seq < lastSigned));
    assert.match(cut.problem!, new RegExp(`covers ${lastSigned}: events were removed from the end`));
    const tailOnly = await verifyEdited((l) => l.filter((x) => JSON.parse(x).seq <= lastSigned));
    assert.equal(tailOnly.ok, true, 'the unsigned tail after the last checkpoint is all an export can lose unnoticed (docs/audit.md)');
  });

  test('a file cut mid-line at its end (a crash mid-write) or with a byte-order mark in front is broken at that line, never intact', async () => {
    const text = await readFile(paths().events, 'utf8');
    const lines = text.trim().split('\n');
    const path = join(dir, 'damaged.jsonl');
    await writeFile(path, `${lines.slice(0, -1).join('\n')}\n${lines.at(-1)!.slice(0, 40)}`);
    const torn = await verifyExportFiles({ events: path, checkpoints: paths().checkpoints }, publicKey);
    assert.deepEqual([torn.ok, torn.firstBadSeq, torn.problem], [false, lines.length, `events line ${lines.length} is not JSON`]);
    await writeFile(path, `\uFEFF${text}`);
    const bom = await verifyExportFiles({ events: path, checkpoints: paths().checkpoints }, publicKey);
    assert.deepEqual([bom.ok, bom.firstBadSeq, bom.problem], [false, 1, 'events line 1 is not JSON']);
  });

  test('an exact repeat of an event (at-least-once delivery) is skipped and counted, wherever it comes back', async () => {
    const r = await verifyEdited((l) => [...l.slice(0, 6), ...l.slice(2, 6), l[5]!, ...l.slice(6)]);
    assert.equal(r.ok, true, r.problem ?? '');
    const exported = (await readFile(paths().events, 'utf8')).trim().split('\n').length;
    assert.deepEqual([r.events, r.lastSeq, r.duplicates, r.firstSeq, r.checkpoints], [exported, exported, 5, 1, 3]);
    const whole = await verifyExportFiles(paths(), publicKey);
    assert.equal(whole.duplicates, 0);
  });

  test('a file that starts mid-chain verifies from its first line, says where it starts, and still proves the checkpoints it holds', async () => {
    const [first, second, third] = (await readFile(paths().checkpoints, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { seq: number }) as [{ seq: number }, { seq: number }, { seq: number }];
    // Each round wrote an event, then checkpointed it (the checkpoint's event follows it). The file starts at the
    // second round's write, as a file rotated there would: the second checkpoint's link to the first points
    // before the file and is not required; the second and third checkpoints, inside it, still prove its events.
    const start = second.seq;
    const headless = (l: string[]) => l.filter((x) => JSON.parse(x).seq >= start);
    const noCheckpoints = (c: string[]) => c.filter(() => false);
    // Unless told the file is a part, a missing head is a removal.
    const whole = await verifyEdited(headless, noCheckpoints);
    assert.deepEqual([whole.ok, whole.firstBadSeq], [false, 1]);
    assert.match(whole.problem!, new RegExp(`events 1\\.\\.${start - 1} are missing.*--partial`));
    // Damage further on does not hide the missing head: that is the first bad event.
    const alsoAltered = await verifyEdited((l) => withEvent(start + 1, (e) => { e.outcome = 'denied'; })(headless(l)), noCheckpoints);
    assert.deepEqual([alsoAltered.ok, alsoAltered.firstBadSeq], [false, 1]);
    assert.match(alsoAltered.problem!, new RegExp(`events 1\\.\\.${start - 1} are missing`));
    const r = await verifyEdited(headless, noCheckpoints, publicKey, { partial: true });
    assert.equal(r.ok, true, r.problem ?? '');
    assert.equal(r.firstSeq, start, 'the answer names where the file starts: its head is not there');
    const exported = (await readFile(paths().events, 'utf8')).trim().split('\n').length;
    assert.deepEqual([r.events, r.lastSeq, r.unsigned], [exported - start + 1, exported, exported - third.seq]);
    assert.equal(r.checkpoints, 2, 'the checkpoints inside the file are the ones proved against it');

    // Inside the file, a rewrite with recomputed hashes is still caught by the checkpoint it holds.
    const { chainHash } = await import('./chain.ts');
    const rehashed = (l: string[]) => {
      let prev: string | null = null;
      return headless(l).map((x) => {
        const e = JSON.parse(x);
        if (e.seq === start + 2) e.outcome = 'denied'; // the third round's write
        if (prev !== null) e.prevHash = prev;
        e.hash = chainHash(e.prevHash, e);
        prev = e.hash;
        return JSON.stringify(e);
      });
    };
    const rewritten = await verifyEdited(rehashed, noCheckpoints, publicKey, { partial: true });
    assert.equal(rewritten.ok, false);
    assert.match(rewritten.problem!, new RegExp(`does not match the signed checkpoint at ${third.seq}`));

    // A checkpoint inside the file, named by the signed link of the next, removed with its event: still named.
    const withoutSecond = await verifyEdited(
      (l) => headless(l).filter((x) => { const e = JSON.parse(x); return !(e.action === 'audit.checkpoint' && Number(e.context.seq) === second.seq); }),
      noCheckpoints, publicKey, { partial: true },
    );
    assert.equal(withoutSecond.ok, false);
    assert.match(withoutSecond.problem!, new RegExp(`the checkpoint at ${second.seq} \\(named by the signed checkpoint at ${third.seq}\\) was removed`));

    // With the checkpoints export too: the one at the seq before the file must be the first line's link.
    const relink = (l: string[]) => {
      const kept = l.filter((x) => JSON.parse(x).seq > first.seq);
      const e = JSON.parse(kept[0]!);
      e.prevHash = 'a'.repeat(64);
      e.hash = chainHash(e.prevHash, e);
      return [JSON.stringify(e), ...kept.slice(1)];
    };
    assert.equal((await verifyEdited(relink)).firstBadSeq, 1, 'not told it is a part: the missing head comes first');
    const relinked = await verifyEdited(relink, (c) => c, publicKey, { partial: true });
    assert.equal(relinked.ok, false);
    assert.equal(relinked.firstBadSeq, first.seq + 1);
    assert.match(relinked.problem!, new RegExp(`does not link to the signed checkpoint at ${first.seq}`));
  });

  test('a middle part (a rotated file between two others) verifies with --partial against the whole checkpoints export, and says where it ends', async () => {
    const [, second, third] = (await readFile(paths().checkpoints, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { seq: number }) as [{ seq: number }, { seq: number }, { seq: number }];
    // From the second round's write up to just before the third round's checkpoint: the third signs events not in the part.
    const [start, end] = [second.seq, third.seq - 1];
    const part = (l: string[]) => l.filter((x) => { const seq = JSON.parse(x).seq as number; return seq >= start && seq <= end; });
    const whole = await verifyEdited(part);
    assert.equal(whole.ok, false, 'without --partial a missing head or tail is a removal');
    const r = await verifyEdited(part, (c) => c, publicKey, { partial: true });
    assert.equal(r.ok, true, r.problem ?? '');
    assert.deepEqual([r.firstSeq, r.lastSeq, r.checkpointBeyond], [start, end, third.seq], 'it names where the part starts and ends, and how far the checkpoints go');
    assert.equal(r.checkpoints, 1, 'only the checkpoint inside the part is held against it');
    assert.equal(r.unsigned, end - second.seq);

    // Open at the end, not blind inside: an event of the part changed is still caught by the checkpoint it holds.
    const changed = await verifyEdited((l) => part(withEvent(second.seq, (e) => { e.outcome = 'denied'; })(l)), (c) => c, publicKey, { partial: true });
    assert.equal(changed.ok, false);
    assert.equal(changed.firstBadSeq, second.seq);
  });

  test('a rewritten history with recomputed hashes is caught by the checkpoints; a forged checkpoint or another key by the signature', async () => {
    // Re-hash everything from event 4 on after changing it, as a database owner could: only the signatures tell.
    const { chainHash } = await import('./chain.ts');
    const rehashed = (lines: string[]) => {
      let prev = '';
      return lines.map((l) => {
        const e = JSON.parse(l);
        if (e.seq === 4) e.outcome = 'denied';
        if (e.seq >= 4) {
          e.prevHash = prev;
          e.hash = chainHash(prev, e);
        }
        prev = e.hash;
        return JSON.stringify(e);
      });
    };
    const r = await verifyEdited(rehashed);
    assert.equal(r.ok, false);
    assert.match(r.problem!, /does not match the signed checkpoint/);
    const forged = await verifyEdited((l) => l, (c) => c.map((x) => JSON.stringify({ ...JSON.parse(x), hash: 'f'.repeat(64) })));
    assert.match(forged.problem!, /not signed by the trusted audit key/);
    const otherKey = (await import('node:crypto')).generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    assert.match((await verifyEdited((l) => l, (c) => c, otherKey)).problem!, /not signed by the trusted audit key/);
  });

  test('a --public-key that is base64 but no Ed25519 public key is a usage error, never a crypto failure or an ok', async () => {
    for (const key of ['AAAA', Buffer.alloc(44, 7).toString('base64'), 'notakey']) {
      await assert.rejects(verifyExportFiles(paths(), key), (err: Error) => err.name === 'UsageError' && /--public-key/.test(err.message), key);
    }
  });

  test('text a writer typed with a Unicode line or paragraph separator in it still verifies: only a newline ends a line', async () => {
    // JSON.stringify leaves U+2028 and U+2029 as they are (both are valid inside a JSON string); a reader that ends lines
    // at them too (node:readline does) cut such an event in two, and the whole log failed as "not JSON".
    // A write's reason no longer takes them (value-service.ts, shared/typed-text.ts), but an event written before that, or
    // text reaching an event another way, still holds them: recorded here as the value service recorded a reason.
    await h.services.audit.record([{
      ...auditFrom(h.ctx), action: 'secret.write', resource: { type: 'secret', id: null, name: 'OFFLINE' },
      environment: 'production', outcome: 'allowed', context: { ...auditFrom(h.ctx).context, reason: 'first line\u2028second\u2029third' },
    }]);
    await h.services.checkpoints.checkpoint();
    const events = await h.app.inject({ method: 'GET', url: '/v1/audit/export?allTenants=true&format=json', headers: root });
    const path = join(dir, 'separators.jsonl');
    await writeFile(path, events.body);
    assert.ok(events.body.includes('\u2028'), 'the export holds the separator as it was typed');
    const r = await verifyExportFiles({ events: path, checkpoints: null }, publicKey);
    assert.equal(r.ok, true, r.problem ?? '');
    assert.equal(r.events, events.body.trim().split('\n').length);
    // Windows line ends (CRLF) are line ends too.
    await writeFile(path, events.body.replaceAll('\n', '\r\n'));
    assert.equal((await verifyExportFiles({ events: path, checkpoints: null }, publicKey)).ok, true);
  });

  test('checkpoints are root-only; the public key is for any auditor; neither for a plain user', async () => {
    const auditor = await userContext(h, h.ctx.tenantId, 'offline-auditor');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: auditor.id, role: 'auditor' });
    const nobody = await userContext(h, h.ctx.tenantId, 'offline-nobody');
    assert.equal(await codeOf(h.services.auditQueries.checkpoints(auditor.ctx())), 'FORBIDDEN');
    assert.equal((await h.services.auditQueries.publicKey(auditor.ctx())).publicKey, publicKey);
    assert.equal(await codeOf(h.services.auditQueries.publicKey(nobody.ctx())), 'FORBIDDEN');
  });
});
