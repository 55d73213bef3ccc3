/**
 * Turn a recipe's `hardware` field (or the CLI's `--hardware`) into one HardwareProfile: a
 * built-in profile, the measured profile of `spillway bench` when present, a probe, or explicit
 * numbers over any of them. The profile records where it came from (`source`, `notes`).
 *
 * @module
 */
import { HardwareProbeError } from "../../core/errors.ts";
import type { HardwareOverrides, HardwareSpec } from "./spec.ts";
import type { HardwareProfile } from "../../core/types.ts";
import { type CachedProfile, measuredProfilePath, readMeasuredProfile } from "./measured_profile.ts";
import { type CacheFile, findBenchEntry } from "./measure/machine_cache.ts";
import { probeHardware, type ProbeOptions } from "./probe.ts";
import { getProfile, profileNames } from "./profiles.ts";
import { describedGpuDevices, resolveNodes, rpcDevices, withDevices } from "./nodes.ts";
import { pcieBandwidth } from "./gpu_specs.ts";
import { type queryRpcNode, RpcError } from "./rpc_client.ts";

/** Options of {@link resolveHardware}. */
export interface ResolveOptions {
  /** Profile name from the command line; wins over the recipe (`probe` probes). */
  override?: string;
  /** Measured profile location (tests); default ~/.cache/spillway/hardware.json. */
  cachePath?: string;
  /** Options passed to the probe (tests inject facts here). */
  probe?: ProbeOptions;
  /** Asks an rpc-server for its devices (tests inject one; default: the RPC protocol client). */
  queryRpc?: typeof queryRpcNode;
}

function builtin(name: string): HardwareProfile {
  const p = getProfile(name);
  if (p === null) {
    throw new HardwareProbeError(`unknown hardware profile ${JSON.stringify(name)}; built-in profiles: ${profileNames().join(", ")}`);
  }
  p.notes = [...(p.notes ?? []), `built-in profile ${name}`];
  return p;
}

/**
 * The measured profile for the machine `live` describes. A cache written by `spillway bench` keys
 * its measurements by GPU and host, so one copied from another machine (or from before a GPU
 * swap) is not used; a file holding just a profile (written by hand) is taken as it is.
 */
async function measuredFor(live: HardwareProfile, path: string): Promise<CachedProfile> {
  const cached = await readMeasuredProfile(path);
  if (cached.profile === null || (cached.profile as CacheFile).machines === undefined) return cached;
  const gpuName = live.gpu?.name ?? "none";
  const entry = findBenchEntry({ gpuName }, path);
  if (entry !== null) return { profile: entry.profile };
  return { profile: null, why: `${path} holds measurements of other machines only (not of ${gpuName} on this host)` };
}

async function probeOrMeasured(fallback: string | undefined, options: ResolveOptions): Promise<HardwareProfile> {
  const path = options.cachePath ?? measuredProfilePath();
  const live = await probeHardware({ ...options.probe, fallback: undefined });
  const measured = await measuredFor(live, path);
  if (measured.profile !== null) {
    const p = measured.profile;
    p.notes = [...(p.notes ?? []), `measured profile from ${path} (spillway bench)`];
    // Bandwidths keep; free memory is a fact of now (another process or a ballast may hold VRAM).
    p.host.availableRamBytes = live.host.availableRamBytes;
    // Every local GPU as probed now (issue 19): the measured profile describes GPU 0 only.
    if (live.devices !== undefined) p.devices = live.devices;
    if (p.gpu !== null && live.gpu !== null && live.gpu.name === p.gpu.name) {
      p.gpu.freeVramBytes = live.gpu.freeVramBytes;
      p.notes.push(`free VRAM ${(live.gpu.freeVramBytes / 2 ** 30).toFixed(2)} GiB and available RAM probed now`);
    }
    return p;
  }
  const fb = fallback ?? options.probe?.fallback;
  const p = live.gpu === null && fb !== undefined ? await probeHardware({ ...options.probe, fallback: fb }) : live;
  p.notes = [...(p.notes ?? []), `no measured profile (${measured.why}); probed this machine`];
  return p;
}

/**
 * The recipe's `hardware.gpus` and `hardware.nodes` (issue 19) as `profile.devices`: described
 * GPUs (else the probed ones), then the rpc-servers' devices, asked from each server the recipe
 * does not describe. A server that does not answer is an error naming the node.
 */
