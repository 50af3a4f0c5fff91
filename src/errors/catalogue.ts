/**
 * The one catalogue of error codes. Every error a caller can see has a stable code here,
 * an HTTP status, and a meaning (mirrored in docs/errors.md; a test keeps them in step).
 */
export const errorCatalogue = {
  VALIDATION_FAILED: { status: 400, meaning: 'The request did not match the schema; the message names the field.' },
  UNKNOWN_FIELD: { status: 400, meaning: 'The request carried a field the endpoint does not accept.' },
  MALFORMED_JSON: { status: 400, meaning: 'The request body is not valid JSON (or is empty where JSON is required).' },
  INVALID_NAME: { status: 400, meaning: 'A secret, environment or tenant name breaks the naming rule or the length limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'The request body has a content type other than application/json.' },
  BODY_TOO_LARGE: { status: 413, meaning: 'The request body is larger than the server accepts.' },
  VALUE_TOO_LARGE: { status: 413, meaning: 'The secret value is larger than the configured maximum value size.' },
  UNAUTHENTICATED: { status: 401, meaning: 'No valid token was presented, or it expired or was revoked.' },
  FORBIDDEN: { status: 403, meaning: 'The caller is authenticated but may not perform this action.' },
  ROUTE_NOT_FOUND: { status: 404, meaning: 'No endpoint exists at this method and path.' },
  TENANT_NOT_FOUND: { status: 404, meaning: 'The tenant does not exist or is not visible to the caller.' },
  ENVIRONMENT_NOT_FOUND: { status: 404, meaning: 'The environment does not exist in this tenant.' },
  SECRET_NOT_FOUND: { status: 404, meaning: 'The secret does not exist in this tenant (or is deleted).' },
  VALUE_NOT_SET: { status: 404, meaning: 'The secret exists but has no value in this environment.' },
  TOKEN_NOT_FOUND: { status: 404, meaning: 'No live token with that id (never existed, or already revoked).' },
  VERSION_NOT_FOUND: { status: 404, meaning: 'The requested version or label does not exist.' },
  VERSION_DESTROYED: { status: 410, meaning: 'The version existed but its data key was destroyed; the value is gone for good.' },
  TENANT_EXISTS: { status: 409, meaning: 'A tenant with this name already exists.' },
  ENVIRONMENT_EXISTS: { status: 409, meaning: 'An environment with this name already exists in the tenant.' },
  SECRET_EXISTS: { status: 409, meaning: 'A secret with this name already exists in the tenant (possibly soft-deleted).' },
  SECRET_DELETED: { status: 409, meaning: 'The secret is soft-deleted; restore it first, or destroy it.' },
  SECRET_NOT_DELETED: { status: 409, meaning: 'Destroying a whole secret needs it to be soft-deleted first.' },
  CAS_MISMATCH: { status: 409, meaning: 'Check-and-set failed: the current version is not the one the caller expected.' },
  NO_PREVIOUS_VERSION: { status: 409, meaning: 'There is no previous version to roll back to (none, or past the rollback window).' },
  KEY_OPERATION_CONFLICT: { status: 409, meaning: 'A key operation cannot run now (e.g. a rewrap is still needed before retiring).' },
  ALREADY_INITIALIZED: { status: 409, meaning: 'The server was already initialised; init runs once.' },
  NOT_INITIALIZED: { status: 409, meaning: 'The server has not been initialised yet; run init first.' },
  UNSEAL_FAILED: { status: 400, meaning: 'The shares given do not reconstruct the root key (a wrong or tampered share); progress was reset.' },
  INVALID_SHARE: { status: 400, meaning: 'An unseal share is not well formed.' },
  SEALED: { status: 503, meaning: 'The server is sealed; no secret operation is possible until it is unsealed.' },
  INTEGRITY_FAILURE: { status: 500, meaning: 'Stored ciphertext failed authentication (tampered, moved or corrupted); nothing was returned.' },
  KEY_VERSION_RETIRED: { status: 500, meaning: 'A value is wrapped under a key version below the minimum decryption version.' },
  INTERNAL: { status: 500, meaning: 'An unexpected error; the body carries a request id to find the full (redacted) log entry.' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export const errorCodes = Object.keys(errorCatalogue) as ErrorCode[];
