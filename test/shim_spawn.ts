/**
 * A shimprog run the test talks to while it runs: it prints one JSON line per operation and stops at
 * each `pause` until the test sends a line (see test/fixtures/fakecuda/shimprog.c).
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { fakeCudaDir, testShim } from "./shim_helpers.ts";

/** A running shimprog. */
export interface LiveProg {
  child: ChildProcess;
  pid: number;
  /** Every line printed so far. */
  lines: Record<string, any>[];
  /** Stderr so far. */
  stderr(): string;
  /** Resolves at the n-th `pause` line (1-based). */
  paused(n: number): Promise<void>;
  /** Send a line: the paused program goes on. */
  resume(): void;
  /** Resolves with the exit status (or the signal name). */
  exited: Promise<number | string>;
}

/** Start shimprog13 under the shim with `ops`; `argv0` runs it through another program (e.g. unshare). */
export async function startProg(ops: string[], env: Record<string, string>, wrapper: string[] = []): Promise<LiveProg> {
  const dir = fakeCudaDir();
  const prog = join(dir, "shimprog13");
  const [cmd, ...args] = wrapper.length ? [...wrapper, prog, ...ops] : [prog, ...ops];
  const child = spawn(cmd!, args, {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LD_LIBRARY_PATH: dir, LD_PRELOAD: await testShim(), SPILLWAY_LOG: "warn", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: Record<string, any>[] = [];
  let buf = "", err = "";
  const waiters: { n: number; resolve: () => void }[] = [];
  const pauses = (): number => lines.filter((l) => l.op === "pause").length;
  const wake = (): void => {
    for (const w of [...waiters]) if (pauses() >= w.n) waiters.splice(waiters.indexOf(w), 1), w.resolve();
  };
  child.stdout!.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    wake();
  });
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | string>((resolve) => child.on("close", (code, sig) => resolve(code ?? sig ?? -1)));
  return {
    child,
    pid: child.pid!,
    lines,
    stderr: () => err,
    paused: (n) =>
      new Promise<void>((resolve, reject) => {
        if (pauses() >= n) return resolve();
        waiters.push({ n, resolve });
        exited.then((s) => reject(new Error(`shimprog ended (${s}) before pause ${n}: ${JSON.stringify(lines)} ${err}`)));
      }),
    resume: () => child.stdin!.write("\n"),
    exited,
  };
}
