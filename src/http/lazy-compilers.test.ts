import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteOptions } from 'fastify';
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler';
import { Type, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { createHarness, TEST_LIMITS, type Harness } from '../../test/helpers/harness.ts';
import { createHttpApp } from '../main/compose.ts';
import { createLogger } from '../platform/logger.ts';
import { lazySerializers } from './lazy-compilers.ts';
import { validatorCompiler } from './validator.ts';

/** A serializer factory that counts what it builds. */
function countingFactory(): { factory: SerializerFactory; built: string[] } {
  const built: string[] = [];
  const real = SerializerSelector();
  return {
    built,
    factory: (external, options) => {
      const compile = real(external, options);
      return (route) => {
        built.push(`${route.method} ${route.url} ${route.httpStatus}`);
        return compile(route);
      };
    },
  };
}

test('a lazy serializer builds nothing until its route first answers, builds once, and writes exactly what the eager one writes (undeclared fields dropped)', () => {
  const { factory, built } = countingFactory();
  const schema = Type.Object({ id: Type.String(), count: Type.Integer() });
  const route = { method: 'GET', url: '/v1/things/:id', httpStatus: '200', schema };
  const lazy = lazySerializers(factory)()(route);
  assert.deepEqual(built, [], 'nothing built at start-up');
  const doc = { id: 'a"b', count: 3, value: 'sk_live_must_not_leave' };
  const eager = SerializerSelector()()(route);
  assert.equal(lazy(doc), eager(doc));
  assert.equal(lazy(doc), '{"id":"a\\"b","count":3}', 'a field the schema does not declare is not written');
  lazy({ id: 'x', count: 1 });
  assert.deepEqual(built, ['GET /v1/things/:id 200'], 'built on the first answer, once');
});

test('a lazy validator compiles on its first request and judges exactly as before', () => {
  const validate = validatorCompiler({ schema: Type.Object({ limit: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }), httpPart: 'querystring', method: 'GET', url: '/x' }) as (v: unknown) => { value?: unknown; error?: unknown };
  assert.deepEqual(validate({ limit: '5' }), { value: { limit: 5 } });
  assert.ok(validate({ limit: '0' }).error);
  assert.ok(validate({ limit: '5', other: '1' }).error);
});

describeRoutes();

/** Since nothing is compiled at start-up, this is where a schema that cannot compile is caught: every route, every part, every status. */
function describeRoutes(): void {
  let h: Harness;
  const routes: RouteOptions[] = [];
  before(async () => {
    h = await createHarness('sqlite');
    const app = await createHttpApp(h.services, { logger: createLogger({ level: 'silent' }), bodyLimit: TEST_LIMITS.maxBodyBytes, onRoute: (r) => void routes.push(r) });
    await app.close();
  });
  after(() => h.close());

  test('every request and response schema of the API compiles', () => {
    assert.ok(routes.length > 100, `saw ${routes.length} routes`);
    const serializers = SerializerSelector()();
    let responses = 0;
    let parts = 0;
    for (const r of routes) {
      const methods = Array.isArray(r.method) ? r.method : [r.method];
      for (const [status, schema] of Object.entries((r.schema?.response ?? {}) as Record<string, unknown>)) {
        assert.doesNotThrow(() => serializers({ method: methods[0]!, url: r.url, httpStatus: status, schema }), `${methods[0]} ${r.url} ${status}`);
        responses++;
      }
      for (const part of ['body', 'querystring', 'params', 'headers'] as const) {
        const schema = r.schema?.[part] as TSchema | undefined;
        if (schema === undefined) continue;
        assert.doesNotThrow(() => Compile(schema), `${methods[0]} ${r.url} ${part}`);
        parts++;
      }
    }
    assert.ok(responses > 100 && parts > 100, `${responses} response and ${parts} request schemas`);
  });
}
