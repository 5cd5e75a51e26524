import { Presets, SingleBar } from 'cli-progress';

/**
 * One bar for the whole run: the step being measured, how far it is, and a short detail.
 * On a terminal it redraws in place; in CI (no TTY) it prints a line per step.
 */
export class Progress {
  private bar = new SingleBar(
    { format: '{step} [{bar}] {percentage}% | {detail}', hideCursor: true, clearOnComplete: false, noTTYOutput: true, notTTYSchedule: 5000 },
    Presets.shades_classic,
  );
  private active = false;

  step(name: string, total: number, detail = '') {
    if (this.active) this.bar.stop();
    if (!process.stdout.isTTY) console.log(`bench: ${name}`);
    this.bar.start(Math.max(1, total), 0, { step: name.padEnd(26), detail });
    this.active = true;
  }

  update(value: number, detail?: string) {
    if (this.active) this.bar.update(value, detail === undefined ? undefined : { detail });
  }

  /** Prints a line above the bar (warnings, notes). */
  log(line: string) {
    if (this.active) this.bar.stop();
    this.active = false;
    console.log(line);
  }

  stop() {
    if (this.active) this.bar.stop();
    this.active = false;
  }
}
