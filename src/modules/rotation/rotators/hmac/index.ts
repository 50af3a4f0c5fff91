import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { noSandbox, noSecretRefs, setting, type Rotator } from '../types.ts';

const FIELDS = ['bytes', 'overlapMs'];

/** `sha256=<hex>` HMAC-SHA256 of the body under `secret` (the header webhook receivers check). */
export function signPayload(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time comparison of two signature strings of any length. */
function sameSignature(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Verifies a webhook signature during a signing-secret rotation: the current secret always, the
 * previous one only until `overlapMs` after it was superseded, so senders and receivers can switch
 * at their own pace and the old secret stops working on its own.
 * @example
 * verifyOverlapping(body, req.headers['x-signature'], { current, previous: { value, supersededAt } }, { overlapMs: 86_400_000, now: Date.now() })
 */
export function verifyOverlapping(
  body: string | Uint8Array, signature: string,
  keys: { current: string; previous?: { value: string; supersededAt: number } | null },
  opts: { overlapMs: number; now: number },
): { ok: boolean; matched: 'current' | 'previous' | null } {
  if (sameSignature(signPayload(keys.current, body), signature)) return { ok: true, matched: 'current' };
  const prev = keys.previous;
  if (prev && opts.now < prev.supersededAt + opts.overlapMs && sameSignature(signPayload(prev.value, body), signature)) {
    return { ok: true, matched: 'previous' };
  }
  return { ok: false, matched: null };
}

/** HMAC webhook signing secret: a fresh random key; the overlap window is enforced by `verifyOverlapping`. */
export function createHmacRotator(): Rotator {
  const parse = (s: Record<string, unknown>) => {
    setting.only(s, FIELDS);
    return { bytes: setting.int(s, 'bytes', 32, 128, 32), overlapMs: setting.int(s, 'overlapMs', 0, 30 * 86_400_000, 86_400_000) };
  };
  return {
    type: 'hmac',
    validate: (s) => void parse(s),
    secretRefs: noSecretRefs,
    async generate(rc) {
      const p = parse(rc.settings);
      return { value: `whsec_${randomBytes(p.bytes).toString('base64url')}`, state: { overlapMs: p.overlapMs } };
    },
    async apply() {},
    async test(_rc, value) {
      // The key must sign and verify a probe: catches an empty or mangled key before anyone depends on it.
      const probe = 'keyhold-rotation-probe';
      const ok = verifyOverlapping(probe, signPayload(value, probe), { current: value }, { overlapMs: 0, now: 0 }).ok;
      return { ok, detail: ok ? 'signs and verifies' : 'the new key does not verify its own signature' };
    },
    async restore() {
      return { ok: true, detail: 'nothing to restore: Keyhold is the source' };
    },
    async finalize() {},
    sandbox: noSandbox,
  };
}
