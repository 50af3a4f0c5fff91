import { createPolicyEngine, type DecisionRequest } from '../../src/modules/policy/engine.ts';

/**
 * Cedar decisions per second in process: `cached` repeats one request (the decision cache answers),
 * `uncached` varies the secret on every call so Cedar evaluates each one (schema-validated,
 * pre-parsed policy set, the built-in roles).
 */
export function benchAuthz(opts: { msPerRound: number; rounds: number }): { cached: number; uncached: number } {
  const engine = createPolicyEngine({ cacheSize: 1_000_000 });
  const request = (i: number): DecisionRequest => ({
    tenantId: 'bench-tenant',
    principal: { type: 'machine', id: 'runner', name: 'runner', tenantId: 'bench-tenant' },
    action: 'use',
    resource: { type: 'secret', id: `s${i}`, name: `SECRET_${i}`, classification: 'confidential', owner: 'ops', tags: [] },
    context: {
      environment: 'production', classification: 'confidential', identityType: 'machine', roles: ['builder'],
      mfaFresh: false, mfaAgeSeconds: -1, hour: 12, weekday: 2, sourceIp: '127.0.0.1',
    },
  });
  const rate = (fn: (i: number) => void): number => {
    let best = 0;
    for (let r = 0; r < opts.rounds; r++) {
      let n = 0;
      const start = performance.now();
      while (performance.now() - start < opts.msPerRound) fn(n++);
      best = Math.max(best, n / ((performance.now() - start) / 1000));
    }
    return best;
  };
  const warm = request(0);
  if (!engine.decide(warm).allowed) throw new Error('the benchmark request should be allowed');
  const cached = rate(() => engine.decide(warm));
  let offset = 1;
  const uncached = rate((i) => {
    if (!engine.decide(request(offset + i)).allowed) throw new Error('unexpected deny');
  });
  offset += 1_000_000;
  return { cached, uncached };
}
