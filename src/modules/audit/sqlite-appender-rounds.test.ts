import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChainSegment } from './chain.ts';
import type { AppendReply } from './sqlite-appender-protocol.ts';
import { createAppendRounds } from './sqlite-appender-rounds.ts';

const batch = (id: number) => ({ id, batch: JSON.stringify([1_700_000_000_000, []]) });

function fakeWriter(syncFails: (n: number) => boolean) {
  let appended = 0;
  let syncs = 0;
  return {
    get appended() { return appended; },
    append(): ChainSegment {
      appended++;
      return { first: appended, prevHash: '0', last: appended, lastHash: '1' };
    },
    sync() {
      if (syncFails(++syncs)) throw new Error('EIO: i/o error, fdatasync');
    },
    checkpoint() {},
  };
}

test('a round appends, syncs and acknowledges every batch that arrived', () => {
  const writer = fakeWriter(() => false);
  const replies: AppendReply[] = [];
  const round = createAppendRounds(writer, (r) => replies.push(r));
  assert.equal(round([batch(1), batch(2)]), true);
  assert.deepEqual(replies.map((r) => [r.ids, r.error]), [[[1, 2], undefined]]);
  assert.equal(round([{ close: true }]), false);
});

test('after one failed fdatasync nothing more is written or acknowledged, though later syncs would succeed', () => {
  const writer = fakeWriter((n) => n === 2);
  const replies: AppendReply[] = [];
  const round = createAppendRounds(writer, (r) => replies.push(r));
  round([batch(1)]);
  round([batch(2)]);
  round([batch(3)]);
  round([batch(4)]);
  assert.equal(replies[0]!.error, undefined);
  assert.match(replies[1]!.error!, /fdatasync .* failed/);
  for (const r of replies.slice(2)) assert.match(r.error!, /restarted/, `append ${r.ids} must fail`);
  assert.equal(writer.appended, 2, 'nothing was written after the failed sync');
});
