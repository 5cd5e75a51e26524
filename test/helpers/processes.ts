import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrator.js';
import { JWT_SECRET } from './app.js';
import { REAL_POSTGRES_URL } from './env.js';

/** A fresh, migrated database on the real Postgres, for server processes to share. */
export async function sharedDatabase(): Promise<{ url: string; database: Database; drop(): Promise<void> }> {
  if (!REAL_POSTGRES_URL) throw new Error('needs a real Postgres: set TEST_DATABASE_URL');
  const name = `orderstream_proc_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: REAL_POSTGRES_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(REAL_POSTGRES_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), poolSize: 4 });
  await migrateToLatest(database.db);
  return {
    url: url.toString(),
    database,
    async drop() {
      await database.close();
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

export interface ServerProcess {
  baseUrl: string;
  child: ChildProcess;
  /** Everything the process printed. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  exited: Promise<number | string | null>;
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
}

/** How the service is started: from source by default; a built bundle's path in its place. */
const FROM_SOURCE = ['--import', 'tsx', 'src/server.ts'];

/**
 * Starts the real service (src/server.ts, or `args`) as its own process on a random port; resolves once
 * /readyz is 200. Ports are drawn below the kernel's ephemeral range (the tests' own client
 * sockets take those), and a port taken meanwhile is retried on another.
 */
export async function startServer(env: Record<string, string>, args = FROM_SOURCE): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServerOn(10000 + Math.floor(Math.random() * 20000), env, args);
    } catch (err) {
      if (attempt >= 5 || !(err instanceof PortTaken)) throw err;
    }
  }
}

class PortTaken extends Error {}

async function startServerOn(port: number, env: Record<string, string>, args: string[]): Promise<ServerProcess> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', JWT_SECRET, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 45_000;
  for (;;) {
    if (child.exitCode !== null) {
      if (out.includes('EADDRINUSE')) throw new PortTaken(`port ${port} taken`);
      throw new Error(`server exited with ${child.exitCode}:\n${out}`);
    }
    if (await fetch(`${baseUrl}/readyz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready in 45 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseUrl,
    child,
    output: () => out,
    exited,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Two server processes on one fresh shared database; `stop` ends both and drops it. */
export async function twoInstances(env: Record<string, string> = {}): Promise<{
  db: Awaited<ReturnType<typeof sharedDatabase>>;
  a: ServerProcess;
  b: ServerProcess;
  stop(): Promise<void>;
}> {
  const db = await sharedDatabase();
  const [a, b] = await Promise.all([startServer({ DATABASE_URL: db.url, ...env }), startServer({ DATABASE_URL: db.url, ...env })]);
  return {
    db,
    a,
    b,
    async stop() {
      await Promise.all([a.kill(), b.kill()]);
      await db.drop();
    },
  };
}
