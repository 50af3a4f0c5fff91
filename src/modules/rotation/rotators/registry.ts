import { fail } from '../../../errors/index.ts';
import { createHmacRotator } from './hmac/index.ts';
import { createHttpRotator } from './http/index.ts';
import { createManualRotator } from './manual/index.ts';
import { createPostgresRotator } from './postgres/index.ts';
import { createRandomRotator } from './random/index.ts';
import type { Rotator } from './types.ts';

/** The rotators a server offers, by type. */
export interface RotatorRegistry {
  get(type: string): Rotator;
  types(): string[];
}

/** A registry over the given rotators (tests add their own; the server uses `builtinRotators`). */
export function createRotatorRegistry(rotators: Rotator[]): RotatorRegistry {
  const byType = new Map(rotators.map((r) => [r.type, r]));
  return {
    get(type) {
      const r = byType.get(type);
      if (!r) fail('ROTATOR_UNAVAILABLE', `unknown rotator "${type}" (known: ${[...byType.keys()].join(', ')})`);
      return r;
    },
    types: () => [...byType.keys()],
  };
}

/** Every shipped rotator; `fetch` is what the http rotator calls providers with. */
export function builtinRotators(deps: { fetch?: typeof fetch } = {}): Rotator[] {
  return [createRandomRotator(), createPostgresRotator(), createHmacRotator(), createHttpRotator(deps), createManualRotator()];
}
