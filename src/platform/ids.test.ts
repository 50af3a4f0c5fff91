import { test } from 'node:test';
import assert from 'node:assert/strict';
import { timeOrderedId } from './ids.ts';

test('time-ordered ids are RFC 9562 version 7 UUIDs that carry their millisecond and sort by it', () => {
  const at = Date.UTC(2026, 5, 1, 12, 0, 0, 123);
  const id = timeOrderedId(at);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), at);
  const later = Array.from({ length: 50 }, (_, i) => timeOrderedId(at + 1 + i));
  assert.deepEqual([...later].sort(), later);
  assert.ok(later.every((l) => l > id));
});

test('time-ordered ids of the same millisecond still differ (74 random bits)', () => {
  const ids = new Set(Array.from({ length: 10_000 }, () => timeOrderedId(1_750_000_000_000)));
  assert.equal(ids.size, 10_000);
});
