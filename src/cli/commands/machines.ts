import { int, positionals, str, strings, UsageError } from '../args.ts';
import { route } from '../client.ts';
import { refuseDuplicateKeys } from '../files.ts';
import type { Command, Flags, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';

/** The `machines` group: machine identities of the tenant (admin). Their tokens come from `keyhold token exchange`. */

interface Machine {
  id: string; name: string; kind: 'client_secret' | 'oidc'; clientId: string; tokenTtlSeconds: number; ownerUserId: string | null;
  oidc: { issuer: string; jwksUrl: string; audience: string; subject: string | null; claims: Record<string, unknown>; boundClaimsType: string; maxAgeSeconds: number } | null;
  createdAt: string; disabledAt: string | null; clientSecret?: string;
}

const OIDC_FLAGS = ['oidc-issuer', 'jwks-url', 'audience', 'subject', 'claim', 'bound-claims-type', 'max-age'] as const;
const CLAIMS_TYPES = ['string', 'glob'];

/** Binds one more allowed value of a claim: a second value (or a JSON list) makes the binding a list. */
function addValue(claims: Record<string, unknown>, name: string, value: unknown): void {
  if (!Object.hasOwn(claims, name)) {
    claims[name] = value;
    return;
  }
  const had = claims[name];
  claims[name] = [...(Array.isArray(had) ? had : [had]), ...(Array.isArray(value) ? value : [value])];
}

/**
 * "k=v" binds the string v; "k:=JSON" binds a JSON value (a number, true, a list of allowed values...).
 * Naming k again adds an allowed value (any one then matches) rather than silently replacing the first.
 */
export function parseClaims(raw: string[]): Record<string, unknown> {
  // No prototype: a claim named like one of Object.prototype's members (constructor, toString) is just a key.
  const claims: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const item of raw) {
    const json = /^([^=:]+):=(.*)$/s.exec(item);
    const plain = /^([^=]+)=(.*)$/s.exec(item);
    // On a plain object it would have been dropped or replaced the prototype; the server refuses it in any body.
    if ((json ?? plain)?.[1] === '__proto__') {
      throw new UsageError('--claim __proto__: Keyhold refuses a claim named __proto__ (the server refuses the name anywhere in a request body)', 'no identity provider issues such a claim; bind --subject or another claim');
    }
    if (json) {
      try {
        addValue(claims, json[1]!, JSON.parse(json[2]!));
      } catch {
        throw new UsageError(`--claim ${json[1]}:= needs a JSON value (got "${json[2]}")`, 'e.g. --claim run_attempt:=1 or --claim ref=refs/heads/main');
      }
      refuseDuplicateKeys(json[2]!, `--claim ${json[1]}`);
    } else if (plain) {
      addValue(claims, plain[1]!, plain[2]!);
    } else {
      throw new UsageError(`--claim takes NAME=VALUE or NAME:=JSON (got "${item}")`, 'e.g. --claim repository=acme/app');
    }
  }
  return claims;
}

function oidcBinding(flags: Flags) {
  const issuer = str(flags, 'oidc-issuer');
  const given = OIDC_FLAGS.filter((f) => flags[f] !== undefined);
  if (issuer === undefined) {
    if (given.length > 0) throw new UsageError(`--${given[0]} needs --oidc-issuer (it applies to OIDC identities only)`);
    return undefined;
  }
  const jwksUrl = str(flags, 'jwks-url');
  const audience = str(flags, 'audience');
  if (!jwksUrl || !audience) throw new UsageError('an OIDC identity needs --oidc-issuer, --jwks-url and --audience together');
  const subject = str(flags, 'subject');
  const claims = parseClaims(strings(flags, 'claim'));
  // The server refuses it too; said here before a round trip, and in the flags' own words.
  if (subject === undefined && Object.keys(claims).length === 0) {
    throw new UsageError('an OIDC identity must be bound to --subject or at least one --claim K=V: issuer and audience alone admit every workload of a shared issuer');
  }
  const maxAge = int(flags, 'max-age', 60, 86_400);
  const claimsType = str(flags, 'bound-claims-type');
  if (claimsType !== undefined && !CLAIMS_TYPES.includes(claimsType)) throw new UsageError(`--bound-claims-type is string or glob (got "${claimsType}")`);
  return {
    issuer, jwksUrl, audience, ...(subject !== undefined ? { subject } : {}),
    ...(claimsType !== undefined ? { boundClaimsType: claimsType } : {}), ...(Object.keys(claims).length > 0 ? { claims } : {}),
    ...(maxAge !== undefined ? { maxAgeSeconds: maxAge } : {}),
  };
}

function describeMachine(m: Machine): string {
  return fields([
    ['Name', m.name], ['ID', m.id], ['Kind', m.kind], ['Client ID', m.clientId], ['Token lifetime', `${m.tokenTtlSeconds}s`],
    ['Owner', m.ownerUserId], ['Created', time(m.createdAt)], ['Disabled', time(m.disabledAt)],
    ...(m.oidc ? [
      ['Issuer', m.oidc.issuer], ['JWKS URL', m.oidc.jwksUrl], ['Audience', m.oidc.audience], ['Subject', m.oidc.subject],
      ['Bound claims', Object.keys(m.oidc.claims).length === 0 ? null : JSON.stringify(m.oidc.claims)],
      ['Claims type', m.oidc.boundClaimsType], ['Max JWT age', `${m.oidc.maxAgeSeconds}s`],
    ] as Array<[string, string | null]> : []),
  ]);
}

