import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Services } from '../../src/main/compose.ts';
import { createKnownValues, type KnownValues } from '../../src/modules/redaction/index.ts';
import type { CanaryKind, CanaryRegistry } from './canaries.ts';

/*
 * Where the harness sees credentials go by, so each is registered as a canary when it is created or
 * received: at the service objects every caller (routes, jobs, tests) goes through, and at the
 * in-process HTTP app (what a request carried, and every error body it got back).
 */

/** A secret value is registered as the value service sees it: on write (before it runs, so destroyed and refused versions count) and on read. */
export function recordingKnownValues(canaries: CanaryRegistry): KnownValues {
  const known = createKnownValues();
  return {
    ...known,
    add: (value) => known.add(canaries.add('secret value', value)),
    setTenant(tenantId, redactor, values) {
      for (const value of values) canaries.add('secret value', value);
      known.setTenant(tenantId, redactor, values);
    },
  };
}

type AnyMethod = (...args: any[]) => any;

/**
 * A jwt-bearer assertion, when it is one: a JWS in compact form with a signature. Anything else sent
 * there (a fuzzer's string, 'not-a-jwt') is no credential, and fuzzers send the same strings elsewhere.
 */
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{16,}$/;
const assertionOf = (value: unknown) => (typeof value === 'string' && JWS_COMPACT.test(value) ? value : undefined);

/**
 * Replaces `obj[method]` in place (the routes and other services hold the same object), calling
 * `before` with the arguments and `after` with the resolved result. A method that is not there fails
 * harness creation: a tap that silently stops registering would make the scan pass for nothing.
 */
function tap(obj: object, method: string, hooks: { before?: (args: any[]) => void; after?: (result: any, args: any[]) => void }): void {
  const target = obj as Record<string, AnyMethod>;
  const original = target[method];
  if (typeof original !== 'function') throw new Error(`credential tap: no method ${method}`);
  target[method] = function (this: unknown, ...args: any[]) {
    hooks.before?.(args);
    const result = original.apply(obj, args);
    if (!hooks.after) return result;
    return Promise.resolve(result).then((resolved) => {
      hooks.after!(resolved, args);
      return resolved;
    });
  };
}

/** Registers every credential the services issue or are handed. Call before anything is issued (initialisation). */
export function tapServices(services: Services, canaries: CanaryRegistry): void {
  const add = canaries.add;
  tap(services.tokens, 'issue', {
    after: (r, [opts]) => add(opts.kind === 'root' ? 'root token' : opts.environment !== undefined ? 'run token' : 'machine token', r.token),
  });
  tap(services.sessions, 'issue', { after: (r) => add('session token', r.token) });
  for (const m of ['create', 'rotateSecret']) tap(services.machines, m, { after: (r) => add('client secret', r.clientSecret) });
  tap(services.tokenExchange, 'exchange', {
    before: ([req]) => (add('client secret', req.client_secret), add('JWT assertion', assertionOf(req.assertion))),
    after: (r) => r.ok && add('machine token', r.token.access_token),
  });
  tap(services.users, 'create', { before: ([, input]) => add('password', input.password) });
  tap(services.users, 'changePassword', { before: ([, input]) => (add('password', input.current), add('password', input.new)) });
  tap(services.logins, 'login', { before: ([input]) => (add('password', input.password), add('TOTP code', input.totp)) });
  tap(services.totp, 'enrol', { before: ([, input]) => add('TOTP enrolment ticket', input?.ticket), after: (r) => add('TOTP secret', r.secret) });
  tap(services.users, 'issueTotpTicket', { after: (r) => add('TOTP enrolment ticket', r.ticket) });
  for (const m of ['confirm', 'stepUp']) tap(services.totp, m, { before: ([, code]) => add('TOTP code', code) });
  tap(services.system, 'initialize', { after: (r) => r.shares.forEach((s: string) => add('unseal share', s)) });
  tap(services.system, 'unseal', { before: ([share]) => add('unseal share', share) });
  tap(services.rootGeneration, 'start', { after: (r) => add('one-time key', r.otp) });
  tap(services.rootGeneration, 'submit', { before: ([, , share]) => add('unseal share', share) });
  for (const m of ['create', 'update', 'rotateWebhookToken']) tap(services.automations, m, { after: (r) => add('webhook token', r.webhookToken) });
}

const KIND_OF_PREFIX: Array<[string, CanaryKind]> = [
  ['khcs_', 'client secret'], ['khs_', 'session token'], ['khe_', 'TOTP enrolment ticket'], ['whk_', 'webhook token'], ['kh_', 'machine token'],
];
/** A credential-shaped string anywhere in a URL or header: prefix, then enough random characters. */
const CREDENTIAL_SHAPE = /(?:khcs_|khs_|khe_|whk_|kh_)[A-Za-z0-9_-]{20,}/g;

function addShaped(canaries: CanaryRegistry, text: string): void {
  for (const [match] of text.matchAll(CREDENTIAL_SHAPE)) canaries.add(KIND_OF_PREFIX.find(([p]) => match.startsWith(p))![1], match);
}

/** Request fields that carry a credential, by the route family they are sent to. */
function registerPayload(canaries: CanaryRegistry, url: string, payload: unknown): void {
  let body = payload;
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    try {
      body = JSON.parse(body.toString());
    } catch {
      return;
    }
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
  const b = body as Record<string, unknown>;
  canaries.add('password', b.password);
  canaries.add('client secret', b.client_secret);
  canaries.add('unseal share', b.share);
  canaries.add('TOTP code', b.totp);
  if (url.includes('/values/')) canaries.add('secret value', b.value);
  if (url.startsWith('/v1/auth/')) {
    canaries.add('JWT assertion', assertionOf(b.assertion));
    canaries.add('TOTP code', b.code);
    canaries.add('TOTP enrolment ticket', b.ticket);
    canaries.add('password', b.current);
    canaries.add('password', b.new);
  }
}

/**
 * Wraps `app.inject` (the promise form every test uses): registers what each request carries, and
 * keeps every error body (status >= 400) for the scan at close, labelled without its URL (a URL can
 * hold a webhook token).
 */
export function tapInject(app: FastifyInstance, canaries: CanaryRegistry, errorBodies: Array<{ where: string; text: string }>): void {
  const inject = app.inject.bind(app) as (opts: InjectOptions | string) => Promise<LightMyRequestResponse>;
  const original = app.inject;
  app.inject = function (opts?: InjectOptions | string, callback?: unknown) {
    if (opts === undefined || callback !== undefined) return (original as AnyMethod).apply(app, [opts, callback].filter((a) => a !== undefined));
    const url = typeof opts === 'string' ? opts : String(opts.url ?? opts.path ?? '');
    addShaped(canaries, url);
    if (typeof opts === 'object') {
      for (const value of Object.values(opts.headers ?? {})) {
        if (typeof value !== 'string') continue;
        addShaped(canaries, value);
        const basic = /^Basic\s+(\S+)/i.exec(value);
        if (basic) addShaped(canaries, Buffer.from(basic[1]!, 'base64').toString('utf8'));
      }
      registerPayload(canaries, url, opts.payload ?? opts.body);
    }
    return inject(opts).then((res) => {
      if (res.statusCode >= 400) errorBodies.push({ where: `error body #${errorBodies.length + 1} (${typeof opts === 'string' ? 'GET' : opts.method ?? 'GET'}, status ${res.statusCode})`, text: res.body });
      return res;
    });
  } as typeof app.inject;
}
