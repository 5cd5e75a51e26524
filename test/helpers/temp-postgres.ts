// A Postgres cluster of the test's own, in a temporary directory on a free port, that the test may
// stop and start (a database outage) without disturbing the machine's cluster or other test files.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** The directory of initdb / pg_ctl: PG_BIN, else the newest /usr/lib/postgresql/<v>/bin. */
export function postgresBinDir(): string | undefined {
  if (process.env.PG_BIN) return existsSync(join(process.env.PG_BIN, 'pg_ctl')) ? process.env.PG_BIN : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/**
 * True (and says why) when this run cannot start a Postgres of its own. Under CI=true it never
 * skips: the test then fails, so a CI machine without the binaries cannot pass silently.
 */
export function skipWithoutPostgresBinaries(): boolean {
  if (postgresBinDir() || process.env.CI === 'true') return false;
  console.warn('skipped: needs the PostgreSQL server binaries (initdb, pg_ctl); set PG_BIN=<their directory>');
  return true;
}

export interface TempPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** `pg_ctl stop -m immediate` by default: the server dies as in a crash (its clients see it go). */
  stop(mode?: 'immediate' | 'fast'): Promise<void>;
  start(): Promise<void>;
  /** SIGSTOP to the server and its backends: connections stay open and nothing answers (a partition). */
  freeze(): void;
  thaw(): void;
  /** Stops the server if it runs and deletes its directory. */
  remove(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root: then the cluster belongs to the postgres user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  return { uid, gid };
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${bin} ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

/** initdb + pg_ctl start of a throw-away cluster (trust auth, user postgres, only on 127.0.0.1). */
export async function startTempPostgres(): Promise<TempPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL server binaries not found: install postgresql or set PG_BIN');
  const user = runAs();
  const dir = mkdtempSync('/tmp/ospg-'); // short: a Unix socket path must stay under 108 bytes
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const port = await freePort();
  const pgCtl = join(bin, 'pg_ctl');
  let running = false;
  try {
    await run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync'], user, 60_000);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  /** The postmaster (first line of postmaster.pid) and its children. */
  const signalAll = (signal: NodeJS.Signals) => {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    let children: number[] = [];
    try {
      children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    } catch {
      /* no children (pgrep exits 1) */
    }
    for (const p of [pid, ...children]) {
      try {
        process.kill(p, signal);
      } catch {
        /* a backend that just exited */
      }
    }
  };
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100`;
  const pg: TempPostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      await run(pgCtl, ['start', '-D', data, '-w', '-t', '30', '-l', join(dir, 'log'), '-o', opts], user, 40_000);
      running = true;
    },
    async stop(mode = 'immediate') {
      await run(pgCtl, ['stop', '-D', data, '-w', '-t', '30', '-m', mode], user, 40_000);
      running = false;
    },
    freeze: () => signalAll('SIGSTOP'),
    thaw: () => signalAll('SIGCONT'),
    async remove() {
      try {
        if (running) signalAll('SIGCONT'); // a frozen server would not stop
      } catch {
        /* not running after all */
      }
      if (running || existsSync(join(data, 'postmaster.pid'))) await pg.stop('immediate').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await pg.start();
  } catch (err) {
    await pg.remove();
    throw err;
  }
  return pg;
}
