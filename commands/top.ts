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
}

/** `spillway top`: a live view (ANSI redraw about every second) until Ctrl-C; `--once`, `--json`. */
export async function topCommand(options: TopCommandOptions = {}): Promise<number> {
  const out = options.out ?? write;
  const statsDir = options.statsDir ?? statsDirectory();
  const draw = (): void => {
    const s = snapshot({ statsDir });
    if (options.json) out(JSON.stringify(snapshotJson(s)) + "\n");
    else if (options.once) out(renderSnapshot(s, process.stdout.columns ?? 100) + "\n");
    // Home the cursor and clear the screen, then draw: plain ANSI, no dependency.
    else out("\x1b[H\x1b[2J" + renderSnapshot(s, process.stdout.columns ?? 100) + "\n\n(Ctrl-C to quit)\n");
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
      process.off("SIGINT", finish);
      process.off("SIGTERM", finish);
      resolveTop(0);
    };
    process.on("SIGINT", finish);
    process.on("SIGTERM", finish);
  });
}
