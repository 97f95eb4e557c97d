/**
 * LISTEN/NOTIFY on one dedicated connection checked out of the pool. The
 * connection is re-established after loss (terminated backend, restart,
 * network cut) with capped backoff; `onConnected` fires after every re-LISTEN
 * so the store can wake its waiters for anything sent while it was away
 * (not after the first connection: subscribers claim right after subscribing).
 */
import type { PgNotification, PgPoolClientLike, PgPoolLike } from './postgres-pool.js';
import { quoteIdent } from './postgres-pool.js';

const MAX_BACKOFF_MS = 5_000;

export class PostgresNotifier {
  private client: PgPoolClientLike | undefined;
  private connecting = false;
  private stopped = false;
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;
  /** Re-establishments after the first connection: exposed for tests and metrics. */
  reconnects = 0;
  private everConnected = false;

  constructor(
    private readonly pool: PgPoolLike,
    readonly channel: string,
    private readonly onMessage: (payload: string) => void,
    private readonly onConnected: () => void,
  ) {}

  /** Starts listening (idempotent). */
  start(): void {
    if (this.stopped || this.client || this.connecting || this.retry) return;
    void this.connect();
  }

  /** True while a LISTEN connection is up. */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /** The backend pid of the LISTEN connection (tests terminate it). */
  async backendPid(): Promise<number | undefined> {
    const result = await this.client?.query('SELECT pg_backend_pid() AS pid');
    const pid = (result?.rows[0] as { pid?: number } | undefined)?.pid;
    return pid;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.removeAllListeners('notification');
    try {
      await client.query(`UNLISTEN ${quoteIdent(this.channel)}`);
      detach(client);
      client.release();
    } catch (error) {
      detach(client);
      client.release(error instanceof Error ? error : true);
    }
  }

  private async connect(): Promise<void> {
    this.connecting = true;
    let client: PgPoolClientLike | undefined;
    try {
      client = await this.pool.connect();
      const current = client;
      current.on('error', (error) => this.lost(current, error));
      current.on('end', () => this.lost(current, new Error('LISTEN connection ended')));
      current.on('notification', (message: PgNotification) => {
        if (message.channel === this.channel && message.payload) this.onMessage(message.payload);
      });
      await current.query(`LISTEN ${quoteIdent(this.channel)}`);
      if (this.stopped) {
        detach(current);
        current.release(true);
        return;
      }
      this.client = current;
      this.failures = 0;
      // Only a re-connection can have missed notifications that matter: subscribers claim right after subscribing.
      const reconnected = this.everConnected;
      this.everConnected = true;
      if (reconnected) {
        this.reconnects++;
        this.onConnected();
      }
    } catch (error) {
      if (client) {
        detach(client);
        client.release(error instanceof Error ? error : true);
      }
      this.scheduleRetry();
    } finally {
      this.connecting = false;
    }
  }

  private lost(client: PgPoolClientLike, error: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    detach(client);
    client.release(error);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retry) return;
    const delay = Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.min(this.failures++, 10));
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.connect();
    }, delay);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- timers without unref() (fake clocks, other runtimes)
    this.retry.unref?.();
  }
}

/** Drops our listeners but keeps one no-op error handler: a late socket error on a released client must not crash the process. */
function detach(client: PgPoolClientLike): void {
  client.removeAllListeners('notification');
  client.removeAllListeners('error');
  client.removeAllListeners('end');
  client.on('error', () => undefined);
}
