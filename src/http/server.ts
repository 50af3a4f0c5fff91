import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import { Type } from 'typebox';
import type { Logger } from '../platform/logger.ts';
import { sendError } from './errors.ts';
import { SECURITY_HEADERS } from './security-headers.ts';
import { validatorCompiler } from './validator.ts';
import { strictJsonBodies } from './json-body.ts';
import { lazySerializers } from './lazy-compilers.ts';
import { clientErrorHandler, HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './client-errors.ts';
import { KeyholdError } from '../errors/index.ts';
import { endConnectionsOnClose } from './draining.ts';

const connectionLimits = { headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1_000 };

export interface HttpOptions {
  logger: Logger;
  bodyLimit: number;
  https?: { cert: Buffer; key: Buffer } | null;
}

/**
 * The fastify options every Keyhold server uses. The benchmark builds its bare baseline from the
 * same function, so the comparison is like for like.
 */
export function serverOptions(opts: HttpOptions): FastifyServerOptions {
  return {
    loggerInstance: opts.logger,
    // Per-request lines are off: the audit trail records every touch; the logger is for operations.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit,
    schemaController: { compilersFactory: { buildSerializer: lazySerializers() } },
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // Off: fastify's shutdown 503 is its own raw body, without a code, request id or the security headers. A request
    // on a connection still open while the server closes is answered by its route, as any other (the node seals
    // itself only once HTTP is closed), with Connection: close, which fastify adds either way.
    return503OnClosing: false,
    routerOptions: { maxParamLength: 200, ignoreTrailingSlash: false },
    // Slowloris: fastify leaves the whole-request timeout off. Node checks the deadlines every second.
    requestTimeout: REQUEST_TIMEOUT_MS,
    clientErrorHandler,
    // A path the router cannot decode or whose parameter is too long: fastify's own answer would echo the path (a webhook's token is part of one).
    frameworkErrors: (err, _request, reply) => sendError(reply, err),
    ...(opts.https ? { https: { ...opts.https, ...connectionLimits } } : { http: connectionLimits }),
  } as FastifyServerOptions;
}

const NO_QUERY = Type.Object({}, { additionalProperties: false });
const NO_BODY = Type.Optional(Type.Object({}, { additionalProperties: false }));
const WITH_BODY = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Unknown fields are rejected (SPEC §14), also where an endpoint takes none: a route without a
 * query string or body schema gets an empty one, so `POST /v1/keys/rotate {"tenant":"acme"}` is
 * UNKNOWN_FIELD rather than a rotation of the tenant the header named. No body, `{}` and JSON
 * null are still fine. A route that takes no token is documented with no security requirement.
 * Registered before the OpenAPI plugin, which reads the schemas as amended.
 */
function refuseWhatIsNotDocumented(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema ?? {};
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // A route no auth hook guards (config.auth absent or "none": auth.ts) takes no token, and the document says so.
    const anonymous = ((route.config as { auth?: string } | undefined)?.auth ?? 'none') === 'none';
    route.schema = {
      ...schema,
      querystring: schema.querystring ?? NO_QUERY,
      ...(schema.body === undefined && methods.some((m) => WITH_BODY.has(m)) ? { body: NO_BODY } : {}),
      ...(anonymous && schema.security === undefined ? { security: [] } : {}),
    };
  });
}

/**
 * Assembles the HTTP server: strict validation (TypeBox; bodies are never coerced and unknown
 * fields are rejected), one error mapper, an OpenAPI document, then each module's routes.
 */
export async function buildHttpServer(opts: HttpOptions, modules: Array<(app: FastifyInstance) => Promise<void>>, beforeRoutes?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const app = Fastify(serverOptions(opts));
  app.setValidatorCompiler(validatorCompiler);
  strictJsonBodies(app);
  // JSON only (the token endpoint's scope adds forms): fastify's text/plain parser would hand a string to every route.
  app.removeContentTypeParser('text/plain');
  refuseWhatIsNotDocumented(app);
  app.setErrorHandler((err, _request, reply) => sendError(reply, err));
  // The path is not echoed: a webhook's token is part of one.
  app.setNotFoundHandler((request, reply) => sendError(reply, new KeyholdError('ROUTE_NOT_FOUND', `no endpoint for ${request.method} at this path; see /v1/openapi.json`)));
  const hsts = opts.https ? 'max-age=31536000' : null;
  const lastAnswerWhileClosing = endConnectionsOnClose(app);
  // Callback style: an async hook costs a promise on every response.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (lastAnswerWhileClosing(request.raw.socket)) reply.header('connection', 'close');
    reply.header('x-request-id', request.id);
    reply.headers(SECURITY_HEADERS);
    // Secure by default: an answer may carry a token or value, and no route's answer is meant to be cached.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (hsts !== null) reply.header('strict-transport-security', hsts);
    done(null, payload);
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Keyhold API', version: '1', description: 'Secrets service for low-code automation platforms' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          // Only the token endpoint takes it: an OAuth client's client_id and client_secret (RFC 6749 §2.3.1).
          clientBasic: { type: 'http', scheme: 'basic' },
        },
      },
      security: [{ bearer: [] }],
    },
  });
  beforeRoutes?.(app);
  for (const mod of modules) await app.register(mod);
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
