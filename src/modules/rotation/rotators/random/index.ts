import { randomInt } from 'node:crypto';
import { fail } from '../../../../errors/index.ts';
import { noSandbox, noSecretRefs, setting, type Rotator } from '../types.ts';

const ALPHABETS: Record<string, string> = {
  alphanumeric: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
  hex: '0123456789abcdef',
  base64url: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
  // Printable ASCII without quotes, backslash and space: safe in URLs' userinfo-free parts, shells and JSON.
  password: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~',
};
const CLASSES = { upper: /[A-Z]/, lower: /[a-z]/, digit: /[0-9]/, symbol: /[^A-Za-z0-9]/ } as const;
const FIELDS = ['length', 'alphabet', 'prefix', 'require'];

/** Reads and checks the settings once. */
function parse(settings: Record<string, unknown>) {
  setting.only(settings, FIELDS);
  const length = setting.int(settings, 'length', 16, 512, 32);
  const alphabetName = setting.str(settings, 'alphabet', { optional: true }) ?? 'alphanumeric';
  const alphabet = ALPHABETS[alphabetName];
  if (!alphabet) fail('ROTATOR_UNAVAILABLE', `settings.alphabet must be one of ${Object.keys(ALPHABETS).join(', ')}`);
  const prefix = setting.str(settings, 'prefix', { optional: true, max: 32 }) ?? '';
  const require = settings.require ?? [];
  if (!Array.isArray(require) || require.some((r) => !(r in CLASSES))) fail('ROTATOR_UNAVAILABLE', `settings.require must list some of ${Object.keys(CLASSES).join(', ')}`);
  for (const r of require as Array<keyof typeof CLASSES>) {
    if (![...alphabet].some((c) => CLASSES[r].test(c))) fail('ROTATOR_UNAVAILABLE', `settings.require asks for ${r} characters the ${alphabetName} alphabet lacks`);
  }
  return { length, alphabet, prefix, require: require as Array<keyof typeof CLASSES> };
}

/** A uniform random string from the alphabet (crypto.randomInt: no modulo bias) meeting every required class. */
export function randomValue(opts: { length: number; alphabet: string; require?: Array<keyof typeof CLASSES> }): string {
  for (;;) {
    let out = '';
    for (let i = 0; i < opts.length; i++) out += opts.alphabet[randomInt(opts.alphabet.length)];
    if ((opts.require ?? []).every((r) => CLASSES[r].test(out))) return out;
  }
}

/** Random token or password: Keyhold is the source, so apply, restore and finalize have nothing to do. */
export function createRandomRotator(): Rotator {
  return {
    type: 'random',
    validate: (settings) => void parse(settings),
    secretRefs: noSecretRefs,
    async generate(rc) {
      const p = parse(rc.settings);
      return { value: p.prefix + randomValue(p), state: {} };
    },
    async apply() {},
    async test(_rc, value) {
      return { ok: value.length > 0, detail: 'generated' };
    },
    async restore() {
      return { ok: true, detail: 'nothing to restore: Keyhold is the source' };
    },
    async finalize() {},
    sandbox: noSandbox,
  };
}
