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
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VERSION = '15';
const BIN = `/usr/lib/postgresql/${VERSION}/bin`;

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

/** Creates and starts a cluster, or returns why it cannot (no server binaries, no permission). */
export async function createCluster(): Promise<Cluster | string> {
  if (!existsSync(`${BIN}/postgres`)) return `PostgreSQL ${VERSION} server binaries not found in ${BIN}`;
  return existsSync('/usr/bin/pg_createcluster') ? withClusterTools() : withInitdb();
}

async function withClusterTools(): Promise<Cluster | string> {
  const name = `tqchaos_${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  try {
    // fsync off: an immediate restart kills the server, not the machine, so committed work stays in the OS cache.
    await run('pg_createcluster', [VERSION, name, '-p', String(port), '-o', 'fsync=off', '--', '--auth=trust'], { timeout: 60_000 });
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

/** `initdb` + `pg_ctl` in a temporary directory, as the `postgres` user (directly when this process is that user). */
export async function withInitdb(): Promise<Cluster | string> {
  const user = userInfo();
  if (user.uid !== 0 && user.username !== 'postgres') return 'pg_createcluster is missing and initdb needs root (to run it as postgres) or the postgres user';
  const asPostgres = (command: string, args: string[]): [string, string[]] =>
    user.uid === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  const dir = mkdtempSync('/tmp/tqchaos-pg-');
  const data = join(dir, 'data');
  const port = await freePort();
  let dropped = false;
  const cleanSync = (): void => {
    try {
      execFileSync(...asPostgres(`${BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', 'stop']), { stdio: 'ignore', timeout: 30_000 });
    } catch {
      // not running
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = (): void => {
    if (!dropped) cleanSync();
  };
  process.on('exit', onExit);
  try {
    if (user.uid === 0) {
      const pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(dir, pgUid, pgGid);
    }
    await run(...asPostgres(`${BIN}/initdb`, ['-D', data, '-U', 'postgres', '--auth=trust']), { timeout: 120_000 });
    await run(...asPostgres(`${BIN}/pg_ctl`, ['-D', data, '-l', join(dir, 'server.log'), '-w', '-o', `-p ${port} -k ${dir} -c fsync=off`, 'start']), {
      timeout: 60_000,
    });
  } catch (error) {
    dropped = true;
    process.off('exit', onExit);
    cleanSync();
    return `initdb/pg_ctl failed: ${String(error)}`;
  }
  return {
    name: dir,
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: async () => {
      // pg_ctl restart reuses the options the server was started with.
      await run(...asPostgres(`${BIN}/pg_ctl`, ['-D', data, '-l', join(dir, 'server.log'), '-w', '-m', 'immediate', 'restart']), { timeout: 60_000 });
    },
    drop: async () => {
      if (dropped) return;
      dropped = true;
      process.off('exit', onExit);
      cleanSync();
    },
  };
}
