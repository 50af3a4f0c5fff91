import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { AutomationService, ConnectorDirectory } from './automation-service.ts';
import { connectorsReferenced, secretsReferenced } from './validate.ts';

export interface SecretDependents {
  secret: string;
  connectors: Array<{ environment: string; connector: string; slot: string }>;
  automations: Array<{ automation: string; environment: string; via: string }>;
}

export interface ConnectorUse {
  environment: string;
  connector: string;
  type: string;
  personal: boolean;
  usedBy: string[];
  /** A personal (user-owned) credential powers a connector that shared automations run on. */
  flagged: boolean;
}

/**
 * Blast radius (SPEC §8): what depends on a secret — connectors per environment, and automations
 * that reference it directly or through one of those connectors — and which connectors run shared
 * automations on a personal credential.
 */
export function createInventory(deps: { automations: Pick<AutomationService, 'list'>; connectors: ConnectorDirectory; secrets: Pick<SecretService, 'load' | 'authorize'> }) {
  const { automations, connectors, secrets } = deps;
  return {
    async dependentsOf(ctx: TenantContext, name: string): Promise<SecretDependents> {
      // A secret the caller may not even list reads as a miss, like one that does not exist.
      await secrets.authorize(ctx, 'list', secretResource(await secrets.load(ctx, name)));
      const all = await connectors.list(ctx);
      const powered = all.flatMap((c) => Object.entries(c.slots).filter(([, s]) => s === name).map(([slot]) => ({ environment: c.environment, connector: c.name, slot })));
      const out: SecretDependents['automations'] = [];
      for (const a of await automations.list(ctx)) {
        const def = a.definition;
        const direct = secretsReferenced(def).includes(name);
        for (const environment of def.environments) {
          if (direct) out.push({ automation: def.name, environment, via: 'reference' });
          for (const c of connectorsReferenced(def)) {
            if (powered.some((p) => p.connector === c && p.environment === environment)) out.push({ automation: def.name, environment, via: `connector:${c}` });
          }
        }
      }
      return { secret: name, connectors: powered, automations: out };
    },

    async connectorUse(ctx: TenantContext): Promise<ConnectorUse[]> {
      const defs = (await automations.list(ctx)).map((a) => a.definition);
      return (await connectors.list(ctx)).map((c) => {
        const usedBy = defs.filter((d) => d.environments.includes(c.environment) && connectorsReferenced(d).includes(c.name)).map((d) => d.name);
        return { environment: c.environment, connector: c.name, type: c.type, personal: c.personal, usedBy, flagged: c.personal && usedBy.length > 0 };
      });
    },
  };
}

export type Inventory = ReturnType<typeof createInventory>;
