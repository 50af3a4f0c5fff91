import { Type, type Static } from 'typebox';

/**
 * An automation definition: a trigger and steps that reference secrets and connectors by name.
 * The same shape is stored, returned, exported and imported; it holds references only.
 */
const Text = (max: number) => Type.String({ maxLength: max });
const StringMap = Type.Record(Type.String({ maxLength: 256 }), Text(8192), { maxProperties: 64 });
const StepId = Type.String({ minLength: 1, maxLength: 64, description: 'Lower-case letters, digits, _ and -; starts with a letter' });
const Environment = Type.String({ minLength: 1, maxLength: 63 });

export const HttpStepSchema = Type.Object({
  id: StepId,
  type: Type.Literal('http'),
  connector: Type.String({ minLength: 1, maxLength: 200, description: '{{ connectors.NAME }}' }),
  method: Type.Union([Type.Literal('GET'), Type.Literal('POST'), Type.Literal('PUT'), Type.Literal('PATCH'), Type.Literal('DELETE')]),
  path: Type.String({ minLength: 1, maxLength: 2048, description: 'Relative to the connector base URL' }),
  query: Type.Optional(StringMap),
  headers: Type.Optional(StringMap),
  body: Type.Optional(Type.Unknown()),
  continueOnError: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

export const ScriptStepSchema = Type.Object({
  id: StepId,
  type: Type.Literal('script'),
  source: Type.String({ minLength: 1, maxLength: 65_536, description: 'ESM: export default async function (input, { secrets }) { ... }' }),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300_000 })),
  continueOnError: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

export const TriggerSchema = Type.Union([
  Type.Object({ type: Type.Literal('manual') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('schedule'), cron: Type.String({ minLength: 1, maxLength: 128 }), environment: Environment }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('webhook'), environment: Environment }, { additionalProperties: false }),
]);

export const DefinitionSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64, description: 'Letters, digits, _ . -; starts with a letter' }),
  description: Type.Optional(Text(2000)),
  runAs: Type.String({ minLength: 1, maxLength: 200, description: 'Name of the machine identity the runs act as' }),
  environments: Type.Array(Environment, { minItems: 1, maxItems: 16, description: 'Environments the automation may run in' }),
  trigger: TriggerSchema,
  steps: Type.Array(Type.Union([HttpStepSchema, ScriptStepSchema]), { minItems: 1, maxItems: 50 }),
}, { additionalProperties: false });

export type AutomationDefinition = Static<typeof DefinitionSchema>;
export type Step = AutomationDefinition['steps'][number];
export type HttpStep = Static<typeof HttpStepSchema>;
export type ScriptStep = Static<typeof ScriptStepSchema>;
export type Trigger = Static<typeof TriggerSchema>;

export interface Automation {
  id: string;
  definition: AutomationDefinition;
  revision: number;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
}

export type RunStatus = 'running' | 'succeeded' | 'failed';
export type RunTrigger = 'manual' | 'schedule' | 'webhook';

/** What one step did. Outputs and logs are stored redacted. */
export interface StepRecord {
  id: string;
  type: Step['type'];
  status: 'succeeded' | 'failed' | 'skipped';
  startedAt: string | null;
  durationMs: number;
  output: unknown;
  log: string;
  error: string | null;
}

export interface Run {
  id: string;
  automation: string;
  environment: string;
  trigger: RunTrigger;
  status: RunStatus;
  startedAt: string;
  finishedAt: string | null;
  actor: { type: string; id: string };
  revision: number;
  steps: StepRecord[];
  error: string | null;
}

/** A step as the run list shows it: no output, no log (those are read one run at a time). */
export type StepSummary = Pick<StepRecord, 'id' | 'type' | 'status' | 'startedAt' | 'durationMs' | 'error'>;

/** A run as the run list shows it. */
export type RunSummary = Omit<Run, 'steps'> & { steps: StepSummary[] };

/** The versioned export document: references only, never values. */
export const EXPORT_FORMAT = 'keyhold.automations';
export const EXPORT_VERSION = 1;
