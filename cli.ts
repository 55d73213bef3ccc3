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
import { SpillwayError } from "./engine/errors.ts";

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
        process.exitCode = 2;
      } else {
        throw e;
      }
    }
  };
}

/** Build the CLI (exported for tests). */
export function createCli(): ReturnType<typeof cac> {
  const cli = cac("spillway");

  cli
    .command("kmod <action>", "Kernel module: build | load | unload | status")
    .option("--kdir <dir>", "Kernel build directory (default /lib/modules/$(uname -r)/build)")
    .option("--params <params>", "Module parameters for load, e.g. 'pool_limit_mb=4096 group=video'")
    .option("--json", "Machine-readable status")
    .action(wrap(async (action: string, opts: Record<string, unknown>) => {
      const { kmodCommand } = await import("./kmod/cli.ts");
      return kmodCommand(action as "build" | "load" | "unload" | "status", opts);
    }));

  cli.help();
  cli.version(pkg.version);
  return cli;
}

/** Run the CLI on `argv` (process.argv shape). */
export function main(argv: string[] = process.argv): void {
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
  void cli.runMatchedCommand();
}

main();
