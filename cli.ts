#!/usr/bin/env node
/**
 * The `spillway` command line. Thin: it parses arguments with cac and calls the engine, shim,
 * kmod and bench modules, each loaded only when its command runs.
 *
 * @module
 */
import process from "node:process";
import { cac } from "cac";
import pkg from "./package.json" with { type: "json" };
import { RecipeSchemaError, SpillwayError } from "./core/errors.ts";

/** Exit codes: 0 ok, 1 failure reported by the command, 2 usage or input error. */
type Action = (...args: never[]) => Promise<number>;

function wrap<A extends Action>(action: A): (...args: Parameters<A>) => Promise<void> {
  return async (...args) => {
    try {
      process.exitCode = await action(...args);
    } catch (e) {
      if (e instanceof SpillwayError) {
        console.error(`spillway: ${e.message}`);
        if (process.env.SPILLWAY_LOG === "debug" && e.cause) console.error(e.cause);
        process.exitCode = e.kind === "interrupted" ? 130 : 2;
      } else {
        throw e;
      }
    }
  };
}

/** A numeric option's value: a number (an integer when `integer`) of at least `min`, else a usage error naming the flag. */
function numberOption(value: unknown, flag: string, min: number, integer = true): number {
  const n = Number(value);
  if (value === true || value === "" || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new RecipeSchemaError("(command line)", flag, `expected ${integer ? "an integer" : "a number"} >= ${min}, got '${String(value)}'`);
  }
  return n;
}

