import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { sleep } from './stats.js';

const run = promisify(execFile);

/** `npm run build`: the benchmark measures the compiled service, as it runs in production. */
export async function buildService(): Promise<void> {
  await run('npm', ['run', 'build'], { maxBuffer: 16 * 1024 * 1024 });
}

export interface ServiceProcess {
  baseUrl: string;
  pid: number;
  /** From spawn to the first 200 of /readyz. */
  readyMs: number;
  output(): string;
  stop(): Promise<void>;
}

/** Resident set size of a process, in bytes, from /proc (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// Below the kernel's ephemeral range (32768 and up here), where every client socket of the run
// takes its local port: a listener drawn from there can find its port taken (EADDRINUSE).
export const freePort = () => 10_000 + Math.floor(Math.random() * 20_000);

/** Spawns a Node program and waits until `readyUrl` answers 200 (or the process dies). */
export async function spawnReady(
  args: string[],
  env: Record<string, string>,
  readyUrl: (port: number) => string,
  port?: number,
  timeoutMs = 60_000,
): Promise<ServiceProcess & { child: ChildProcess }> {
  // A port of our choosing that something else took meanwhile: try another (a given port stays).
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnOn(args, env, readyUrl, port ?? freePort(), timeoutMs);
    } catch (err) {
      if (port !== undefined || attempt >= 5 || !(err instanceof Error && err.message.includes('EADDRINUSE'))) throw err;
    }
  }
}

async function spawnOn(
  args: string[],
  env: Record<string, string>,
  readyUrl: (port: number) => string,
  port: number,
  timeoutMs: number,
): Promise<ServiceProcess & { child: ChildProcess }> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = readyUrl(port);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}:\n${out}`);
    if (await fetch(url).then((r) => r.ok, () => false)) break;
    if (performance.now() - started > timeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`${args.join(' ')} not ready in ${timeoutMs} ms:\n${out}`);
    }
    await sleep(20);
  }
  const readyMs = performance.now() - started;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    readyMs,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export const JWT_SECRET = 'bench-secret-0123456789abcdef0123456789abcdef';

/** Node's flags for a process of the bench that writes a CPU profile into `profileDir`, if given. */
export const profileFlags = (profileDir?: string) => (profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []);

/**
 * The built service (dist/server.js, the bundle) in a process of its own. The rate limiter is opened
 * wide: the load generator is one caller sending far more than a factory would in a minute.
 */
export function startService(env: Record<string, string>, port?: number, profileDir?: string): Promise<ServiceProcess> {
  return spawnReady(
    [...profileFlags(profileDir), 'dist/server.js'],
    { NODE_ENV: 'production', JWT_SECRET, LOG_LEVEL: 'warn', RATE_LIMIT_PER_MINUTE: '100000000', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000000', ...env },
    (p) => `http://127.0.0.1:${p}/readyz`,
    port,
  );
}

/** Each counter summed over its labels, from one read of a service's /metrics (0 when absent). */
export async function countersOf(baseUrl: string, names: string[]): Promise<number[]> {
  const lines = (await (await fetch(`${baseUrl}/metrics`)).text()).split('\n');
  return names.map((name) =>
    lines.filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0),
  );
}