/** The secret, once, with what to do with it. */
function secretOnce(m: Machine, verb: string): string {
  return [
    `${verb} machine identity ${m.name} (${m.id}).`,
    '',
    `Client ID:     ${m.clientId}`,
    `Client secret: ${m.clientSecret}`,
    '',
    'WARNING: the client secret is shown ONCE and cannot be recovered; store it in the workload\'s own secret store.',
    `Get a token with: keyhold token exchange --client-id ${m.clientId}   (secret on stdin)`,
  ].join('\n');
}

const create: Command = {
  name: 'create',
  summary: 'Create a machine identity: a client secret (shown once), or trust in an OIDC provider',
  usage: 'machines create NAME [--oidc-issuer URL --jwks-url URL --audience A (--subject S | --claim K=V ...) [--bound-claims-type string|glob] [--max-age SECONDS]] [--ttl SECONDS] [--owner USER_ID]',
  help: [
    'Without --oidc-issuer: a client-secret identity; its secret is printed ONCE.',
    'With --oidc-issuer, --jwks-url and --audience: the identity accepts JWTs from that provider (e.g. a CI',
    'system) signed by a key at the JWKS URL (https; http only on loopback), for that audience.',
    '--subject S      the JWT\'s sub must equal S',
    '--claim K=V      the JWT must carry claim K with the string V (repeatable); K:=JSON for other values;',
    '                 naming K again, or K:=[...], allows any of the values (a list claim matches by any element)',
    '--bound-claims-type string|glob  string (default): values match exactly; glob: * in a value matches any',
    '                 run of characters, : and / included (end a prefix with its separator: repo:acme/app:*)',
    '--max-age SECONDS  a JWT is accepted at most this long after its iat, whatever its exp (default 3600)',
    '--ttl SECONDS    lifetime of the access tokens it gets (default: the server\'s, 15 minutes; a JWT\'s token ends with the JWT)',
    '--owner USER_ID  the person who owns this identity',
  ],
  options: {
    'oidc-issuer': { type: 'string' }, 'jwks-url': { type: 'string' }, audience: { type: 'string' }, subject: { type: 'string' },
    claim: { type: 'string', multiple: true }, 'bound-claims-type': { type: 'string' }, 'max-age': { type: 'string' }, ttl: { type: 'string' }, owner: { type: 'string' },
  },
  async run({ args, flags, api, out }) {
    const [name] = positionals(args, ['NAME'], create.usage) as [string];
    const oidc = oidcBinding(flags);
    const ttl = int(flags, 'ttl', 60, 86_400);
    const owner = str(flags, 'owner');
    const body = {
      name, kind: oidc ? 'oidc' : 'client_secret',
      ...(oidc ? { oidc } : {}), ...(ttl !== undefined ? { tokenTtlSeconds: ttl } : {}), ...(owner !== undefined ? { ownerUserId: owner } : {}),
    };
    const m = await api.call<Machine>('POST', '/v1/machines', { body });
    out.result(m, () => (m.clientSecret !== undefined
      ? secretOnce(m, 'Created')
      : `Created machine identity ${m.name} (${m.id}), trusting ${m.oidc?.issuer}.\nClient ID: ${m.clientId}\n` +
        `Get a token with: keyhold token exchange --client-id ${m.clientId} --jwt   (the provider's JWT on stdin)`));
  },
};

const list: Command = {
  name: 'list',
  summary: 'List machine identities',
  usage: 'machines list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: Machine[] }>('GET', '/v1/machines');
    out.result(res, () => (res.items.length === 0 ? 'No machine identities.' : table(
      ['NAME', 'ID', 'KIND', 'CLIENT ID', 'TTL', 'STATE'],
      res.items.map((m) => [m.name, m.id, m.kind, m.clientId, `${m.tokenTtlSeconds}s`, m.disabledAt ? `disabled ${time(m.disabledAt)}` : 'active']),
    )));
  },
};

const describe: Command = {
  name: 'describe',
  summary: 'Show a machine identity',
  usage: 'machines describe ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], describe.usage) as [string];
    const m = await api.call<Machine>('GET', route`/v1/machines/${id}`);
    out.result(m, () => describeMachine(m));
  },
};

const tokens: Command = {
  name: 'tokens',
  summary: 'List the live access tokens of a machine identity (ids, to revoke one)',
  usage: 'machines tokens ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], tokens.usage) as [string];
    const res = await api.call<{ items: Array<{ id: string; createdAt: string; expiresAt: string | null }> }>('GET', route`/v1/machines/${id}/tokens`);
    out.result(res, () => (res.items.length === 0 ? 'No live tokens.' : [
      table(['TOKEN ID', 'ISSUED', 'EXPIRES'], res.items.map((t) => [t.id, time(t.createdAt), time(t.expiresAt)])),
      '',
      'Revoke one with: keyhold token revoke TOKEN_ID',
    ].join('\n')));
  },
};

const disable: Command = {
  name: 'disable',
  summary: 'Disable a machine identity; its live tokens stop working at once',
  usage: 'machines disable ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], disable.usage) as [string];
    const m = await api.call<Machine>('POST', route`/v1/machines/${id}/disable`);
    out.result(m, () => `Disabled machine identity ${m.name}; its tokens were revoked.`);
  },
};

const rotateSecret: Command = {
  name: 'rotate-secret',
  summary: 'Issue a new client secret (shown once); the old one stops working, live tokens stay valid',
  usage: 'machines rotate-secret ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], rotateSecret.usage) as [string];
    const m = await api.call<Machine>('POST', route`/v1/machines/${id}/rotate-secret`);
    out.result(m, () => secretOnce(m, 'Rotated the secret of'));
  },
};

export const machinesGroup: Group = {
  name: 'machines',
  summary: 'Machine identities (client secrets or OIDC federation) and their tokens',
  commands: [create, list, describe, tokens, disable, rotateSecret],
};
