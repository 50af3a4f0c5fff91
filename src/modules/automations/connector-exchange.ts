import { fail } from '../../errors/index.ts';
import type { ConnectorService } from '../connectors/connector-service.ts';
import type { ConnectorExchange, ExportedConnector } from './exchange.ts';

/** Export/import of connectors through the connector service (its own checks apply to each). */
export function createConnectorExchange(connectors: Pick<ConnectorService, 'list' | 'prepareSave'>): ConnectorExchange {
  return {
    async exportFrom(ctx, environment, names) {
      return (await connectors.list(ctx, environment)).filter((c) => names.includes(c.name))
        .map((c): ExportedConnector => ({ name: c.name, type: c.type, owner: c.owner, settings: c.settings, slots: c.slots }));
    },
    async prepareImport(ctx, environment, list, opts) {
      if (new Set(list.map((c) => c.name)).size !== list.length) fail('VALIDATION_FAILED', 'the document names a connector twice');
      const staged = [];
      for (const c of list) staged.push(await connectors.prepareSave(ctx, environment, c, opts));
      return staged;
    },
  };
}
