export { createConnectorService, type ConnectorService, type PreparedConnector } from './connector-service.ts';
export { connectorRoutes } from './routes.ts';
export type { Connector, ConnectorTypeName, CreateConnectorInput, Dependent, HealthResult, UpdateConnectorInput } from './model.ts';
export { connectPostgres, type PostgresCredentials, type PostgresSettings } from './types/postgres/index.ts';
export { signatureHeader } from './types/webhook-signer/signature.ts';
export { canonicalRequest, signRequest } from './types/http/signing.ts';
