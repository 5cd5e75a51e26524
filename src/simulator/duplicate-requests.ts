// Network retries as factory systems make them: the same request again after a lost response,
// or two copies racing. Either way the service must answer with one event, never two.
import type { ApiReply } from './api-client.js';
import type { StatsRecorder } from './stats.js';
import type { Random } from '../world/random.js';

export interface Created {
  id: string;
}

const ok = (r: ApiReply) => r.status === 200 || r.status === 201;

/**
 * Sends a request once, or (by chance) twice: again after it succeeded, or two copies at once.
 * Returns the reply that stands for the request; counts 201s, replays and any second resource.
 */
export async function sendMaybeTwice<T extends Created>(
  send: () => Promise<ApiReply<T>>,
  o: { rng: Random; retry: number; concurrent: number; stats: StatsRecorder; what: string },
): Promise<ApiReply<T>> {
  const { stats } = o;
  if (o.rng.chance(o.concurrent)) {
    const [a, b] = await Promise.all([send(), send()]);
    for (const r of [a, b]) if (r.status === 201) stats.events++;
    if (ok(a) && ok(b))
      judgeSecond(a.status === 201 ? a : b, a.status === 201 ? b : a, stats, `${o.what} (concurrent duplicate)`);
    else if (ok(a) !== ok(b)) stats.problem(`${o.what}: concurrent copies answered ${a.status} and ${b.status}`);
    return [a, b].find((r) => r.status === 201) ?? [a, b].find(ok) ?? a;
  }
  const first = await send();
  if (first.status === 201) {
    stats.events++;
    if (o.rng.chance(o.retry)) {
      const again = await send();
      if (again.status === 201) stats.events++;
      judgeSecond(first, again, stats, `${o.what} (retry)`);
    }
  }
  return first;
}

function judgeSecond<T extends Created>(first: ApiReply<T>, second: ApiReply<T>, stats: StatsRecorder, what: string) {
  if (second.status === 200 && second.body.id === first.body.id) {
    stats.replays++;
    return;
  }
  if (second.status === 201 || (ok(second) && second.body.id !== first.body.id)) {
    stats.duplicatesAccepted++;
    stats.problem(`${what}: the same Idempotency-Key made a second resource (${first.body.id}, ${second.body.id})`);
  } else {
    stats.problem(`${what}: the repeat answered ${second.status}, not a 200 replay`);
  }
}
