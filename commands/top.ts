/**
 * `spillway top`: a live view of every process under the spillway shim (VRAM, host memory and
 * spills per tier, from the shim's stats records) and of the kernel module's pool.
 *
 * @module
 */
import process from "node:process";
import { renderSnapshot, snapshot, snapshotJson, statsDirectory } from "../engine/monitor.ts";

const write = (s: string): void => void process.stdout.write(s);

/** Options of {@link topCommand}. */
export interface TopCommandOptions {
  /** One JSON snapshot on stdout (with `once`), or one JSON line per refresh. */
  json?: boolean;
  /** Print one snapshot and exit. */
  once?: boolean;
  /** Refresh interval, ms (default 1000). */
  intervalMs?: number;
  /** Stats directory (default SPILLWAY_STATS_DIR or /dev/shm). */
  statsDir?: string;
  out?: (text: string) => void;
  /** Stop after this many refreshes (tests); unlimited by default. */
  maxRefreshes?: number;
  /** Redraw in place with ANSI escapes (default: when stdout is a terminal). */
  tty?: boolean;
}

/**
 * `spillway top`: a live view (ANSI redraw about every second) until Ctrl-C; `--once`, `--json`.
 * When stdout is not a terminal (a pipe, a file) each refresh is a plain table after a
 * timestamped separator line, with no escape codes.
 */
export async function topCommand(options: TopCommandOptions = {}): Promise<number> {
  const out = options.out ?? write;
  const statsDir = options.statsDir ?? statsDirectory();
  const tty = options.tty ?? process.stdout.isTTY === true;
  const draw = (): void => {
    const s = snapshot({ statsDir });
    if (options.json) out(JSON.stringify(snapshotJson(s)) + "\n");
    else if (options.once) out(renderSnapshot(s, process.stdout.columns ?? 100) + "\n");
    // Home the cursor and clear the screen, then draw: plain ANSI, no dependency.
    else if (tty) out("\x1b[H\x1b[2J" + renderSnapshot(s, process.stdout.columns ?? 100) + "\n\n(Ctrl-C to quit)\n");
    else out(`--- ${new Date().toISOString()}\n${renderSnapshot(s, 100)}\n`);
  };
  draw();
  if (options.once) return 0;
  const max = options.maxRefreshes ?? Infinity;
  return await new Promise<number>((resolveTop) => {
    let n = 1;
    const timer = setInterval(() => {
      draw();
      if (++n >= max) finish();
    }, options.intervalMs ?? 1000);
    const finish = (): void => {
      clearInterval(timer);
      resolveTop(0);
      // Keep catching for a moment: a second SIGINT while top exits (npx relays signals too)
      // would otherwise end it by the signal instead of exit status 0.
      setTimeout(() => {
        process.off("SIGINT", finish);
        process.off("SIGTERM", finish);
      }, 500).unref();
    };
    process.on("SIGINT", finish);
    process.on("SIGTERM", finish);
  });
}
