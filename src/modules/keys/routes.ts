import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { Type } from 'typebox';
import { KeyStatusSchema, Nullable, errorResponses } from '../../http/schemas.ts';
import type { KeyService } from './key-service.ts';
import type { KeySelfTest } from './self-test.ts';

const SelfTestReportSchema = Type.Object({
  at: Type.String(), ok: Type.Boolean(), tenants: Type.Integer(), keys: Type.Integer(),
  failures: Type.Array(Type.Object({ tenantId: Type.String(), version: Type.Integer(), reason: Type.String() })),
});

/** Tenant key-encryption keys: status, rotate, rewrap, re-encrypt; and the KEK self-test across tenants (root). */
export function keyRoutes(deps: { keys: KeyService; selfTest: KeySelfTest }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    r.get('/v1/keys', {
      config: { auth: 'tenant' },
      schema: { tags: ['keys'], summary: 'KEK versions, minimum decryption version, data keys per version', response: { 200: KeyStatusSchema, ...errorResponses } },
    }, (req) => deps.keys.status(tenantContextOf(req)));
    r.post('/v1/keys/rotate', {
      config: { auth: 'tenant' },
      schema: { tags: ['keys'], summary: 'Create a new KEK version for new data keys', response: { 200: KeyStatusSchema, ...errorResponses } },
    }, (req) => deps.keys.rotate(tenantContextOf(req)));
    r.post('/v1/keys/rewrap', {
      config: { auth: 'tenant' },
      schema: { tags: ['keys'], summary: 'Rewrap every data key under the current KEK, then retire older KEKs', response: { 200: KeyStatusSchema, ...errorResponses } },
    }, (req) => deps.keys.rewrap(tenantContextOf(req)));
    r.post('/v1/keys/reencrypt', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['keys'], summary: 'After a suspected key compromise: a new KEK version, every value resealed under a fresh data key, older KEKs retired',
        response: { 200: KeyStatusSchema, ...errorResponses },
      },
    }, (req) => deps.keys.reencrypt(tenantContextOf(req)));
    r.get('/v1/sys/self-test', {
      config: { auth: 'root' },
      schema: { tags: ['sys'], summary: "The last KEK self-test's report (null before the first run)", response: { 200: Type.Object({ last: Nullable(SelfTestReportSchema) }), ...errorResponses } },
    }, () => ({ last: deps.selfTest.last() }));
    r.post('/v1/sys/self-test', {
      config: { auth: 'root' },
      schema: { tags: ['sys'], summary: 'Self-test every tenant KEK now: unwrapped afresh, it seals a canary the key in memory must open', response: { 200: SelfTestReportSchema, ...errorResponses } },
    }, () => deps.selfTest.run());
  };
}
