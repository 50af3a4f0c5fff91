import type { VersionBinding } from '../../crypto/envelope.ts';
import type { SecretResource } from '../policy/authorizer.ts';
import type { SealedRow } from './sealed-row-cache.ts';
import { secretResource } from './secret-service.ts';

/** What every read of one sealed row derives from it: the policy view, the AAD binding, the ISO date. */
export interface ReadView {
  resource: SecretResource;
  binding: VersionBinding;
  createdAt: string;
}

/** A secret row's policy view, frozen down to its tags, so the authorizer may remember decisions about it (cedar-authorizer.ts). */
export function frozenResource(row: Parameters<typeof secretResource>[0]): SecretResource {
  const resource = secretResource(row);
  Object.freeze(resource.tags);
  return Object.freeze(resource);
}

/**
 * Read views of cached sealed rows, computed once per row object (JSON.parse of the tags and
 * toISOString were a measurable part of a read). Held weakly: a view lives exactly as long as
 * the cached row it was derived from, and holds nothing secret (the value stays sealed).
 */
export function createReadViews() {
  const views = new WeakMap<SealedRow, ReadView>();
  return {
    of(tenantId: string, environmentId: string, row: SealedRow): ReadView {
      const cached = views.get(row);
      if (cached && cached.binding.tenantId === tenantId && cached.binding.environmentId === environmentId) return cached;
      const view: ReadView = Object.freeze({
        resource: frozenResource({ ...row, id: row.secret_id }),
        binding: Object.freeze({ tenantId, environmentId, secretId: row.secret_id, version: row.version }),
        createdAt: new Date(row.created_at).toISOString(),
      });
      views.set(row, view);
      return view;
    },
  };
}
