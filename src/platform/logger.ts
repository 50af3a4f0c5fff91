import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

/**
 * Paths that may carry secrets. pino redacts one level per `*`, so each depth is listed.
 * Request bodies are never logged at all; this list is the second line of defence.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-keyhold-token"]',
  'value', '*.value', '*.*.value',
  'token', '*.token', '*.*.token',
  'rootToken', '*.rootToken',
  'shares', '*.shares',
  'share', '*.share',
  'password', '*.password',
  'ticket', '*.ticket',
  'body', '*.body',
];

export type { Logger };

/**
 * Creates the process logger; pass a destination to capture output (tests scan it for canaries).
 * `filterLine` sees every serialized line before it is written (the known-value redaction pass:
 * pino's path redaction never looks inside message strings).
 */
export function createLogger(options: { level: LevelWithSilent; destination?: DestinationStream; filterLine?: (line: string) => string }): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: { service: 'keyhold' },
      ...(options.filterLine ? { hooks: { streamWrite: options.filterLine } } : {}),
    },
    options.destination,
  );
}
