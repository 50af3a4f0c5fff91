export { createRedactor, redactDeep, redactDeepWith, unionRedactors, DEFAULT_FLOOR, DEFAULT_MASK, type Redactor, type RedactorOptions } from './redactor.ts';
export { createStreamRedactor, type StreamRedactor } from './stream.ts';
export { encodedForms } from './forms.ts';
export { createTenantRedactors, DEFAULT_REDACTOR_TTL_MS, type TenantRedactors } from './tenant-redactors.ts';
export { createKnownValues, logLineRedactor, trackKnownValues, type KnownValues } from './known-values.ts';
