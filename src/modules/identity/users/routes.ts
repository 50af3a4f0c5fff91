import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requestSourceOf, tenantContextOf } from '../../../http/auth.ts';
import { errorResponses } from '../../../http/schemas.ts';
import { fail } from '../../../errors/index.ts';
import type { LoginService } from './login-service.ts';
import { MAX_TICKET_LENGTH, MAX_TICKET_TTL_SECONDS, MIN_TICKET_TTL_SECONDS } from './enrolment-ticket.ts';
import { MAX_PASSWORD_LENGTH } from './passwords.ts';
import type { TotpService } from './totp-service.ts';
import { MAX_EMAIL_LENGTH, MAX_USERNAME_LENGTH } from './types.ts';
import type { UserService } from './user-service.ts';
import { isoTime as iso } from '../../../platform/clock.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Password = Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH });
const Code = Type.String({ minLength: 1, maxLength: 16, description: 'The 6-digit code from the authenticator app' });
const UserSchema = Type.Object({
  id: Type.String(), username: Type.String(), totpEnabled: Type.Boolean(),
  createdAt: Type.String(), passwordChangedAt: Type.String(), disabledAt: Nullable(Type.String()),
  email: Nullable(Type.String({ description: 'Where notifications reach them; null: none' })),
});
const Email = Type.String({ minLength: 1, maxLength: MAX_EMAIL_LENGTH, description: 'A bare address (ann@example.com) where notifications reach the user' });
const Ticket = Type.String({ minLength: 1, maxLength: MAX_TICKET_LENGTH, description: 'The enrolment ticket (khe_...) an admin issued' });
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

