import { firstDuplicateKey } from '../../../platform/json-duplicates.ts';

/**
 * Parses JSON that carries a credential (a source's answer, a stored value): `undefined` when the
 * text is not JSON. Throws when an object in it names a key twice: JSON.parse keeps the last, the
 * source or a dependent may read the first, so which credential the document holds depends on who
 * reads it, and none of it is used. The message names the key only when it is one of `fields` (the
 * format's own), never a value or any other key: either may be a credential.
 * @example parseCredentialJson('{"password":"a","password":"b"}', 'the value', ['password']) // throws: the value names "password" twice…
 */
export function parseCredentialJson(text: string, what: string, fields: readonly string[]): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const dup = firstDuplicateKey(text);
  if (dup !== null) {
    const named = fields.includes(dup.key) ? `"${dup.key}"` : 'a field';
    throw new Error(`${what} names ${named} twice in one object; JSON readers disagree on which one counts, so Keyhold used none of it`);
  }
  return value;
}
