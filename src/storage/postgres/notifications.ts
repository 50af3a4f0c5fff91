import { Socket } from 'node:net';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';

/**
 * Messages between the nodes of one deployment, over the database they share. Delivery is best
 * effort: a message sent while a node's listening connection is down never reaches it, so each
 * (re)start of listening is reported as a gap, after which the listener must assume it missed some.
 */
export interface Notifications {
  /** Sends `payload` (at most a few hundred bytes) to every node listening, this one included. */
  publish(payload: string): Promise<void>;
  /** Starts listening (once): `onGap` first and after each reconnect, `onMessage` for each payload. */
  listen(handlers: { onMessage(payload: string): void; onGap(): void; onError(err: unknown): void }): void;
  /** Stops listening and closes the connection (publishing still works while the pool does). */
  close(): Promise<void>;
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

/**
 * The channel of this deployment: NOTIFY channels are per database, and deployments sharing one
 * (each in its own schema, as the tests do) must not hear each other. Computed by the server from
 * the session's schema, so the publisher and the listener agree without being told.
 */
const CHANNEL_SQL = "'keyhold_' || left(md5(current_schema()), 24)";

/**
 * PostgreSQL LISTEN/NOTIFY. Publishing goes through the pool (`pg_notify`); listening holds one
 * connection of its own, opened with the pool's settings, reopened with backoff when it drops.
 */
export function createPgNotifications(opts: { db: Kysely<any>; clientConfig: pg.ClientConfig }): Notifications {
  let client: pg.Client | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  /** The attempt under way, for close() to wait out. */
  let connecting: Promise<void> | null = null;
  /** The socket of the attempt under way: pg's end() waits for a server that never answers, destroying it does not. */
  let opening: Socket | null = null;
  let closed = false;
  let started = false;

  function attempt(handlers: Parameters<Notifications['listen']>[0], delayMs: number): void {
    connecting = connect(handlers, delayMs).finally(() => {
      connecting = null;
    });
  }

  /** `delayMs`: how long to wait before the next attempt if this one fails (doubling, capped); a connection that opened starts again from the first. */
  async function connect(handlers: Parameters<Notifications['listen']>[0], delayMs: number): Promise<void> {
    if (closed) return;
    const c = new pg.Client({ ...opts.clientConfig, keepAlive: true, stream: () => (opening = new Socket()) });
    let lost = false;
    let nextDelayMs = delayMs;
    const retry = (err: unknown) => {
      if (lost) return;
      lost = true;
      if (client === c) client = null;
      c.end().catch(() => {});
      if (closed) return;
      handlers.onError(err);
      retryTimer = setTimeout(() => {
        retryTimer = null;
        attempt(handlers, Math.min(nextDelayMs * 2, MAX_RETRY_MS));
      }, nextDelayMs);
      retryTimer.unref();
    };
    c.on('error', retry);
    c.on('end', () => retry(new Error('the notification connection ended')));
    c.on('notification', (m) => {
      if (m.payload !== undefined) handlers.onMessage(m.payload);
    });
    try {
      await c.connect();
      const channel = (await c.query<{ channel: string }>(`select ${CHANNEL_SQL} as channel`)).rows[0]!.channel;
      // Hex digits after a fixed prefix: a safe identifier as it stands.
      await c.query(`listen ${channel}`);
    } catch (err) {
      retry(err);
      return;
    } finally {
      opening = null;
    }
    if (closed) {
      await c.end().catch(() => {});
      return;
    }
    client = c;
    nextDelayMs = FIRST_RETRY_MS;
    // Whatever was sent before this point is lost to this connection.
    handlers.onGap();
  }

  return {
    async publish(payload) {
      await sql`select pg_notify(${sql.raw(CHANNEL_SQL)}, ${payload})`.execute(opts.db);
    },

    listen(handlers) {
      if (started || closed) return;
      started = true;
      attempt(handlers, FIRST_RETRY_MS);
    },

    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      // An attempt against a database that does not answer would otherwise hold the stop for the connect timeout.
      opening?.destroy();
      await connecting;
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    },
  };
}
