import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

// Where an ingest figure's CPU goes: the service process, the Postgres cluster's processes (when
// it runs on this machine) and the load generator, read from /proc around the measured seconds.
// On 2 shared cores a throughput is the cores divided by the CPU each event costs all of them.

/** CPU milliseconds per event of each party; postgres null when the cluster is not local. */
export interface CpuPerEvent {
  service: number | null;
  postgres: number | null;
  client: number;
  /** The service process's write system calls (syscw of /proc/<pid>/io) per event: how its output is batched. */
  serviceWrites?: number | null;
}

const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** [ppid, user + system ticks] of a process, or undefined once it is gone. */
function statOf(pid: number): [number, number] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [Number(f[1]), Number(f[11]) + Number(f[12])];
  } catch {
    return undefined;
  }
}

/** The postmaster and its children (backends, walwriter, checkpointer...): ticks by pid. */
function clusterTicks(postmaster: number): Map<number, number> {
  const out = new Map<number, number>([[postmaster, statOf(postmaster)?.[1] ?? 0]]);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = statOf(Number(d));
    if (st && st[0] === postmaster) out.set(Number(d), st[1]);
  }
  return out;
}

/** CPU ms of the cluster between two readings: per process, a process born in between from 0. */
function clusterMsBetween(a: Map<number, number>, b: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of b) ticks += t - (a.get(pid) ?? 0);
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** The postmaster of a backend (pg_backend_pid() of a connection still open), if it is local. */
export const postmasterOf = (backendPid: number): number | undefined => (existsSync(`/proc/${backendPid}`) ? statOf(backendPid)?.[0] : undefined);

/** Write system calls a process has made (any fd), or 0 when /proc does not tell. */
function writeCallsOf(pid: number): number {
  try {
    return Number(/syscw:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

const processMs = (pid: number) => ((statOf(pid)?.[1] ?? 0) * 1000) / TICKS_PER_SECOND;
const selfMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Reads CPU at start() and end() (closedLoop calls both around the measured seconds, before any
 * connection of the load is closed), then perEvent(n). The cluster's figure counts each process
 * from its own first reading; one that ends in between takes its time with it (a floor).
 * `postmaster` (postmasterOf) is the measured cluster's, if it runs on this machine.
 */
export class CpuMeter {
  private readings: Array<{ service: number; serviceWrites: number; postgres: Map<number, number>; client: number }> = [];

  constructor(
    private readonly servicePid: number | undefined,
    private readonly postmaster: number | undefined,
  ) {}

  private read() {
    this.readings.push({
      service: this.servicePid ? processMs(this.servicePid) : 0,
      serviceWrites: this.servicePid ? writeCallsOf(this.servicePid) : 0,
      postgres: this.postmaster ? clusterTicks(this.postmaster) : new Map<number, number>(),
      client: selfMs(),
    });
  }

  start(): void {
    this.readings = [];
    this.read();
  }

  end(): void {
    this.read();
  }

  perEvent(events: number): CpuPerEvent {
    const [a, b] = this.readings;
    if (!a || !b) throw new Error('CpuMeter: start() and end() first');
    const per = (ms: number) => Math.round((ms / Math.max(1, events)) * 1000) / 1000;
    return {
      service: this.servicePid ? per(b.service - a.service) : null,
      postgres: this.postmaster ? per(clusterMsBetween(a.postgres, b.postgres)) : null,
      client: per(b.client - a.client),
      serviceWrites: this.servicePid ? per(b.serviceWrites - a.serviceWrites) : null,
    };
  }
}
