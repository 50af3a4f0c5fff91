import { Type } from 'typebox';

/** Shared schema pieces: names, the error body, and params every module uses. */
/** Names are checked by the services (one rule, one INVALID_NAME code); the schema only documents them. */
export const SecretName = Type.String({ description: 'Letters, digits, _ . -; starts with a letter or _; at most 128 characters' });
export const Slug = Type.String({ description: 'Lower-case letters, digits and -; starts with a letter; at most 63 characters' });

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    requestId: Type.String(),
  }),
});

/** Standard error responses, so the OpenAPI document shows the error body everywhere. */
export const errorResponses = {
  '4xx': ErrorResponse,
  '5xx': ErrorResponse,
};

export const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const EnvironmentSchema = Type.Object({ id: Type.String(), name: Type.String(), createdAt: Type.String() });

export const KeyStatusSchema = Type.Object({
  currentVersion: Type.Integer(),
  minDecryptionVersion: Type.Integer(),
  rewrapped: Type.Optional(Type.Integer()),
  resealed: Type.Optional(Type.Integer()),
  versions: Type.Array(Type.Object({
    version: Type.Integer(), createdAt: Type.String(), retiredAt: Nullable(Type.String()), dataKeys: Type.Integer(),
  })),
});

export const VersionInfoSchema = Type.Object({
  version: Type.Integer(),
  labels: Type.Array(Type.String()),
  createdAt: Type.String(),
  createdBy: Type.String(),
  reason: Type.String(),
  supersededAt: Nullable(Type.String()),
  destroyedAt: Nullable(Type.String()),
});

export const EnvironmentStateSchema = Type.Object({
  environment: Type.String(),
  currentVersion: Nullable(Type.Integer()),
  pendingVersion: Nullable(Type.Integer()),
  previousVersion: Nullable(Type.Integer()),
  updatedAt: Type.String(),
});
