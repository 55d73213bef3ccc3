/**
 * The devices a model can be split over (issue 19): every local GPU (NVML, or described in the
 * recipe's `hardware.gpus`) and every device of the llama.cpp rpc-servers the recipe names in
 * `hardware.nodes` (described there, or asked from the server over the RPC protocol). The result
 * is `HardwareProfile.devices`, in llama.cpp's device order: rpc devices first (in `--rpc` order),
 * then local GPUs (llama.cpp src/llama.cpp puts "RPC servers at the front of the list").
 *
 * @example
 * ```ts
 * import { rpcDevices } from "./nodes.ts";
 * const devs = rpcDevices([{ rpc: "10.0.0.2:50052", devices: [{ kind: "gpu", name: "RTX 4090", memoryBytes: 24 * 2 ** 30 }] }]);
 * // [{ id: "rpc0", where: "rpc", endpoint: "10.0.0.2:50052", memGBps: 1008, ... }]
 * ```
 *
 * @module
 */
import type { DeviceInfo, HardwareProfile } from "../../core/types.ts";
import type { NvmlGpu } from "../../ffi/nvml.ts";
import { gpuSpecFor, pcieBandwidth } from "./gpu_specs.ts";
import { isLoopback, parseEndpoint, queryRpcNode } from "./rpc_client.ts";
import type { LocalGpuSpec, RpcNodeSpec } from "./spec.ts";

/** Network assumed when the recipe gives none: 10 GbE. `spillway bench --rpc` measures the real one. */
export const DEFAULT_LINK = { GBps: 1.25, rttMs: 0.2 };
/** An rpc-server on this host (loopback TCP). */
export const LOOPBACK_LINK = { GBps: 5, rttMs: 0.05 };
/** A CPU exposed by an rpc-server, when the recipe gives no numbers. */
const CPU_DEVICE = { memGBps: 20, tflops: 0.5 };
/** A GPU of unknown name behind an rpc-server. */
const GPU_DEVICE = { memGBps: 300, tflops: 20 };

/** The link of a node: the recipe's numbers, else loopback or the 10 GbE default. */
export function nodeLink(node: Pick<RpcNodeSpec, "rpc" | "linkGBps" | "rttMs">): DeviceInfo["link"] {
  const loop = isLoopback(parseEndpoint(node.rpc).host);
  const d = loop ? LOOPBACK_LINK : DEFAULT_LINK;
  return { GBps: node.linkGBps ?? d.GBps, rttMs: node.rttMs ?? d.rttMs };
}

/** Local GPUs found by NVML (or nvidia-smi) as devices `gpu0..`; bandwidths from the spec table. */
export function localGpuDevices(gpus: readonly NvmlGpu[]): DeviceInfo[] {
  return gpus.map((g, i) => {
    const spec = gpuSpecFor(g.name);
    const pcie = pcieBandwidth(g.pcieGen, g.pcieWidth);
    let memGBps = spec?.vramGBps;
    if (memGBps === undefined && g.busWidthBits && g.memClockMHz) memGBps = +(g.busWidthBits / 8 * g.memClockMHz * 2 / 1000).toFixed(0);
    return {
      id: `gpu${i}`,
      where: "local",
      kind: "gpu",
      name: g.name,
      totalBytes: g.totalBytes,
      freeBytes: g.freeBytes,
      memGBps: memGBps ?? 500,
      tflops: spec?.fp16Tflops ?? 50,
      // Hidden states between local GPUs go GPU -> GPU (peer copy or through host) over PCIe.
      link: { GBps: pcie.copyGBps, rttMs: 0.01 },
    };
  });
}

/** Local GPUs a recipe describes (`hardware.gpus`), as devices `gpu0..`. */
export function describedGpuDevices(gpus: readonly LocalGpuSpec[]): DeviceInfo[] {
  return localGpuDevices(gpus.map((g, i) => ({
    index: i,
    name: g.name ?? `GPU ${i}`,
    totalBytes: g.vramBytes,
    freeBytes: g.freeVramBytes ?? g.vramBytes,
    pcieGen: g.pcie?.gen ?? 4,
    pcieWidth: g.pcie?.width ?? 16,
  }))).map((d, i) => {
    const g = gpus[i]!;
    if (g.vramGBps !== undefined) d.memGBps = g.vramGBps;
    if (g.fp16Tflops !== undefined) d.tflops = g.fp16Tflops;
    return d;
  });
}

/**
 * Devices of rpc-servers the recipe describes in full (`devices` given): ids `rpc0..` over all
 * nodes in order. Nodes without `devices` must be asked first ({@link resolveNodes}).
 */
