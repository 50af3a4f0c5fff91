import Fastify from 'fastify';
import { loadConfig } from '../../src/config/config.ts';
import { serverOptions } from '../../src/http/server.ts';
import { createLogger } from '../../src/platform/logger.ts';

/**
 * The baseline: fastify with exactly Keyhold's server options and logger (level info, stdout, as
 * the Keyhold process logs), one trivial GET route, no plugins, hooks or schemas. Run as its own
 * process by bench/run.ts; prints a "bare listening" line with the address, as Keyhold does.
 */
const logger = createLogger({ level: 'info' });
// Default limits, as a Keyhold server started without KEYHOLD_MAX_VALUE_BYTES has them.
const { limits } = loadConfig({});
const app = Fastify(serverOptions({ logger, bodyLimit: limits.maxBodyBytes }));
app.get('/bare', async () => ({ ok: true }));

const address = await app.listen({ host: '127.0.0.1', port: 0 });
logger.info({ address }, 'bare listening');

const shutdown = async () => {
  await app.close();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