/** Login and the signed-in user's own session under /v1/auth, and user administration under /v1/users. */
export function userRoutes(deps: {
  users: UserService;
  totp: TotpService;
  logins: LoginService;
  tenants: { findById(id: string): Promise<{ name: string } | null> };
}) {
  const { users, totp, logins } = deps;
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };

    r.post('/v1/auth/login', {
      schema: {
        tags: ['auth'], summary: 'Sign in with a password (and the TOTP code, once enrolled); returns a session token once',
        security: [],
        body: Type.Object({
          tenant: Type.String({ minLength: 1, maxLength: 63 }),
          username: Type.String({ minLength: 1, maxLength: MAX_USERNAME_LENGTH }),
          password: Password,
          totp: Type.Optional(Code),
        }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            token: Type.String(), sessionId: Type.String(), userId: Type.String(), username: Type.String(), tenant: Type.String(),
            mfaAt: Nullable(Type.String()), expiresAt: Type.String(),
          }),
          ...errorResponses,
        },
      },
    }, async (req, reply) => reply.header('cache-control', 'no-store').send(await logins.login(req.body, requestSourceOf(req))));

    r.post('/v1/auth/logout', {
      config: tenant,
      schema: { tags: ['auth'], summary: 'End this session', response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await logins.logout(tenantContextOf(req));
      return reply.code(204).send(null);
    });

    r.get('/v1/auth/whoami', {
      config: tenant,
      schema: {
        tags: ['auth'], summary: 'Who the presented credential speaks for',
        response: {
          200: Type.Object({
            type: Type.String(), id: Type.String(), name: Type.String(), tenant: Type.String(),
            mfaAt: Nullable(Type.String()), expiresAt: Nullable(Type.String()),
          }),
          ...errorResponses,
        },
      },
    }, async (req) => {
      const ctx = tenantContextOf(req);
      const principal = req.principal ?? fail('UNAUTHENTICATED', 'authentication required');
      const t = (await deps.tenants.findById(ctx.tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
      return { type: principal.type, id: principal.id, name: principal.name, tenant: t.name, mfaAt: iso(principal.mfaAt), expiresAt: iso(principal.expiresAt) };
    });

    r.post('/v1/auth/step-up', {
      config: tenant,
      schema: {
        tags: ['auth'], summary: 'Verify a fresh TOTP code; this session may then take step-up actions for a while',
        body: Type.Object({ code: Code }, { additionalProperties: false }),
        response: { 200: Type.Object({ mfaAt: Type.String() }), ...errorResponses },
      },
    }, (req) => totp.stepUp(tenantContextOf(req), req.body.code));

    r.post('/v1/auth/password', {
      config: tenant,
      schema: {
        tags: ['auth'], summary: 'Change your own password (ends your other sessions)',
        body: Type.Object({ current: Password, new: Password }, { additionalProperties: false }),
        response: { 200: Type.Object({ revokedSessions: Type.Integer() }), ...errorResponses },
      },
    }, (req) => users.changePassword(tenantContextOf(req), req.body));

    r.post('/v1/auth/totp/enroll', {
      config: tenant,
      schema: {
        tags: ['auth'], summary: 'Start TOTP enrolment: the secret and otpauth URI are shown once. A first factor needs the enrolment ticket from an admin; replacing one needs a fresh step-up',
        body: Type.Optional(Type.Object({ ticket: Type.Optional(Ticket) }, { additionalProperties: false })),
        response: { 200: Type.Object({ secret: Type.String(), uri: Type.String() }), ...errorResponses },
      },
    }, async (req, reply) => reply.header('cache-control', 'no-store').send(await totp.enrol(tenantContextOf(req), req.body ?? {})));

    r.post('/v1/auth/totp/confirm', {
      config: tenant,
      schema: {
        tags: ['auth'], summary: 'Confirm TOTP enrolment with a code from the app',
        body: Type.Object({ code: Code }, { additionalProperties: false }),
        response: { 200: Type.Object({ totpEnabled: Type.Boolean(), mfaAt: Type.String() }), ...errorResponses },
      },
    }, (req) => totp.confirm(tenantContextOf(req), req.body.code));

    r.post('/v1/users', {
      config: tenant,
      schema: {
        tags: ['users'], summary: 'Create a user (tenant admin)',
        body: Type.Object({ username: Type.String({ minLength: 1, maxLength: MAX_USERNAME_LENGTH }), password: Password, email: Type.Optional(Email) }, { additionalProperties: false }),
        response: { 201: UserSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await users.create(tenantContextOf(req), req.body)));

    r.get('/v1/users', {
      config: tenant,
      schema: { tags: ['users'], summary: 'List the users of the tenant (tenant admin)', response: { 200: Type.Object({ items: Type.Array(UserSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await users.list(tenantContextOf(req)) }));

    r.get('/v1/users/:id', {
      config: tenant,
      schema: { tags: ['users'], summary: 'Describe a user (tenant admin)', params: IdParams, response: { 200: UserSchema, ...errorResponses } },
    }, (req) => users.get(tenantContextOf(req), req.params.id));

    r.post('/v1/users/:id/totp-ticket', {
      config: tenant,
      schema: {
        tags: ['users'], summary: 'Issue a one-time TOTP enrolment ticket for the user\'s first factor, shown once; replaces any earlier one (tenant admin)',
        params: IdParams,
        body: Type.Optional(Type.Object({
          ttlSeconds: Type.Optional(Type.Integer({ minimum: MIN_TICKET_TTL_SECONDS, maximum: MAX_TICKET_TTL_SECONDS, description: 'Default 24 h' })),
          resetFactor: Type.Optional(Type.Boolean({ description: 'The user lost their authenticator: remove their factor and end their sessions, so they sign in with the password and enrol anew with this ticket' })),
        }, { additionalProperties: false })),
        response: { 200: Type.Object({ ticket: Type.String({ description: 'Shown once: only its hash is stored' }), expiresAt: Type.String() }), ...errorResponses },
      },
    }, async (req, reply) => reply.header('cache-control', 'no-store').send(await users.issueTotpTicket(tenantContextOf(req), req.params.id, req.body ?? {})));

    r.post('/v1/users/:id/email', {
      config: tenant,
      schema: {
        tags: ['users'], summary: 'Set or clear (null) the user\'s e-mail address, where notifications reach them (tenant admin)',
        params: IdParams,
        body: Type.Object({ email: Nullable(Email) }, { additionalProperties: false }),
        response: { 200: UserSchema, ...errorResponses },
      },
    }, (req) => users.setEmail(tenantContextOf(req), req.params.id, req.body.email));

    r.post('/v1/users/:id/disable', {
      config: tenant,
      schema: { tags: ['users'], summary: 'Disable a user and end their sessions at once (tenant admin)', params: IdParams, response: { 200: UserSchema, ...errorResponses } },
    }, (req) => users.disable(tenantContextOf(req), req.params.id));
  };
}
