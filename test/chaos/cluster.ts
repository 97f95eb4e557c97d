/**
 * A throw-away PostgreSQL 15 server for the chaos test, on a free port, so
 * that restarting it in immediate mode disturbs nothing else. Made with the
 * Debian cluster tools (`pg_createcluster`, `pg_ctlcluster`), which run the
 * server as the `postgres` user (it refuses to run as root, and CI runs as
 * root). `drop()` removes it; the process exit hook drops it too, so a crash
 * of the test leaves no server behind.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VERSION = '15';

export interface Cluster {
  name: string;
  port: number;
  /** A URL to the `postgres` database of this server. */
  url: string;
  /** Immediate-mode restart: the server dies without a checkpoint and recovers from its WAL. */
  restart(): Promise<void>;
  /** Stops and removes the cluster; safe to call twice. */
  drop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function dropSync(name: string): void {
  try {
    execFileSync('pg_dropcluster', [VERSION, name, '--stop'], { stdio: 'ignore', timeout: 30_000 });
  } catch {
    // already gone
  }
}

/** Creates and starts a cluster, or returns why it cannot (no cluster tools, no permission). */
export async function createCluster(): Promise<Cluster | string> {
  if (!existsSync(`/usr/lib/postgresql/${VERSION}/bin/postgres`)) return `PostgreSQL ${VERSION} server binaries not found in /usr/lib/postgresql/${VERSION}/bin`;
  const name = `tqchaos_${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  try {
    await run('pg_createcluster', [VERSION, name, '-p', String(port), '-o', 'fsync=off', '-o', 'max_connections=100', '--', '--auth=trust'], { timeout: 60_000 });
  } catch (error) {
    return `pg_createcluster failed (it needs root or the postgres user): ${String(error)}`;
  }
  let dropped = false;
  const onExit = (): void => {
    if (!dropped) dropSync(name);
  };
  process.on('exit', onExit);
  try {
    await run('pg_ctlcluster', [VERSION, name, 'start'], { timeout: 60_000 });
  } catch (error) {
    dropSync(name);
    dropped = true;
    process.off('exit', onExit);
    return `pg_ctlcluster start failed: ${String(error)}`;
  }
  return {
    name,
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: async () => {
      await run('pg_ctlcluster', [VERSION, name, 'restart', '-m', 'immediate'], { timeout: 60_000 });
    },
    drop: async () => {
      if (dropped) return;
      dropped = true;
      process.off('exit', onExit);
      await run('pg_dropcluster', [VERSION, name, '--stop'], { timeout: 60_000 }).catch(() => dropSync(name));
    },
  };
}
