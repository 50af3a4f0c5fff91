import { fail } from '../../errors/index.ts';
import { httpConnector } from './types/http/index.ts';
import { postgresConnector } from './types/postgres/index.ts';
import { webhookSignerConnector } from './types/webhook-signer/index.ts';
import { CONNECTOR_TYPES, type ConnectorType, type ConnectorTypeName } from './types.ts';

const TYPES: Record<ConnectorTypeName, ConnectorType<any>> = {
  http: httpConnector,
  postgres: postgresConnector,
  'webhook-signer': webhookSignerConnector,
};

/** The connector type of a name, or VALIDATION_FAILED listing the known ones. */
export function connectorType(name: string): ConnectorType<unknown> {
  if (!(CONNECTOR_TYPES as readonly string[]).includes(name)) fail('VALIDATION_FAILED', `type must be one of ${CONNECTOR_TYPES.join(', ')}`);
  return TYPES[name as ConnectorTypeName];
}
