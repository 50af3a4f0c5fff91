import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { MachineRepository } from '../identity/machines/machine-repository.ts';
import type { ConnectorService } from '../connectors/connector-service.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { SecretService } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { createAutomationService } from './automation-service.ts';
import { createConnectorExchange } from './connector-exchange.ts';
import { createAutomationExchange } from './exchange.ts';
import { createInventory } from './inventory.ts';
import { createRunner, type ProxyPort, type Redactor, type RunnerLimits, type ScriptPort } from './runner.ts';
import { createRunQueries } from './runs.ts';
import { createAutomationScheduler } from './scheduler.ts';
import type { CredentialDetector } from './validate.ts';

export { automationRoutes } from './routes.ts';

/** The run-time side of SPEC §5: automations, their runner and triggers, runs, export/import, inventory. */
export function createAutomationModule(deps: {
  db: Kysely<Database>;
  authz: Authorizer;
  clock: Clock;
  audit: Pick<AuditLog, 'appendInTx'>;
  tenants: Pick<TenantService, 'environment'>;
  secrets: Pick<SecretService, 'load' | 'authorize'>;
  tokens: Pick<TokenService, 'issue' | 'revoke' | 'forgetToken' | 'authenticate'>;
  machines: Pick<MachineRepository, 'lockLive'>;
  connectors: ConnectorService;
  proxy: ProxyPort;
  scripts: ScriptPort;
  redactors: { forTenant(tenantId: string): Promise<Redactor> };
  detectCredentials: CredentialDetector;
  keyholdAddress: () => string | null;
  keyholdCa?: () => string | null;
  limits?: Partial<RunnerLimits>;
  onBackgroundError: (err: unknown) => void;
  /** A sealed node claims no scheduled fire (an unsealed node runs it). */
  isSealed: () => boolean;
}) {
  const { db, authz, clock, audit, connectors } = deps;
  // Connectors the caller may list: an author can reference only what they can see.
  const directory = { list: (ctx: TenantContext) => connectors.list(ctx) };
  const automations = createAutomationService({ db, authz, secrets: deps.secrets, connectors: directory, detectCredentials: deps.detectCredentials, audit, clock });
  const runner = createRunner({
    db, automations, tenants: deps.tenants, tokens: deps.tokens, machines: { lockLive: (trx, id) => deps.machines.lockLive(trx, id, null) }, proxy: deps.proxy, scripts: deps.scripts, redactors: deps.redactors,
    keyholdAddress: deps.keyholdAddress, ...(deps.keyholdCa ? { keyholdCa: deps.keyholdCa } : {}), audit, clock, ...(deps.limits ? { limits: deps.limits } : {}), onBackgroundError: deps.onBackgroundError,
  });
  const scheduler = createAutomationScheduler({ db, runner, clock, onError: deps.onBackgroundError, isSealed: deps.isSealed });
  automations.onChange(scheduler.listener);
  return {
    automations, runner, scheduler,
    runs: createRunQueries({ db, authz }),
    exchange: createAutomationExchange({ automations, connectors: createConnectorExchange(connectors), authz, clock, db, audit }),
    inventory: createInventory({ automations, connectors: directory, secrets: deps.secrets }),
  };
}

export type AutomationModule = ReturnType<typeof createAutomationModule>;
