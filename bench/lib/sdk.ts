import { createKeyhold } from '../../src/sdk/index.ts';
import { ENVIRONMENT, SECRET_NAME, type KeyholdTarget } from './keyhold.ts';

export interface SdkResult {
  /** Sequential `secrets.get` calls per second with a warm cache (default refreshMs: the background check runs). */
  cachedPerS: number;
  /** Sequential uncached reads over HTTP (one keep-alive connection, the same machine token), per second. */
  uncachedPerS: number;
}

/**
 * Against a real Keyhold server the bench started: the SDK's warm-cache get, and, in the same
 * run, what each get would cost without the cache (a GET of the value over loopback HTTP).
 * Both are one caller awaiting one answer at a time; best of `rounds`.
 */
export async function benchSdk(target: KeyholdTarget, opts: { rounds: number; msPerRound: number }): Promise<SdkResult> {
  const addr = new URL(target.url).origin;
  const token = target.headers.authorization!.replace(/^Bearer /, '');
  const keyhold = createKeyhold({ addr, token, environment: ENVIRONMENT, env: {} });
  try {
    const expected = await keyhold.get(SECRET_NAME);
    const result: SdkResult = { cachedPerS: 0, uncachedPerS: 0 };
    for (let round = 0; round < opts.rounds; round++) {
      result.cachedPerS = Math.max(result.cachedPerS, await perSecond(opts.msPerRound, async () => {
        if ((await keyhold.get(SECRET_NAME)) !== expected) throw new Error('sdk bench: the cached get returned another value');
      }));
      result.uncachedPerS = Math.max(result.uncachedPerS, await perSecond(opts.msPerRound, async () => {
        const res = await fetch(target.url, { headers: target.headers });
        const body = (await res.json()) as { value?: string };
        if (res.status !== 200 || body.value !== expected) throw new Error(`sdk bench: the uncached read answered ${res.status}`);
      }));
    }
    return result;
  } finally {
    keyhold.close();
  }
}

/** Awaits fn back to back for about `ms` (after a short warm-up) and returns calls per second. */
async function perSecond(ms: number, fn: () => Promise<void>): Promise<number> {
  const warmUntil = performance.now() + Math.min(200, ms / 5);
  while (performance.now() < warmUntil) await fn();
  let calls = 0;
  const started = performance.now();
  const until = started + ms;
  while (performance.now() < until) {
    for (let i = 0; i < 64; i++) await fn();
    calls += 64;
  }
  return calls / ((performance.now() - started) / 1000);
}
