import { randomBytes } from 'node:crypto';
import { toKeyObject } from '../../src/crypto/aead.ts';
import { openValue, sealValue } from '../../src/crypto/envelope.ts';
import { openValueRawBuffer } from './raw-envelope.ts';

export interface DecryptResult {
  keyObjectOps: number;
  rawBufferOps: number;
}

/**
 * In-process: opens one sealed 64-byte value through the real envelope code with a cached
 * KeyObject KEK, and through the raw-Buffer mirror. The two alternate `rounds` times; the best
 * round of each is kept, as for the HTTP numbers.
 */
export function benchDecrypt(opts: { rounds: number; msPerRound: number }): DecryptResult {
  const kekBytes = randomBytes(32);
  const kek = toKeyObject(kekBytes);
  const binding = { tenantId: 'tenant-bench', environmentId: 'env-bench', secretId: 'secret-bench', version: 1 };
  const plaintext = randomBytes(64);
  const sealed = sealValue(kek, 1, binding, plaintext);

  const viaKeyObject = () => openValue(kek, binding, sealed.ciphertext, sealed.wrappedDek);
  const viaRawBuffer = () => openValueRawBuffer(kekBytes, binding, sealed.ciphertext, sealed.wrappedDek);
  for (const [name, fn] of [['openValue', viaKeyObject], ['raw-Buffer mirror', viaRawBuffer]] as const) {
    if (!fn().equals(plaintext)) throw new Error(`decrypt bench: ${name} did not return the sealed plaintext`);
  }

  const result: DecryptResult = { keyObjectOps: 0, rawBufferOps: 0 };
  for (let round = 0; round < opts.rounds; round++) {
    result.keyObjectOps = Math.max(result.keyObjectOps, opsPerSecond(viaKeyObject, opts.msPerRound));
    result.rawBufferOps = Math.max(result.rawBufferOps, opsPerSecond(viaRawBuffer, opts.msPerRound));
  }
  return result;
}

/** Calls fn in batches for about `ms` (after a short warm-up) and returns calls per second. */
function opsPerSecond(fn: () => Buffer, ms: number): number {
  const BATCH = 256;
  let sink = 0;
  const warmUntil = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < warmUntil) for (let i = 0; i < BATCH; i++) sink ^= fn()[0]!;
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < BATCH; i++) sink ^= fn()[0]!;
    calls += BATCH;
    now = performance.now();
  }
  if (sink === -1) process.stderr.write(''); // keeps `sink` observable so no call is optimised away
  return calls / ((now - start) / 1000);
}
