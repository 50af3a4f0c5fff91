import type { LookupAddress, LookupAllOptions, LookupOneOptions } from 'node:dns';
import { Agent, fetch as undiciFetch } from 'undici';
import { isForbiddenAddress } from '../../platform/addresses.ts';
import { ForbiddenDestinationError, systemLookup, type Lookup } from './address-guard.ts';

type LookupCallback = (err: Error | null, address: string | LookupAddress[], family?: number) => void;

/**
 * The check that cannot be raced: a fetch whose connections resolve names through `lookup` and refuse,
 * before connecting, when any address is a metadata service or link-local. The address checked is the
 * address connected to, so a name that resolves to a public address for `guardedFetch`'s check and to
 * 169.254.169.254 a moment later (DNS rebinding) is refused here, on every new connection.
 *
 * Node's own fetch takes no resolver; this is undici's (the same library Node bundles), with an Agent of
 * its own. Literal addresses never reach a resolver: `guardedFetch` refuses the forbidden ones first.
 */
export function pinnedFetch(lookup: Lookup = systemLookup): typeof fetch {
  const resolve = (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void => {
    lookup(hostname).then((found) => {
      if (found.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
      if (found.some((a) => isForbiddenAddress(a.address))) return callback(new ForbiddenDestinationError(), []);
      const addresses = found.map((a) => ({ address: a.address, family: a.address.includes(':') ? 6 : 4 }))
        .filter((a) => !options.family || a.family === options.family);
      if (addresses.length === 0) return callback(Object.assign(new Error(`no IPv${options.family} address for ${hostname}`), { code: 'ENOTFOUND' }), []);
      if (options.all) return callback(null, addresses);
      return callback(null, addresses[0]!.address, addresses[0]!.family);
    }, (err: Error) => callback(err, []));
  };
  const dispatcher = new Agent({ connect: { lookup: resolve } });
  return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    // A Request of Node's own fetch is not one of undici's: callers pass the URL and the init.
    if (typeof input !== 'string' && !(input instanceof URL)) throw new TypeError('pinnedFetch takes a URL (string or URL) and an init');
    return undiciFetch(input, { ...(init as object), dispatcher } as never);
  }) as unknown as typeof fetch;
}