export function rpcDevices(nodes: readonly (RpcNodeSpec & { devices: NonNullable<RpcNodeSpec["devices"]> })[]): DeviceInfo[] {
  const out: DeviceInfo[] = [];
  for (const node of nodes) {
    const link = nodeLink(node);
    node.devices.forEach((d, index) => {
      const kind = d.kind ?? "gpu";
      const spec = kind === "gpu" && d.name ? gpuSpecFor(d.name) : null;
      const dflt = kind === "cpu" ? CPU_DEVICE : GPU_DEVICE;
      out.push({
        id: `rpc${out.length}`,
        where: "rpc",
        kind,
        name: d.name ?? (kind === "cpu" ? "CPU" : "GPU"),
        totalBytes: d.memoryBytes,
        freeBytes: d.freeBytes ?? d.memoryBytes,
        memGBps: d.memGBps ?? spec?.vramGBps ?? dflt.memGBps,
        tflops: d.tflops ?? spec?.fp16Tflops ?? dflt.tflops,
        endpoint: node.rpc,
        index,
        link,
      });
    });
  }
  return out;
}

/**
 * Fill in the devices of nodes the recipe does not describe by asking their rpc-servers (HELLO,
 * DEVICE_COUNT, GET_DEVICE_MEMORY). The protocol does not say what a device is: a server whose
 * device reports as much memory as this host's RAM or more is taken for a CPU (rpc-server built
 * without a GPU backend), otherwise for a GPU; the recipe can say `kind` to be sure.
 * @throws RpcError naming the node when a server does not answer.
 */
export async function resolveNodes(
  nodes: readonly RpcNodeSpec[],
  options: { hostRamBytes?: number; hostAvailableBytes?: number; query?: typeof queryRpcNode } = {},
): Promise<(RpcNodeSpec & { devices: NonNullable<RpcNodeSpec["devices"]> })[]> {
  const query = options.query ?? queryRpcNode;
  const out = [];
  for (const [i, n] of nodes.entries()) {
    if (n.devices !== undefined) {
      out.push({ ...n, devices: n.devices });
      continue;
    }
    // A server spillway run starts on this host is not running while planning: spillway's build is
    // CPU-only, so it will expose this host's CPU and RAM.
    if (n.start) {
      out.push({ ...n, devices: [{ kind: "cpu" as const, name: "CPU (started by spillway run)", memoryBytes: options.hostRamBytes ?? 0, freeBytes: options.hostAvailableBytes ?? options.hostRamBytes ?? 0 }] });
      continue;
    }
    let info: Awaited<ReturnType<typeof queryRpcNode>>;
    try {
      info = await query(n.rpc);
    } catch (e) {
      // Which node did not answer, for the caller's located message.
      throw Object.assign(e as Error, { nodeIndex: i });
    }
    out.push({
      ...n,
      devices: info.devices.map((d) => ({
        kind: options.hostRamBytes !== undefined && isLoopback(parseEndpoint(n.rpc).host) && d.totalBytes >= options.hostRamBytes * 0.9 ? "cpu" as const : "gpu" as const,
        memoryBytes: d.totalBytes,
        freeBytes: d.freeBytes,
      })),
    });
  }
  return out;
}

/**
 * Set `profile.devices`: the local GPUs (given, or the profile's one GPU) then the rpc devices,
 * in llama.cpp's order (rpc first). Leaves it unset for one local GPU and no node.
 */
export function withDevices(profile: HardwareProfile, local: DeviceInfo[], rpc: DeviceInfo[]): HardwareProfile {
  if (local.length === 0 && profile.gpu) {
    local = describedGpuDevices([{ name: profile.gpu.name, vramBytes: profile.gpu.vramBytes, freeVramBytes: profile.gpu.freeVramBytes, vramGBps: profile.gpu.vramGBps, fp16Tflops: profile.gpu.fp16Tflops, pcie: profile.gpu.pcie }]);
  }
  if (local.length <= 1 && rpc.length === 0) return profile;
  const out: HardwareProfile = { ...profile, devices: [...rpc, ...local] };
  out.notes = [
    ...(profile.notes ?? []),
    `${local.length} local GPU(s) and ${rpc.length} rpc device(s): ` +
      [...rpc, ...local].map((d) => `${d.id} ${d.name} ${(d.freeBytes / 2 ** 30).toFixed(1)} GiB free${d.endpoint ? ` @${d.endpoint}` : ""}`).join(", "),
  ];
  const exposed = [...new Set(rpc.map((d) => d.endpoint!).filter((e) => !isLoopback(parseEndpoint(e).host)))];
  if (exposed.length > 0) {
    out.notes.push(`rpc nodes ${exposed.join(", ")} are not on loopback: llama.cpp's RPC protocol has no authentication or encryption; use a trusted network only`);
  }
  return out;
}
