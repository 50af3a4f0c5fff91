import type { Entry } from '../command.ts';
import { environmentsGroup } from './environments.ts';
import { keysGroup } from './keys.ts';
import { secretsGroup } from './secrets.ts';
import { serverCommand } from './server.ts';
import { systemCommands } from './system.ts';
import { tenantsGroup } from './tenants.ts';

/** Every top-level command and verb group, in the order help lists them. */
export const entries: Entry[] = [...systemCommands, serverCommand, secretsGroup, keysGroup, tenantsGroup, environmentsGroup];
