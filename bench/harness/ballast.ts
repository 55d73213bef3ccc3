/**
 * The VRAM ballast: a python process (bench/gpu/ballast.py) holding all GPU memory but N GiB, so
 * every method of a matrix row faces the same free memory. It is started, waited on until it
 * reports, and stopped by pid; it also dies with the harness (PR_SET_PDEATHSIG).
 *
 * @module
 */
import { startChild, type StepResult } from "./proc.ts";

/** A running ballast. */
export interface Ballast {
  pid: number;
  /** Free VRAM the driver reported once the ballast was in place, bytes. */
  freeBytes: number;
  heldBytes: number;
  totalBytes: number;
  /** Stops the ballast and waits for it to exit. */
  stop(): Promise<void>;
}

/** Parses the ballast's ready line: `READY free=<n> held=<n> total=<n>`. */
export function parseReadyLine(text: string): { free: number; held: number; total: number } | null {
  const m = /READY free=(\d+) held=(\d+) total=(\d+)/.exec(text);
  return m ? { free: Number(m[1]), held: Number(m[2]), total: Number(m[3]) } : null;
}

/**
 * Starts the ballast keeping `keepGiB` free and resolves once it reports; rejects (after stopping
 * it) when it fails or does not report within `readyTimeoutS`.
 */
export async function startBallast(
  script: string,
  keepGiB: number,
  opts: { python?: string; readyTimeoutS?: number; lifetimeS: number; logFile?: string },
): Promise<Ballast> {
  let text = "";
  let notify: () => void = () => {};
  const seen = new Promise<void>((r) => (notify = r));
  const { child, done } = startChild([opts.python ?? "python3", script, String(keepGiB)], {
    timeoutS: opts.lifetimeS,
    env: { PYTHONUNBUFFERED: "1" },
    logFile: opts.logFile,
    onStdout: (d) => {
      text += d;
      if (/^(READY|ERROR)/m.test(text)) notify();
    },
  });
  let exited: StepResult | null = null;
  void done.then((r) => {
    exited = r;
    notify();
  });
  const timer = new Promise<void>((r) => setTimeout(r, (opts.readyTimeoutS ?? 90) * 1000).unref());
  await Promise.race([seen, timer]);
  const ready = parseReadyLine(text);
  const stop = async (): Promise<void> => {
    if (exited === null) child.kill("SIGTERM");
    const r = await Promise.race([done, new Promise<null>((res) => setTimeout(() => res(null), 10_000).unref())]);
    if (r === null) {
      child.kill("SIGKILL");
      await done;
    }
  };
  if (!ready) {
    await stop();
    const res = exited as StepResult | null;
    throw new Error(`ballast keeping ${keepGiB} GiB did not get ready: ${(text + (res?.stderr ?? "")).trim().slice(-800)}`);
  }
  return { pid: child.pid ?? -1, freeBytes: ready.free, heldBytes: ready.held, totalBytes: ready.total, stop };
}
