/**
 * Progress bars for long work (synthesis, model load, generation) on a terminal: cli-progress on
 * stderr when it is a TTY, nothing otherwise (logs and pipes stay clean).
 *
 * @module
 */
import cliProgress from "cli-progress";
import process from "node:process";

/** A progress bar; all methods are no-ops when stderr is not a terminal. */
export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** Units a bar shows its counts in. */
export type ProgressUnit = "bytes" | "tokens" | "fraction";

function fmt(n: number, unit: ProgressUnit): string {
  if (unit === "bytes") return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (unit === "fraction") return `${Math.round(n * 100)}%`;
  return String(Math.round(n));
}

/** A bar labelled `label`; writes only when `stream` (default stderr) is a TTY. */
export function progressBar(label: string, unit: ProgressUnit, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update() {}, stop() {} };
  let bar: cliProgress.SingleBar | null = null;
  let stopped = false;
  return {
    update(done: number, total: number) {
      if (stopped) return;
      const payload = { label: label.padEnd(8), doneText: fmt(done, unit), totalText: unit === "fraction" ? "" : `/ ${fmt(total, unit)}` };
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { stream, format: "{label} [{bar}] {doneText} {totalText}", hideCursor: true, clearOnComplete: true, barsize: 30 },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Math.max(total, 1e-9), done, payload);
      } else {
        bar.setTotal(Math.max(total, 1e-9));
        bar.update(done, payload);
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar?.stop();
    },
  };
}
