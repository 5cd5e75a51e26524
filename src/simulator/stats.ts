// What a simulation run counts, and the snapshot handed to progress lines, the demo and tests.

export interface IncidentCounts {
  holds: number;
  qualityIssues: number;
  scrap: number;
  reroutes: number;
  slipped: number;
}

export interface SimulationStats {
  elapsedMs: number;
  orders: {
    /** Orders the run will create; null when it runs until stopped. */
    planned: number | null;
    created: number;
    active: number;
    delivered: number;
    /** Given up: a refusal the simulator could not reconcile (see lastErrors). */
    abandoned: number;
    /** Left where they were when the run was stopped. */
    stopped: number;
  };
  requests: number;
  /** Events the service accepted (201). */
  events: number;
  /** Over the last few seconds. */
  eventsPerSecond: number;
  /** Over the whole run. */
  averageEventsPerSecond: number;
  /** Deliberate retries and duplicates answered 200 with the original event. */
  replays: number;
  /** A retry or duplicate that made a second event or order: must stay 0. */
  duplicatesAccepted: number;
  /** 429, 503 and network failures retried with the same Idempotency-Key. */
  retries: number;
  /** Every response by status, 2xx included. */
  statuses: Record<string, number>;
  /** 4xx and 5xx responses by status, and `network` for requests that got none. */
  errors: Record<string, number>;
  /** 409s by problem type (the last part of its `type` URI). */
  conflicts: Record<string, number>;
  incidents: IncidentCounts;
  /** The latest few problems worth a look, newest last. */
  lastErrors: string[];
}

const RATE_WINDOW_MS = 5_000;

export class StatsRecorder {
  private readonly started = Date.now();
  private readonly samples: Array<[number, number]> = [];
  readonly orders = { created: 0, active: 0, delivered: 0, abandoned: 0, stopped: 0 };
  readonly incidents: IncidentCounts = { holds: 0, qualityIssues: 0, scrap: 0, reroutes: 0, slipped: 0 };
  requests = 0;
  events = 0;
  replays = 0;
  duplicatesAccepted = 0;
  retries = 0;
  private readonly statuses: Record<string, number> = {};
  private readonly errors: Record<string, number> = {};
  private readonly conflicts: Record<string, number> = {};
  private readonly lastErrors: string[] = [];

  constructor(private readonly planned: number) {}

  response(status: number) {
    this.requests++;
    bump(this.statuses, String(status));
    if (status >= 400) bump(this.errors, String(status));
  }

  networkError() {
    this.requests++;
    bump(this.errors, 'network');
  }

  conflict(problemType: string) {
    bump(this.conflicts, problemType);
  }

  problem(message: string) {
    this.lastErrors.push(message);
    if (this.lastErrors.length > 5) this.lastErrors.shift();
  }

  snapshot(): SimulationStats {
    const now = Date.now();
    this.samples.push([now, this.events]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > RATE_WINDOW_MS) this.samples.shift();
    const [t0, e0] = this.samples[0]!;
    return {
      elapsedMs: now - this.started,
      orders: { planned: Number.isFinite(this.planned) ? this.planned : null, ...this.orders },
      requests: this.requests,
      events: this.events,
      eventsPerSecond: now > t0 ? ((this.events - e0) * 1000) / (now - t0) : 0,
      averageEventsPerSecond: now > this.started ? (this.events * 1000) / (now - this.started) : 0,
      replays: this.replays,
      duplicatesAccepted: this.duplicatesAccepted,
      retries: this.retries,
      statuses: { ...this.statuses },
      errors: { ...this.errors },
      conflicts: { ...this.conflicts },
      incidents: { ...this.incidents },
      lastErrors: [...this.lastErrors],
    };
  }
}

function bump(counts: Record<string, number>, key: string) {
  counts[key] = (counts[key] ?? 0) + 1;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** One line: orders, event rate, replays, incidents and errors by status. */
export function formatStats(s: SimulationStats): string {
  const o = s.orders;
  const errors = Object.entries(s.errors)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, n]) => `${status}×${n}`)
    .join(' ');
  const i = s.incidents;
  return [
    duration(s.elapsedMs),
    `orders ${o.active} active, ${o.delivered}/${o.planned ?? '∞'} delivered${o.abandoned ? `, ${o.abandoned} abandoned` : ''}${o.stopped ? `, ${o.stopped} stopped` : ''}`,
    `${s.eventsPerSecond.toFixed(1)} ev/s, avg ${s.averageEventsPerSecond.toFixed(1)} (${s.events} events)`,
    `replays ${s.replays}${s.duplicatesAccepted ? ` DUPLICATES ${s.duplicatesAccepted}` : ''}`,
    `holds ${i.holds} · quality ${i.qualityIssues} · reroutes ${i.reroutes} · slipped ${i.slipped}`,
    `retries ${s.retries}`,
    `errors ${errors || 'none'}`,
  ].join(' | ');
}
