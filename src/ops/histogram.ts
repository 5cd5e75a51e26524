// Lead times and dwell times in a log histogram: bucket b holds values in
// [0.01 h * 1.05^b, 0.01 h * 1.05^(b+1)), so a percentile read from it is within 2.5% of the
// exact one, whatever the number of values, and buckets of different days simply add up.
const BASE_HOURS = 0.01;
const GROWTH = 1.05;
export const MAX_BUCKET = 400;

export function bucketOf(hours: number): number {
  if (!(hours > BASE_HOURS)) return 0;
  return Math.min(MAX_BUCKET, Math.floor(Math.log(hours / BASE_HOURS) / Math.log(GROWTH)));
}

/** The bucket's geometric middle, as the value a percentile in it stands for. */
const middleOf = (bucket: number) => BASE_HOURS * GROWTH ** (bucket + 0.5);

/** The nearest-rank percentile q (0..1) of the counted values, or null when there are none. */
export function percentile(counts: Map<number, number>, q: number): number | null {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const bucket of [...counts.keys()].sort((a, b) => a - b)) {
    seen += counts.get(bucket)!;
    if (seen >= rank) return middleOf(bucket);
  }
  return null;
}
