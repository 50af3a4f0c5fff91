import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler';

/**
 * Fastify's own response serializers (fast-json-stringify), each built when its route first answers
 * with that status instead of when the server starts. Building all of them up front was most of a
 * start-up's CPU (about 200 ms for the whole API), paid again by every restart, every node that
 * joins, and every test server, for routes most of them never answer. A serializer is the same
 * function either way; the first answer of a route pays a millisecond or two for it.
 * (`every response schema compiles` in lazy-compilers.test.ts keeps a broken schema from hiding until then.)
 */
export function lazySerializers(factory: SerializerFactory = SerializerSelector()): SerializerFactory {
  return (externalSchemas, options) => {
    const compile = factory(externalSchemas, options);
    return (route) => {
      let serialize: ((doc: unknown) => string) | null = null;
      return (doc) => (serialize ??= compile(route))(doc);
    };
  };
}
