/**
 * The rpc-servers a run needs (issue 19): starts the recipe's local ones (`hardware.nodes[].start`)
 * bound to the endpoint's host (127.0.0.1 unless the recipe says otherwise), waits until each
 * answers the RPC HELLO, checks that the remote ones answer, warns about every node that is not
 * on loopback (llama.cpp's RPC protocol has no authentication and no encryption), and stops what
 * it started. Started servers run under the exec guard (parent_death.c) in their own process
 * group: a SIGKILL of spillway takes them along; Ctrl-C reaches them like the runtime.
 *
 * @example
 * ```ts
 * import { startRpcNodes } from "./rpc_servers.ts";
 * const nodes = await startRpcNodes([{ rpc: "127.0.0.1:50052", start: true }], { binary: "/path/rpc-server" });
 * try { ... run llama.cpp with --rpc 127.0.0.1:50052 ... } finally { await nodes.stop(); }
 * ```
 *
 * @module
 */
import type { Readable } from "node:stream";
import { LaunchError } from "../../core/errors.ts";
import type { HardwareSpec, RpcNodeSpec } from "../hardware/spec.ts";
import type { Plan } from "../../core/types.ts";
import { builtRpcPrograms } from "../runtimes/llamacpp_rpc_build.ts";
import { isLoopback, parseEndpoint, queryRpcNode, type RpcNodeInfo } from "../hardware/rpc_client.ts";
import { type LaunchHandle, launchSpec } from "./mod.ts";

/** The rpc-servers of one run. */
export interface RpcNodes {
  /** Servers this run started (endpoint, pid). */
  started: { endpoint: string; pid: number }[];
  /** What each node answered (started and remote). */
  answered: RpcNodeInfo[];
  /** Warnings printed (non-loopback nodes). */
  warnings: string[];
  /** Stop the started servers (SIGTERM, then SIGKILL after the grace time); idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startRpcNodes}. */
export interface RpcNodeOptions {
  /** rpc-server program for nodes without `binary` (default `rpc-server` in PATH). */
  binary?: string;
  /** How long a started server may take to answer, ms (default 20000). */
  readyTimeoutMs?: number;
  /** Where warnings go (default stderr). */
  err?: (s: string) => void;
  /** Milliseconds between SIGTERM and SIGKILL when stopping (default 3000). */
  killGraceMs?: number;
}

/** The warning for a node other hosts can reach. */
export function exposureWarning(endpoint: string, started: boolean): string {
  return `warning: rpc node ${endpoint} is not on loopback: llama.cpp's RPC protocol has no authentication and no encryption; ` +
    `anyone who can reach ${started ? "this port" : "it"} can read and write its memory and run graphs on it. ` +
    "Use it only on a trusted network (a private subnet, a VPN or an SSH tunnel), never on a public address.";
}

function tail(stream: Readable | null): () => string {
  let text = "";
  stream?.on("data", (d: Buffer) => {
    text = (text + d.toString()).slice(-2000);
  });
  return () => text.trim();
}

/** rpc-server argv for a node: `-H host -p port [-t threads]`. */
export function rpcServerArgv(node: RpcNodeSpec, binary: string): string[] {
  const { host, port } = parseEndpoint(node.rpc);
  const argv = [node.binary ?? binary, "-H", host, "-p", String(port)];
  if (node.threads !== undefined) argv.push("-t", String(node.threads));
  return argv;
}

/**
 * Start the nodes marked `start`, then check every node answers. On any failure, stops what it
 * started and throws a LaunchError naming the node (`hardware.nodes[i]`) and why.
 * A started server's output is piped to this process and read by its event loop (the tail goes into
 * errors): while the loop is blocked (a long spawnSync), a server stops at its next write once the
 * pipe is full, and its clients wait. Run the clients asynchronously.
 */
export async function startRpcNodes(nodes: readonly RpcNodeSpec[], options: RpcNodeOptions = {}): Promise<RpcNodes> {
  const err = options.err ?? ((s: string) => void process.stderr.write(s));
  const handles: { endpoint: string; handle: LaunchHandle; output: () => string }[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(handles.map((h) => h.handle.stop("SIGTERM")));
  };
  const warnings: string[] = [];
  const answered: RpcNodeInfo[] = [];
  try {
    for (const [i, node] of nodes.entries()) {
      const { host } = parseEndpoint(node.rpc);
      if (!isLoopback(host)) {
        const w = exposureWarning(node.rpc, node.start === true);
        warnings.push(w);
        err(w + "\n");
      }
      if (!node.start) continue;
      const argv = rpcServerArgv(node, options.binary ?? "rpc-server");
      let handle: LaunchHandle;
      try {
        handle = launchSpec({ argv, env: {} }, {
          runtime: "rpc-server",
          hint: "Build it with `npm run test:rpc` (cached in spillway's cache directory) or from llama.cpp with -DGGML_RPC=ON, and set hardware.nodes[].binary.",
          stdio: "pipe",
          newProcessGroup: true,
          killGraceMs: options.killGraceMs ?? 3000,
        });
      } catch (e) {
        throw new LaunchError(`hardware.nodes[${i}] (${node.rpc}): ${(e as Error).message}`, { cause: e });
      }
      const output = tail(handle.stdout);
      const errOut = tail(handle.stderr);
      handles.push({ endpoint: node.rpc, handle, output: () => `${output()}\n${errOut()}`.trim() });
      let exited: number | null = null;
      void handle.exited.then((s) => (exited = s));
      const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
      for (;;) {
        if (exited !== null) {
          throw new LaunchError(`hardware.nodes[${i}]: rpc-server for ${node.rpc} exited with status ${exited} before answering:\n${output()}\n${errOut()}`.trim());
        }
        try {
          answered.push(await queryRpcNode(node.rpc, 1000));
          break;
        } catch (e) {
          if (Date.now() > deadline) {
            throw new LaunchError(`hardware.nodes[${i}]: rpc-server for ${node.rpc} did not answer within ${options.readyTimeoutMs ?? 20_000} ms: ${(e as Error).message}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    // Nodes started elsewhere must answer now, not halfway through loading the model.
    for (const [i, node] of nodes.entries()) {
      if (node.start) continue;
      try {
        answered.push(await queryRpcNode(node.rpc, 5000));
      } catch (e) {
        throw new LaunchError(`hardware.nodes[${i}]: ${(e as Error).message}`, { cause: e });
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { started: handles.map((h) => ({ endpoint: h.endpoint, pid: h.handle.pid })), answered, warnings, stop };
}

/**
 * The nodes a planned run uses: the recipe's `hardware.nodes` whose endpoints the chosen split
 * names (`plan.settings.split.rpc`), started/checked by {@link startRpcNodes}; null when the plan
 * uses none. Started servers default to spillway's build (`npm run test:rpc` makes it).
 */
export async function startPlannedNodes(
  hardware: HardwareSpec | null,
  plan: Plan | null,
  options: RpcNodeOptions = {},
): Promise<RpcNodes | null> {
  const used = plan?.settings.split?.rpc ?? [];
  if (used.length === 0 || hardware?.kind !== "explicit") return null;
  const nodes = (hardware.overrides.nodes ?? []).filter((n) => used.includes(n.rpc));
  if (nodes.length === 0) return null;
  return startRpcNodes(nodes, { binary: builtRpcPrograms()?.rpcServer ?? "rpc-server", ...options });
}
