import { formatStats, type SimulationStats } from './stats.js';

/**
 * One line rewritten in place on a terminal; on a pipe or a log file, a line every few seconds
 * instead of a stream of carriage returns.
 */
export function progressLine(stream: NodeJS.WriteStream = process.stderr, everyMsWithoutTty = 5_000) {
  let lastPrinted = 0;
  let drawn = false;
  return {
    update(stats: SimulationStats) {
      const line = formatStats(stats);
      if (stream.isTTY) {
        const width = stream.columns || 200;
        stream.write(`\r${line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line}\x1b[K`);
        drawn = true;
      } else if (Date.now() - lastPrinted >= everyMsWithoutTty) {
        stream.write(`${line}\n`);
        lastPrinted = Date.now();
      }
    },
    /** Ends the line, so what follows starts on its own. */
    end() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}