async function attachDevices(p: HardwareProfile, o: HardwareOverrides, options: ResolveOptions): Promise<HardwareProfile> {
  if (o.gpus === undefined && o.nodes === undefined) return p;
  const local = o.gpus !== undefined ? describedGpuDevices(o.gpus) : (p.devices ?? []).filter((d) => d.where === "local");
  let nodes: Awaited<ReturnType<typeof resolveNodes>> = [];
  try {
    nodes = await resolveNodes(o.nodes ?? [], { hostRamBytes: p.host.ramBytes, hostAvailableBytes: p.host.availableRamBytes, ...(options.queryRpc ? { query: options.queryRpc } : {}) });
  } catch (e) {
    const i = (e as { nodeIndex?: number }).nodeIndex ?? (o.nodes ?? []).findIndex((n) => e instanceof RpcError && n.rpc === e.endpoint);
    throw new HardwareProbeError(
      `hardware.nodes[${i}]: ${(e as Error).message}; start it (or set start: true to let spillway run start a local one), or describe its devices in the recipe (hardware.nodes[${i}].devices)`,
      { cause: e },
    );
  }
  return withDevices({ ...p, devices: undefined }, local, rpcDevices(nodes));
}

/** Apply explicit numbers over a profile (deep merge; `gpu: null` removes the GPU). */
export function applyOverrides(base: HardwareProfile, o: HardwareOverrides): HardwareProfile {
  const out: HardwareProfile = structuredClone(base);
  if (o.name !== undefined) out.name = o.name;
  // Local GPUs described as a list (issue 19): the first is the profile's GPU unless `gpu` says otherwise.
  const g0 = o.gpus?.[0];
  if (g0 !== undefined && o.gpu === undefined) {
    const d = describedGpuDevices([g0])[0]!;
    const link = pcieBandwidth(g0.pcie?.gen ?? 4, g0.pcie?.width ?? 16);
    out.gpu = {
      name: d.name,
      vramBytes: d.totalBytes,
      freeVramBytes: d.freeBytes,
      vramGBps: d.memGBps,
      fp16Tflops: d.tflops,
      pcie: { gen: g0.pcie?.gen ?? 4, width: g0.pcie?.width ?? 16 },
      h2dGBps: link.copyGBps,
      d2hGBps: link.copyGBps,
      zeroCopyGBps: link.zeroCopyGBps,
    };
  }
  if (o.gpu === null) out.gpu = null;
  else if (o.gpu !== undefined) {
    if (out.gpu === null) {
      const need = ["name", "vramBytes", "vramGBps", "fp16Tflops", "h2dGBps", "zeroCopyGBps"] as const;
      const missing = need.filter((k) => o.gpu![k] === undefined);
      if (missing.length > 0) {
        throw new HardwareProbeError(
          `hardware.gpu: the base profile ${base.name} has no GPU, so the recipe must give all of ${need.join(", ")} (missing: ${missing.join(", ")})`,
        );
      }
      out.gpu = {
        name: o.gpu.name!,
        vramBytes: o.gpu.vramBytes!,
        freeVramBytes: o.gpu.freeVramBytes ?? o.gpu.vramBytes!,
        vramGBps: o.gpu.vramGBps!,
        fp16Tflops: o.gpu.fp16Tflops!,
        pcie: { gen: o.gpu.pcie?.gen ?? 4, width: o.gpu.pcie?.width ?? 16 },
        h2dGBps: o.gpu.h2dGBps!,
        d2hGBps: o.gpu.d2hGBps ?? o.gpu.h2dGBps!,
        zeroCopyGBps: o.gpu.zeroCopyGBps!,
      };
    } else {
      const { pcie, ...rest } = o.gpu;
      Object.assign(out.gpu, rest);
      if (pcie !== undefined) out.gpu.pcie = { ...out.gpu.pcie, ...pcie };
      // A smaller card given only as vramBytes: free memory cannot exceed it.
      if (o.gpu.vramBytes !== undefined && o.gpu.freeVramBytes === undefined) {
        out.gpu.freeVramBytes = Math.min(out.gpu.freeVramBytes, o.gpu.vramBytes);
      }
    }
  }
  if (o.host !== undefined) {
    Object.assign(out.host, o.host);
    if (o.host.ramBytes !== undefined && o.host.availableRamBytes === undefined) {
      out.host.availableRamBytes = Math.min(out.host.availableRamBytes, o.host.ramBytes);
    }
  }
  if (o.disk !== undefined) Object.assign(out.disk, o.disk);
  out.source = "recipe";
  out.notes = [...(out.notes ?? []), `recipe numbers over ${base.name}: ${JSON.stringify(o)}`];
  return out;
}

/**
 * Resolve the hardware to plan for.
 * @param spec the recipe's `hardware` (default: probe).
 */
export async function resolveHardware(
  spec: HardwareSpec = { kind: "probe" },
  options: ResolveOptions = {},
): Promise<HardwareProfile> {
  if (options.override !== undefined) {
    return options.override === "probe" ? probeOrMeasured(undefined, options) : builtin(options.override);
  }
  switch (spec.kind) {
    case "probe":
      return probeOrMeasured(spec.fallback, options);
    case "profile":
      return builtin(spec.name);
    case "explicit": {
      const base = spec.profile === undefined ? await probeOrMeasured(undefined, options) : builtin(spec.profile);
      return attachDevices(applyOverrides(base, spec.overrides), spec.overrides, options);
    }
  }
}
