/**
 * keyhold/sdk: the client scripts and services use to read secrets at run time.
 * Depends on nothing but the platform's fetch; imports no server code.
 * @example
 * import { secrets } from 'keyhold/sdk';
 * const apiKey = await secrets.get('PAYMENT_API_KEY'); // KEYHOLD_ADDR, KEYHOLD_TOKEN, KEYHOLD_ENVIRONMENT
 */
import { createKeyhold, type GetOptions, type Keyhold } from './keyhold.ts';

export { createKeyhold, DEFAULT_REFRESH_MS, type GetOptions, type Keyhold, type KeyholdOptions } from './keyhold.ts';
export { CLIENT_ERROR_CODES, KeyholdError, isKeyholdError, type ClientErrorCode } from './errors.ts';

/** What the default export offers: reads only (its lifetime is the process's). */
export interface SecretsReader {
  get(name: string, opts?: GetOptions): Promise<string>;
}

let shared: Keyhold | null = null;

/**
 * A client configured from KEYHOLD_ADDR, KEYHOLD_TOKEN, KEYHOLD_TENANT and KEYHOLD_ENVIRONMENT,
 * built on the first get (a missing setting is reported then, as NOT_CONFIGURED).
 */
export const secrets: SecretsReader = Object.freeze({
  async get(name: string, opts?: GetOptions): Promise<string> {
    shared ??= createKeyhold();
    return shared.get(name, opts);
  },
});
