import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { InterruptedError, readHiddenLine, type Input } from './input.ts';

/** A terminal as readHiddenLine sees one: raw mode, data events; `type` delivers bytes once the prompt is listening. */
function terminal() {
  const events = new EventEmitter();
  const modes: boolean[] = [];
  const stdin: Input = {
    isTTY: true,
    setRawMode: (raw: boolean) => modes.push(raw),
    on: (event, listener) => events.on(event, listener),
    off: (event, listener) => events.off(event, listener),
    async *[Symbol.asyncIterator]() {},
  };
  let shown = '';
  const stderr = { write: (text: string) => (shown += text) };
  return { stdin, stderr, modes, shown: () => shown, type: (...chunks: Buffer[]) => { for (const c of chunks) events.emit('data', c); } };
}

test('a hidden prompt keeps a character whose UTF-8 bytes arrive in two reads (a long paste), and echoes nothing', async () => {
  const t = terminal();
  const line = readHiddenLine(t.stdin, t.stderr, 'Value: ');
  const bytes = Buffer.from('pässwörd€\r', 'utf8');
  // Split inside "ä" (2 bytes) and inside "€" (3 bytes).
  t.type(bytes.subarray(0, 2), bytes.subarray(2, 10), bytes.subarray(10));
  assert.equal(await line, 'pässwörd€');
  assert.equal(t.shown(), 'Value: \n');
  assert.deepEqual(t.modes, [true, false], 'raw mode is left again');
});

test('a hidden prompt takes backspace, and Ctrl-C ends it as an interruption with the terminal restored', async () => {
  const t = terminal();
  const line = readHiddenLine(t.stdin, t.stderr, 'Value: ');
  t.type(Buffer.from('abx\u007fc\n'));
  assert.equal(await line, 'abc');
  const interrupted = readHiddenLine(t.stdin, t.stderr, 'Value: ');
  t.type(Buffer.from('ab\u0003'));
  await assert.rejects(interrupted, InterruptedError);
  assert.deepEqual(t.modes, [true, false, true, false]);
});
