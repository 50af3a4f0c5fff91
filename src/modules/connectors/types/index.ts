import type { ConnectorTypeName } from '../model.ts';
import type { ConnectorType } from './connector-type.ts';
import { httpType } from './http/index.ts';
import { postgresType } from './postgres/index.ts';
import { webhookSignerType } from './webhook-signer/index.ts';

/** Every shipped connector type by name. A new type is a folder here and one line below. */
export const connectorTypes: Readonly<Record<ConnectorTypeName, ConnectorType<any>>> = {
  http: httpType,
  postgres: postgresType,
  'webhook-signer': webhookSignerType,
};

export function isConnectorType(name: string): name is ConnectorTypeName {
  return Object.hasOwn(connectorTypes, name);
}
