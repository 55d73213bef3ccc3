/**
 * The harness's command line, bundled by bench/prepare.sh into bench/.pack/harness.mjs and run by
 * bench/gpu/entry.sh on the GPU machine (node carried along), or directly here with tsx:
 *   probe                 machine details and a ballast check -> OUT/probe.json
 *   synth  --matrix F     synthesize the matrix's models that are missing
 *   matrix --matrix F     run the matrix -> OUT/results.json, results.md, logs
 *   report --results F    render results.md and chart.svg/.png next to a results.json (F: it or its folder)
 *   merge --out F PART... one run's results.json from several calls' parts (bench/harness/merge.ts)
 *   cpu    [--out D]      the CPU-only mode (tiny model, node-llama-cpp) -> D/results.json ...
 *   concurrent            the concurrent tier figure alone -> OUT/concurrent.json (bench/harness/concurrent.ts)
 * Common options: --llama-bin DIR, --work DIR, --out DIR, --root DIR, --deadline EPOCH_SECONDS.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startBallast } from "./ballast.ts";
import { machineDetails } from "./machine.ts";
import { killAll, killChildrenOnExit } from "./proc.ts";

/** Parsed `--key value` options and positionals. */
export interface ParsedArgs {
  command: string;
  opts: Record<string, string>;
  positionals: string[];
}

/** Parses `command --key value --flag` (a flag followed by another option or nothing is "true"). */
export function parseArgs(argv: string[]): ParsedArgs {
  const opts: Record<string, string> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) opts[a.slice(2)] = "true";
      else {
        opts[a.slice(2)] = next;
        i++;
      }
    } else positionals.push(a);
  }
  return { command: positionals.shift() ?? "", opts, positionals };
}

async function probe(o: Record<string, string>): Promise<number> {
  const root = resolve(o.root ?? ".");
  const out = resolve(o.out ?? "bench/.out");
  mkdirSync(out, { recursive: true });
  const machine = machineDetails();
  const result: Record<string, unknown> = { machine, node: process.version };
  if (machine.gpus.length > 0) {
    const t0 = performance.now();
    try {
      const b = await startBallast(join(root, "bench/gpu/ballast.py"), Number(o.keep ?? 12), {
        lifetimeS: 120,
        logFile: join(out, "ballast.log"),
      });
      const during = machineDetails().gpus[0]?.memoryFreeMiB ?? null;
      await b.stop();
      const after = machineDetails().gpus[0]?.memoryFreeMiB ?? null;
      result.ballast = {
        keepGiB: Number(o.keep ?? 12),
        readySeconds: (performance.now() - t0) / 1000,
        freeBytes: b.freeBytes,
        heldBytes: b.heldBytes,
        nvidiaSmiFreeMiBDuring: during,
        nvidiaSmiFreeMiBAfter: after,
      };
    } catch (e) {
      result.ballast = { error: String(e) };
    }
  }
  writeFileSync(join(out, "probe.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify(result, null, 2));
  return 0;
}

/** Runs the harness command line; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { command, opts, positionals } = parseArgs(argv);
  killChildrenOnExit();
  try {
    switch (command) {
      case "probe":
        return await probe(opts);
      case "synth":
        return await (await import("./synth.ts")).synthCommand(opts);
      case "matrix":
        return await (await import("./runner.ts")).matrixCommand(opts);
      case "report":
        return await (await import("./report.ts")).reportCommand(opts);
      case "cpu":
        return await (await import("./cpu.ts")).cpuCommand(opts);
      case "concurrent":
        return await (await import("./concurrent.ts")).concurrentCommand(opts);
      case "merge":
        return (await import("./merge.ts")).mergeCommand(opts, positionals);
      default:
        console.error("usage: harness probe|synth|matrix|report|cpu|concurrent|merge [--options]");
        return 2;
    }
  } finally {
    await killAll();
  }
}

const isMain = typeof process !== "undefined" && process.argv[1] !== undefined &&
  /(?:harness\.mjs|harness[/\\]main\.ts)$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    console.error(e instanceof Error ? e.stack ?? e.message : e);
    process.exit(1);
  });
}
