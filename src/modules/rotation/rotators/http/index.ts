import { fail } from '../../../../errors/index.ts';
import { isForbiddenHost, isLoopbackHost } from '../../../../platform/addresses.ts';
import { parseCredentialJson } from '../credential-json.ts';
import { setting, type Rotator, type RotatorContext } from '../types.ts';

const FIELDS = ['url', 'sandboxUrl', 'tokenSecret', 'timeoutMs'];
const MAX_RESPONSE = 64 * 1024;

/** https anywhere, plain http only to loopback: a credential is never sent in the clear over a network. */
function checkUrl(field: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    fail('ROTATOR_UNAVAILABLE', `settings.${field} is not a URL`);
  }
  if (url.username || url.password) fail('ROTATOR_UNAVAILABLE', `settings.${field} must not carry credentials; use settings.tokenSecret`);
  // Names are checked again at every call, on the addresses connected to (the server's guarded fetch).
  if (isForbiddenHost(url.hostname)) fail('ROTATOR_UNAVAILABLE', `settings.${field} names a link-local or cloud metadata address, which Keyhold never calls`);
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))) return url;
  fail('ROTATOR_UNAVAILABLE', `settings.${field} must be https (plain http only to loopback)`);
}

/**
 * External HTTP rotator: the provider (or a small adapter in front of it) issues credentials.
 * Keyhold POSTs JSON to `<url>/issue` → `{ id, value }`, `<url>/activate` `{ id }`, `<url>/test`
 * (the new credential as the bearer token), and `<url>/revoke` `{ id }`: the new one on rollback,
 * the old one after promotion. A rehearsal uses `sandboxUrl` instead and never calls `url`.
 */
export function createHttpRotator(deps: { fetch?: typeof fetch } = {}): Rotator {
  const doFetch = deps.fetch ?? fetch;
  const parse = (s: Record<string, unknown>) => {
    setting.only(s, FIELDS);
    const url = checkUrl('url', setting.str(s, 'url')!);
    const sandboxUrl = s.sandboxUrl === undefined ? null : checkUrl('sandboxUrl', setting.str(s, 'sandboxUrl')!);
    const tokenSecret = setting.str(s, 'tokenSecret', { optional: true, max: 128 });
    return { url, sandboxUrl, tokenSecret, timeoutMs: setting.int(s, 'timeoutMs', 100, 120_000, 10_000) };
  };

  /** Only /issue's answer is read (`text`); the others count by their status alone. */
  async function call(rc: RotatorContext, path: string, body: unknown, bearer?: string): Promise<{ status: number; text: string }> {
    const p = parse(rc.settings);
    const base = rc.rehearsal ? p.sandboxUrl : p.url;
    if (!base) fail('ROTATOR_UNAVAILABLE', 'settings.sandboxUrl is required to rehearse an external HTTP rotation');
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const token = bearer ?? (p.tokenSecret ? await rc.resolve(p.tokenSecret) : undefined);
    if (token) headers.authorization = `Bearer ${token}`;
    const target = new URL(base.pathname.replace(/\/$/, '') + path, base);
    let res: Response;
    let text: string;
    try {
      // The signal (the step deadline, or the setting's own timeout) covers the body too: a source that sends
      // headers and then stalls is cut off like one that never answers.
      res = await doFetch(target, {
        method: 'POST', headers, body: JSON.stringify(body), redirect: 'manual',
        signal: AbortSignal.any([rc.signal, AbortSignal.timeout(p.timeoutMs)]),
      });
      text = (await res.text()).slice(0, MAX_RESPONSE);
    } catch (err) {
      // The URL may carry a provider account id; the message names only the step.
      throw new Error(`rotation endpoint ${path} did not answer (${(err as Error).name})`);
    }
    return { status: res.status, text };
  }
  const ok2xx = (status: number) => status >= 200 && status < 300;
  /** /issue's answer. One naming a field twice is refused whole: not even its id is trusted to revoke what it may have issued. */
  const issued = (text: string) => {
    try {
      return parseCredentialJson(text, 'rotation endpoint /issue answered JSON that', ['id', 'value']) as { id?: unknown; value?: unknown } | null | undefined;
    } catch (err) {
      throw new Error(`${(err as Error).message}; nothing was revoked at the source`);
    }
  };
  const idOf = (state: Record<string, unknown>) => (typeof state.id === 'string' ? state.id : null);

  const rotator: Rotator = {
    type: 'http',
    validate: (s) => void parse(s),
    secretRefs(s) {
      const { tokenSecret } = parse(s);
      return tokenSecret ? [{ field: 'tokenSecret', name: tokenSecret }] : [];
    },
    async generate(rc) {
      const res = await call(rc, '/issue', { secret: rc.secretName, environment: rc.environment, rotation: rc.rotationId });
      const j = ok2xx(res.status) ? issued(res.text) : undefined;
      if (!ok2xx(res.status) || typeof j?.id !== 'string' || typeof j.value !== 'string' || j.value.length === 0) {
        throw new Error(`rotation endpoint /issue answered HTTP ${res.status} without { id, value }`);
      }
      return { value: j.value, state: { id: j.id } };
    },
    async apply(rc) {
      const res = await call(rc, '/activate', { id: idOf(rc.state) });
      if (!ok2xx(res.status)) throw new Error(`rotation endpoint /activate answered HTTP ${res.status}`);
    },
    async test(rc, value) {
      const res = await call(rc, '/test', { id: idOf(rc.state) }, value);
      return { ok: ok2xx(res.status), detail: `the source answered HTTP ${res.status}` };
    },
    async restore(rc) {
      const id = idOf(rc.state);
      if (!id) return { ok: true, detail: 'no credential was issued' };
      const res = await call(rc, '/revoke', { id });
      return { ok: ok2xx(res.status), detail: `revoking the new credential: HTTP ${res.status}` };
    },
    // Issue already created the credential: one Keyhold could not stage is revoked the same way.
    discard: (rc, value) => rotator.restore(rc, value),
    async finalize(rc) {
      const id = idOf(rc.currentState);
      if (!id) return;
      const res = await call(rc, '/revoke', { id });
      if (!ok2xx(res.status)) throw new Error(`rotation endpoint /revoke answered HTTP ${res.status}`);
    },
    async sandbox(rc) {
      parse(rc.settings);
      return { settings: rc.settings, currentState: {}, current: null, cleanup: async () => {} };
    },
  };
  return rotator;
}