/** Build the CLI: its commands, each loading its module from commands/ when it runs. */
function createCli(): ReturnType<typeof cac> {
  const cli = cac("spillway");

  cli
    .command("plan <recipe>", "Plan placement for a recipe: candidates, memory per tier, predicted speed, the choice and why")
    .option("--json", "Print the Plan object as JSON")
    .option("--hardware <name>", "Hardware profile name (or 'probe') overriding the recipe's")
    .option("--contexts <list>", "Plan at each context length (e.g. 4k,16k,32k,64k,128k): placement, KV, memory, predicted speeds, and the longest context that fits")
    .option("--autotune", "Measure the top candidates with short llama-bench trials and pick the measured best")
    .option("--force", "With --autotune: run the trials again even when a stored outcome exists")
    .option("--trial-seconds <s>", "With --autotune: seconds per trial", { default: 8 })
    .option("--top <n>", "With --autotune: how many candidates to try", { default: 4 })
    .option("--llama-bench <path>", "With --autotune: the llama-bench binary")
    .option("--out-dir <dir>", "With --autotune: where to write the results JSON and chart")
    .action(wrap(async (recipe: string, o: Record<string, unknown>) => {
      if (!o.autotune) {
        const { planCommand } = await import("./commands/plan.ts");
        return planCommand(recipe, { json: Boolean(o.json), hardware: o.hardware as string | undefined, contexts: o.contexts === undefined ? undefined : String(o.contexts) });
      }
      const { planRecipe } = await import("./engine/recipe_plan.ts");
      const { formatPlan } = await import("./engine/planner/format.ts");
      const { autotune } = await import("./engine/autotune/autotune.ts");
      // The cost model's plan, not one a stored outcome already changed: autotune applies (or
      // with --force replaces) the stored outcome itself and records what the model predicted.
      const planned = await planRecipe(recipe, { hardware: o.hardware as string | undefined, cachedAutotune: false });
      const result = await autotune(planned.plan, planned.recipe, {
        model: planned.model,
        hardware: planned.hardware,
        force: Boolean(o.force),
        trialSeconds: numberOption(o.trialSeconds, "--trial-seconds", 0.1, false),
        top: numberOption(o.top, "--top", 1),
        llamaBench: o.llamaBench as string | undefined,
        outDir: o.outDir as string | undefined,
      });
      if (o.json) console.log(JSON.stringify({ plan: result.plan, autotune: result.entry, files: result.files }, null, 2));
      else console.log(formatPlan(result.plan));
      return 0;
    }));

  cli
    .command("run [recipe]", "Plan and launch a recipe's runtime, or wrap any command: spillway run -- llama-server -m model.gguf")
    .option("--dry-run", "Print the plan and the exact command and environment; launch nothing")
    .option("--json", "Machine-readable output")
    .option("--hardware <name>", "Hardware profile name (or 'probe') overriding the recipe's")
    .option("--shim <path>", "Shim library to preload (default: the built one)")
    .action(wrap(async (recipe: string | undefined, o: Record<string, unknown>) => {
      const { runCommand } = await import("./commands/run.ts");
      const extra = (o["--"] as string[] | undefined) ?? [];
      return runCommand(recipe ?? null, extra, {
        dryRun: Boolean(o.dryRun),
        json: Boolean(o.json),
        hardware: o.hardware as string | undefined,
        shimPath: o.shim as string | undefined,
      });
    }));

  cli
    .command("synth [shape]", "Write a GGUF with random weights of a named real shape (--list shows them)")
    .option("-q, --quant <type>", "Q8_0 | Q4_0 | F16", { default: "Q8_0" })
    .option("-o, --out <file>", "Output .gguf path")
    .option("--sparse", "Write the header and leave the tensor data as a hole (header-only tests)")
    .option("--seed <n>", "Random seed", { default: 1 })
    .option("--vocab <n>", "Vocabulary size override")
    .option("--list", "List the known shapes")
    .action(wrap(async (shape: string | undefined, o: Record<string, unknown>) => {
      const { synthCommand, listShapes } = await import("./commands/synth.ts");
      if (o.list) {
        for (const s of listShapes()) console.log(`${s.id.padEnd(22)} ${s.description ?? ""}`);
        return 0;
      }
      if (!shape) {
        // A usage error says what is missing (on stderr), then what would do.
        console.error("spillway synth: missing the shape to write, e.g. `spillway synth tiny-moe -o tiny.gguf`; known shapes:");
        for (const s of listShapes()) console.error(`  ${s.id.padEnd(22)} ${s.description ?? ""}`);
        return 2;
      }
      return synthCommand({
        shape,
        quant: String(o.quant),
        out: o.out as string,
        sparse: Boolean(o.sparse),
        seed: numberOption(o.seed, "--seed", 0),
        vocabSize: o.vocab === undefined ? undefined : numberOption(o.vocab, "--vocab", 1),
      });
    }));

  cli
    .command("bench", "Measure this machine's memory tiers (PCIe copy, zero-copy, VRAM, RAM, disk); cached per machine")
    .option("--json", "Print the JSON report on stdout")
    .option("--force", "Measure even when a cached profile exists")
    .option("--quick", "Smaller buffers: faster, rougher")
    .option("--repeats <n>", "Repeats per figure", { default: 5 })
    .option("--target <path>", "Model file or directory whose filesystem to measure")
    .option("--skip <parts>", "Comma list of parts to skip: gpu,cpu,disk,concurrent")
    .option("--pin-bytes <size>", "Bytes per pinned allocation / registration trial, e.g. 4G (default: the buffer size)")
    .option("--rpc <endpoints>", "Measure llama.cpp rpc-servers instead (host:port,...): devices, round trip, transfer rates")
    .action(wrap(async (o: Record<string, unknown>) => {
      if (o.rpc !== undefined) {
        const { benchRpcCommand } = await import("./commands/bench_rpc.ts");
        return benchRpcCommand({
          endpoints: String(o.rpc).split(",").filter((x) => x),
          json: Boolean(o.json),
          bytes: o.quick ? 4 * 2 ** 20 : undefined,
          repetitions: numberOption(o.repeats, "--repeats", 1),
        });
      }
      const { benchCommand } = await import("./commands/bench.ts");
      let pinBytes: number | undefined;
      if (o.pinBytes !== undefined) {
        const { parseSize } = await import("./engine/recipe/size.ts");
        const n = parseSize(String(o.pinBytes));
        if (n === null || n < 1 << 20) throw new RecipeSchemaError("(command line)", "--pin-bytes", `expected a size >= 1M such as 4G, got '${String(o.pinBytes)}'`);
        pinBytes = n;
      }
      const skip = o.skip === undefined ? undefined : String(o.skip).split(",");
      const bad = skip?.filter((p) => !["gpu", "cpu", "disk", "concurrent"].includes(p)) ?? [];
      if (bad.length > 0) {
        console.error(`spillway bench: --skip ${bad.join(",")}: unknown part; use gpu, cpu, disk or concurrent`);
        return 2;
      }
      return benchCommand({
        json: Boolean(o.json),
        force: Boolean(o.force),
        quick: Boolean(o.quick),
        repeats: numberOption(o.repeats, "--repeats", 1),
        target: o.target as string | undefined,
        skip: skip as ("gpu" | "cpu" | "disk" | "concurrent")[] | undefined,
        pinBytes,
      });
    }));

  cli
    .command("top", "Live view of every spillway process: VRAM, host and spills per tier")
    .option("--json", "JSON output")
    .option("--once", "Print one snapshot and exit")
    .action(wrap(async (o: Record<string, unknown>) => {
      const { topCommand } = await import("./commands/top.ts");
      return topCommand({ json: Boolean(o.json), once: Boolean(o.once) });
    }));

  cli
    .command("kmod <action>", "Kernel module: build | load | unload | status")
    .option("--kdir <dir>", "Kernel build directory (default /lib/modules/$(uname -r)/build)")
    .option("--params <params>", "Module parameters for load, e.g. 'pool_limit_bytes=4294967296 group=44'")
    .option("--ko <file>", "The .ko to load (default: the built one)")
    .option("--json", "Machine-readable status")
    .action(wrap(async (action: string, o: Record<string, unknown>) => {
      const { kmodCommand } = await import("./commands/kmod.ts");
      const actions = ["build", "load", "unload", "status"];
      if (!actions.includes(action)) {
        console.error(`spillway kmod: unknown action '${action}'; use one of ${actions.join(", ")}`);
        return 2;
      }
      return kmodCommand(action as "build" | "load" | "unload" | "status", {
        kernelDir: o.kdir as string | undefined,
        params: o.params as string | undefined,
        ko: o.ko as string | undefined,
        json: Boolean(o.json),
      });
    }));

  cli.help();
  cli.version(pkg.version);
  return cli;
}

/**
 * A closed stdout (`spillway plan RECIPE | head -1`) ends spillway quietly with status 0, as CLI
 * tools do, instead of an EPIPE stack trace; children are stopped by the launcher's exit handler.
 */
function quietOnClosedStdout(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    process.exit(0);
  });
}

/** Run the CLI on `argv` (process.argv shape). */
export function main(argv: string[] = process.argv): void {
  quietOnClosedStdout();
  const cli = createCli();
  cli.parse(argv, { run: false });
  if (!cli.matchedCommand && cli.args.length > 0) {
    console.error(`spillway: unknown command '${cli.args[0]}'. See 'spillway --help'.`);
    process.exitCode = 2;
    return;
  }
  if (!cli.matchedCommand && !cli.options.help && !cli.options.version) {
    cli.outputHelp();
    return;
  }
  try {
    void cli.runMatchedCommand();
  } catch (e) {
    // cac's own usage errors (an option without its value): a message, not a stack trace.
    if ((e as Error).name !== "CACError") throw e;
    console.error(`spillway: ${(e as Error).message}. See 'spillway ${cli.matchedCommandName ?? ""} --help'.`);
    process.exitCode = 2;
  }
}

main();
