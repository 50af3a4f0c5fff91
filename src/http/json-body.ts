import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { KeyholdError } from '../errors/index.ts';
import { firstDuplicateKey, type DuplicateKey } from '../platform/json-duplicates.ts';
import { printableField } from './errors.ts';

/** Says where the repeat is as the validation messages do (`body.tags`), each key echoed only when it looks like a name. */
function duplicateMessage(dup: DuplicateKey): string {
  const where = ['body', ...dup.path.map((p) => (typeof p === 'number' ? String(p) : printableField(p)))].join('.');
  return `${where} names the field ${printableField(dup.key)} more than once; JSON readers disagree on which one counts, so send each field once`;
}

const PROTOTYPE_KEY = 'the body names "__proto__" (or a "constructor" holding "prototype"), which Keyhold refuses anywhere in a body: such a key could change what an object inherits';

/** Whether JSON.parse takes `text` (after a BOM, which fastify's parser skips): when fastify's parser refused it, only its prototype-key check does that. */
function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces fastify's JSON parser with a strict one. Parsing itself stays fastify's
 * (prototype-poisoning keys are errors, MALFORMED_JSON saying so, not "not valid JSON"); on top of it:
 * - invalid UTF-8 is refused (MALFORMED_JSON): fastify would decode it to U+FFFD and store a value
 *   the client never sent;
 * - an object naming a key twice, at any depth, is refused (DUPLICATE_FIELD): JSON.parse keeps the
 *   last, while a proxy, WAF or policy check in front may read the first, so what was checked and
 *   what is stored could differ. Parsing is done first, so the scan only ever sees valid JSON.
 * Both run before any hook or handler sees a body, so nothing is written.
 */
export function strictJsonBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    if (!isUtf8(body as Buffer)) return done(new KeyholdError('MALFORMED_JSON', 'the body is not valid UTF-8'), undefined);
    const text = (body as Buffer).toString('utf8');
    parseJson(request, text, (err, parsed) => {
      if (err) return done(parsesAsJson(text) ? new KeyholdError('MALFORMED_JSON', PROTOTYPE_KEY) : err, undefined);
      const dup = firstDuplicateKey(text);
      if (dup !== null) return done(new KeyholdError('DUPLICATE_FIELD', duplicateMessage(dup)), undefined);
      done(null, parsed);
    });
  });
}
