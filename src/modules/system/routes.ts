import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses } from '../../http/schemas.ts';
import { isKeyholdError } from '../../errors/index.ts';
import { addressBlock } from '../../platform/addresses.ts';
import type { Clock } from '../../platform/clock.ts';
import { createAttemptGuard } from '../identity/users/attempts.ts';
import type { SystemService } from './system-service.ts';

const Status = Type.Object({
  initialized: Type.Boolean(), sealed: Type.Boolean(), type: Type.Union([Type.String(), Type.Null()]),
  threshold: Type.Integer(), shares: Type.Integer(), progress: Type.Integer(),
  auditWritable: Type.Boolean({ description: 'False while the audit log cannot be written: every audited action is then refused (AUDIT_UNAVAILABLE)' }),
  auditAppendOnly: Type.Union([Type.Literal('privileges'), Type.Literal('trigger')], {
    description: "privileges: the server's database user cannot change, remove or truncate audit rows, nor disable the trigger; trigger: only a trigger that user could disable",
  }),
  auditTampered: Type.Boolean({ description: 'True after this node\'s checkpointer refused to sign (AUDIT_TAMPERED: an event the server did not write), until it signs again; run audit verify' }),
});

/**
 * Unseal submissions per source address (an IPv6 client's /64) per minute. Operators submit a few shares;
 * the route needs no credential, and each submission is an audit event, so without a bound anyone who
 * reaches the port could grow the trail at will. Refusals past the bound are not recorded, which is the point.
 */
export const UNSEAL_ATTEMPTS_PER_MINUTE = 30;

/** Init, unseal, seal, status, health: the only routes a sealed server answers. */
export function systemRoutes(deps: { system: SystemService; clock: Clock }) {
  const unsealAttempts = createAttemptGuard({ limit: UNSEAL_ATTEMPTS_PER_MINUTE, windowMs: 60_000 }, deps.clock,
    'too many unseal submissions from this address; wait before trying again');
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.get('/v1/health', { schema: { tags: ['sys'], summary: 'Liveness (200 even when sealed)' } }, async () => ({ ok: true }));

    r.get('/v1/sys/status', {
      schema: { tags: ['sys'], summary: 'Initialised? Sealed? Unseal progress; is the audit log writable?', response: { 200: Status } },
    }, () => deps.system.status());

    r.post('/v1/sys/init', {
      schema: {
        tags: ['sys'], summary: 'Generate the root key, split it into shares, create the root token (all shown once)',
        body: Type.Object({
          shares: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
          threshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ shares: Type.Array(Type.String()), threshold: Type.Integer(), rootToken: Type.String() }), ...errorResponses },
      },
    }, async (req, reply) => {
      const result = await deps.system.initialize({ type: 'shamir', shares: req.body.shares ?? 5, threshold: req.body.threshold ?? 3 });
      return reply.header('cache-control', 'no-store').send(result);
    });

    r.post('/v1/sys/unseal', {
      schema: {
        tags: ['sys'], summary: 'Submit one unseal share',
        body: Type.Object({ share: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        response: { 200: Status, ...errorResponses },
      },
    }, (req) => {
      unsealAttempts.spend(`unseal:ip:${addressBlock(req.ip)}`);
      return deps.system.unseal(req.body.share);
    });

    r.post('/v1/sys/seal', {
      config: { auth: 'root' },
      schema: { tags: ['sys'], summary: 'Seal: drop the root key and every cached key from memory (always; AUDIT_UNAVAILABLE then means sealed without its event)', response: { 200: Status, ...errorResponses } },
    }, async (req) => {
      try {
        await deps.system.seal({ type: 'root', id: req.principal?.id ?? 'unknown' });
      } catch (err) {
        // Sealed all the same: the operator must know the trail lacks this seal.
        if (isKeyholdError(err) && err.code === 'AUDIT_UNAVAILABLE') req.log.error({ requestId: req.id }, 'sealed, but the seal event could not be recorded: the audit log is not writable');
        throw err;
      }
      return deps.system.status();
    });
  };
}
