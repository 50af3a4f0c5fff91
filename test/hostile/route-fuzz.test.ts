import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorCodes } from '../../src/errors/index.ts';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, TEST_LIMITS, type Harness } from '../helpers/harness.ts';
import { variantsOf, type OpenApiDocument, type Variant } from '../helpers/openapi-variants.ts';
import { eachLimit } from '../helpers/each-limit.ts';

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; text: string }

/** One request over a real socket, the path sent exactly as given (already encoded, or deliberately not). */
function send(agent: Agent, port: number, v: Variant, token: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (v.body !== undefined) {
      headers['content-type'] = v.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(v.body));
    }
    const req = httpRequest({ host: '127.0.0.1', port, method: v.method, path: v.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // A server may answer (413) and close before the whole body is sent: that is its right.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? resolve({ status: -1, headers: {}, text: err.code }) : reject(err)));
    req.end(v.body);
  });
}

/** The catalogued code of an error answer (the OAuth token endpoint puts it beside RFC 6749's `error`). */
function codeOf(a: Answer): unknown {
  try {
    const body = JSON.parse(a.text) as { error?: unknown; code?: unknown };
    return typeof body.error === 'string' ? body.code : (body.error as { code?: unknown } | undefined)?.code;
  } catch {
    return undefined;
  }
}

/** What is wrong with an answer, or null: under 500, a catalogued code on every error, no-store and nosniff. */
function problemWith(a: Answer): string | null {
  if (a.status === -1) return null;
  if (a.status >= 500) return `status ${a.status}: ${a.text.slice(0, 300)}`;
  if (a.status < 400) return null;
  const code = codeOf(a);
  if (!errorCodes.includes(code as never)) return `status ${a.status} without a catalogued code: ${a.text.slice(0, 200)}`;
  if (a.headers['cache-control'] !== 'no-store') return `status ${a.status} ${String(code)} without cache-control: no-store`;
  if (a.headers['x-content-type-options'] !== 'nosniff') return `status ${a.status} ${String(code)} without x-content-type-options: nosniff`;
  return null;
}

/** Refusals made before any service ran: a second caller would get the same. */
const REFUSED_AT_THE_DOOR = new Set(['VALIDATION_FAILED', 'UNKNOWN_FIELD', 'MALFORMED_JSON', 'DUPLICATE_FIELD', 'UNSUPPORTED_MEDIA_TYPE', 'BODY_TOO_LARGE', 'ROUTE_NOT_FOUND']);

/**
 * Operations run alone, each with a token of its own: those that end the caller's session or the
 * server's unsealed state, and the tenant-wide KEK operations (their races with each other have
 * suites of their own, src/modules/keys/*-races.test.ts).
 */
const ALONE = new Set(['POST /v1/sys/seal', 'POST /v1/auth/logout', 'POST /v1/keys/rotate', 'POST /v1/keys/rewrap', 'POST /v1/keys/reencrypt']);

/**
 * Reads the OpenAPI document the server serves and sends every operation hostile variants of its
 * request (test/helpers/openapi-variants.ts) over loopback: wrong types, missing and unknown fields,
 * huge and deeply nested JSON, NUL, lone surrogates, look-alikes, numbers past double, broken paths
 * and query strings. Every answer must be under 500 with a catalogued code, and the server must log
 * no error. Variants that got past the door as root are sent again as a tenant admin.
 */
describeEachDialect('every operation in the OpenAPI document answers hostile input with a catalogued 4xx, never a 500', (dialect) => {
  let h: Harness;
  let port: number;
  let agent: Agent;
  let doc: OpenApiDocument;
  let tenantAdmin: string;
  before(async () => {
    h = await createHarness(dialect);
    for (const name of ['FUZZ_SECRET', 'UNTOUCHED']) {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
      await h.services.values.write(h.ctx, name, 'production', { value: `${name.toLowerCase()}-value-1` });
    }
    const admin = await h.services.machines.create(h.ctx, { name: 'fuzz-admin', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: admin.id, role: 'tenant-admin' });
    tenantAdmin = (await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: admin.id, name: 'fuzz-admin', ttlMs: 3_600_000 })).token;
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    port = (h.app.server.address() as AddressInfo).port;
    agent = new Agent({ keepAlive: true, maxSockets: 6 });
    doc = (await h.app.inject({ method: 'GET', url: '/v1/openapi.json' })).json();
  });
  after(async () => {
    agent.destroy();
    await h.close();
  });

  const sizes = { huge: 1_048_576, big: 70_000, nearLimit: TEST_LIMITS.maxBodyBytes - 1_024 };

  test('hostile variants of every operation, as root and then as a tenant admin', async () => {
    const variants = variantsOf(doc, { sizes, skip: (method, path) => ALONE.has(`${method} ${path}`) });
    assert.ok(variants.length > 4000, `only ${variants.length} variants`);
    const problems: string[] = [];
    const pastTheDoor: Variant[] = [];
    await eachLimit(variants, 6, async (v) => {
      const answer = await send(agent, port, v, h.rootToken);
      const problem = problemWith(answer);
      if (problem) problems.push(`root: ${v.label}: ${problem}`);
      if (!REFUSED_AT_THE_DOOR.has(codeOf(answer) as string)) pastTheDoor.push(v);
    });
    await eachLimit(pastTheDoor, 6, async (v) => {
      const problem = problemWith(await send(agent, port, v, tenantAdmin));
      if (problem) problems.push(`tenant admin: ${v.label}: ${problem}`);
    });
    assert.deepEqual(problems.sort(), [], `${problems.length} of ${variants.length + pastTheDoor.length} requests answered badly`);
    const serverErrors = h.logs.lines.filter((line) => /"level":(50|60)/.test(line)).map((line) => line.slice(0, 300));
    assert.deepEqual(serverErrors, [], 'the server logged errors');
    assert.equal((await h.services.values.read(h.ctx, 'UNTOUCHED', 'production')).value, 'untouched-value-1', 'a secret no variant names is as it was');
  });

  test('hostile variants of sealing, signing out and the KEK operations, one at a time, each with a token of its own', async () => {
    const variants = variantsOf(doc, { sizes, skip: (method, path) => !ALONE.has(`${method} ${path}`) });
    const problems: string[] = [];
    for (const v of variants) {
      const { token } = await h.services.tokens.issue({ tenantId: null, kind: 'root', name: 'fuzz' });
      const problem = problemWith(await send(agent, port, v, token));
      if (problem) problems.push(`${v.label}: ${problem}`);
      if (h.services.seal.isSealed()) for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    }
    assert.deepEqual(problems, []);
  });
});
