/**
 * Candidates that split a model over several devices (issue 19): local GPUs and the devices of
 * llama.cpp rpc-servers (`HardwareProfile.devices`), for llama.cpp (`--rpc`, `-ts`, `-sm layer`)
 * and vLLM (`--tensor-parallel-size`, `--pipeline-parallel-size`).
 *
 * llama.cpp layer split: the first blocks not given to a device run on this host's CPU, then each
 * device computes a contiguous range of blocks, in llama.cpp's device order (rpc devices first);
 * the output head goes with the last device. Weights cross the network once, at load. Per token,
 * each boundary between devices moves one hidden state (embedding length x 4 bytes): over PCIe
 * between local GPUs, over the node's link when one side is remote, twice (through this host)
 * between two different rpc-servers; each rpc device also costs a round trip per forward pass
 * (its graph is submitted and waited for), and the logits come back from the last device. Prefill
 * pays the same per micro-batch with `ubatch` hidden states per boundary.
 *
 * @example
 * ```ts
 * import { splitCandidates } from "./multi_device.ts";
 * const extra = splitCandidates(ctx); // [] unless ctx.hw.devices lists 2+ devices (or an rpc one)
 * ```
 *
 * @module
 */
import type { Candidate, DeviceInfo, DevicePlacement, RuntimeSettings } from "../../core/types.ts";
import { formatBytes } from "../../core/bytes.ts";
import type { Evaluated, PlanContext } from "./candidates.ts";
import { cpuPassOverhead, type Prediction } from "./cost.ts";
import type { Layout, Unit } from "./layout.ts";
import { unitsOf } from "./layout.ts";
import { computeBufferBytes } from "./memory.ts";
import { isMoe, type ModelSummary } from "./summary.ts";

/** One split to evaluate: blocks per device (in llama.cpp order), the first `cpuBlocks` blocks on this host's CPU. */
export interface SplitSpec {
  devices: DeviceInfo[];
  /** Blocks per device, same order; the output head goes with the last device. */
  counts: number[];
  cpuBlocks: number;
  ubatch: number;
  /** How the counts were chosen, for the id: `fill` (fastest memory first) or `even` (by free memory). */
  rule: "fill" | "even";
  /**
   * MoE over local GPUs: the routed experts of the first `hostExpertBlocks` blocks stay in this
   * host's RAM and run on its CPU (llama.cpp `-ot blk.N.ffn_*_exps=CPU`, as -ncmoe on one GPU), so
   * the cards hold every block's attention and the other blocks whole.
   */
  hostExpertBlocks?: number;
}

/** A pipeline stage: this host's CPU or one device. */
interface Stage {
  device: DeviceInfo | null;
  first: number;
  last: number;
  output: boolean;
}

const GB = 1e9;

/** Weight bytes and parameters of blocks [first, last] (and the output head). */
function blockSums(s: ModelSummary, first: number, last: number, output: boolean): { bytes: number; params: number; activeBytes: number; activeParams: number } {
  let bytes = 0, params = 0, activeBytes = 0, activeParams = 0;
  for (let l = first; l <= last; l++) {
    const b = s.layers[l]!;
    bytes += b.attention.bytes + b.ffn_dense.bytes + b.ffn_experts.bytes;
    params += b.attention.params + b.ffn_dense.params + b.ffn_experts.params;
    activeBytes += b.attention.bytes + b.ffn_dense.bytes + b.ffn_experts.bytes * s.expertFraction;
    activeParams += b.attention.params + b.ffn_dense.params + b.ffn_experts.params * s.expertFraction;
  }
  if (output) {
    bytes += s.output.bytes;
    params += s.output.params;
    activeBytes += s.output.bytes;
    activeParams += s.output.params;
  }
  return { bytes, params, activeBytes, activeParams };
}

function stagesOf(s: ModelSummary, spec: SplitSpec): Stage[] {
  const stages: Stage[] = [];
  if (spec.cpuBlocks > 0) stages.push({ device: null, first: 0, last: spec.cpuBlocks - 1, output: false });
  let at = spec.cpuBlocks;
  spec.devices.forEach((d, i) => {
    const n = spec.counts[i]!;
    const isLast = i === spec.devices.length - 1;
    if (n > 0 || isLast) stages.push({ device: d, first: at, last: at + n - 1, output: isLast });
    at += n;
  });
  if (at !== s.layerCount) throw new Error(`split covers ${at} of ${s.layerCount} blocks`);
  return stages;
}

/** Seconds to move `bytes` from one stage to the next (null: this host's CPU). */
function handoff(a: DeviceInfo | null, b: DeviceInfo | null, bytes: number): number {
  if (a === b) return 0;
  const over = (l: DeviceInfo["link"]): number => l.rttMs / 1000 + bytes / (l.GBps * GB);
  const remoteA = a?.where === "rpc";
  const remoteB = b?.where === "rpc";
  if (remoteA && remoteB) {
    // Same server: a copy inside it (one round trip). Two servers: read back here, then written there.
    return a!.endpoint === b!.endpoint ? a!.link.rttMs / 1000 : over(a!.link) + over(b!.link);
  }
  if (remoteA) return over(a!.link);
  if (remoteB) return over(b!.link);
  // Local: CPU <-> GPU or GPU <-> GPU over PCIe.
  return over((a ?? b)!.link);
}

/** Capacity of a device in blocks of average size, after its compute buffer and reserve. */
function blocksFitting(ctx: PlanContext, d: DeviceInfo, ubatch: number, perBlock: number, withOutput: boolean): number {
  const reserve = d.kind === "gpu" ? ctx.limits.reserve || 768 * 2 ** 20 : 0;
  const room = d.freeBytes - reserve - computeBufferBytes(ctx.summary, ubatch) - (withOutput ? ctx.summary.output.bytes : 0);
  return Math.max(0, Math.floor(room / perBlock));
}

/** Mean bytes of one block: weights plus its KV cache at the recipe's context. */
function perBlockBytes(ctx: PlanContext): number {
  const s = ctx.summary;
  const w = s.layers.reduce((a, b) => a + b.attention.bytes + b.ffn_dense.bytes + b.ffn_experts.bytes, 0) / s.layerCount;
  return w + (ctx.context * s.kvBytesPerToken) / s.layerCount;
}

/**
 * MoE over local GPUs: the fewest first blocks whose experts must stay on this host for every
 * block to be on a card, packing blocks in device order (each card takes consecutive blocks while
 * they fit after its compute buffer, the staged experts of one block, and its reserve). Null when
 * not even all experts on the host make the blocks fit.
 */
export function hostExpertsSplit(ctx: PlanContext, devices: DeviceInfo[], ubatch: number): SplitSpec | null {
  const s = ctx.summary;
  const L = s.layerCount;
  const kvPerBlock = (ctx.context * s.kvBytesPerToken) / L;
  const maxExperts = Math.max(...s.layers.map((b) => b.ffn_experts.bytes));
  const pack = (n: number): number[] | null => {
    const counts = devices.map(() => 0);
    let l = 0;
    for (let i = 0; i < devices.length && l < L; i++) {
      const d = devices[i]!;
      const reserve = d.kind === "gpu" ? ctx.limits.reserve || 768 * 2 ** 20 : 0;
      let room = d.freeBytes - reserve - computeBufferBytes(s, ubatch) - (n > 0 ? maxExperts : 0) - (i === devices.length - 1 ? s.output.bytes : 0);
      while (l < L) {
        const b = s.layers[l]!;
        const size = b.attention.bytes + b.ffn_dense.bytes + (l < n ? 0 : b.ffn_experts.bytes) + kvPerBlock;
        if (size > room) break;
        room -= size;
        counts[i]!++;
        l++;
      }
    }
    return l === L ? counts : null;
  };
  for (let n = 1; n <= L; n++) {
    const counts = pack(n);
    if (counts) return { devices, counts, cpuBlocks: 0, ubatch, rule: "fill", hostExpertBlocks: n };
  }
  return null;
}

/**
 * Blocks per device for a set of devices: `fill` gives the devices with the fastest memory as many
 * blocks as they hold first; `even` shares blocks by free memory (llama.cpp's default split),
 * capped by what each holds. What no device holds runs on this host's CPU (the first blocks).
 */
export function splitCounts(ctx: PlanContext, devices: DeviceInfo[], ubatch: number, rule: "fill" | "even"): SplitSpec {
  const L = ctx.summary.layerCount;
  const cap = devices.map((d, i) => blocksFitting(ctx, d, ubatch, perBlockBytes(ctx), i === devices.length - 1));
  const counts = devices.map(() => 0);
  let left = L;
  if (rule === "fill") {
    const order = devices.map((_, i) => i).sort((a, b) => devices[b]!.memGBps - devices[a]!.memGBps);
    for (const i of order) {
      counts[i] = Math.min(cap[i]!, left);
      left -= counts[i]!;
    }
  } else {
    const free = devices.reduce((a, d) => a + d.freeBytes, 0);
    let given = 0;
    devices.forEach((d, i) => {
      counts[i] = Math.min(cap[i]!, Math.floor((L * d.freeBytes) / free));
      given += counts[i]!;
    });
    // Rounding leftovers to devices with room, in order.
    for (let i = 0; i < devices.length && given < L; i++) {
      const more = Math.min(cap[i]! - counts[i]!, L - given);
      counts[i]! += more;
      given += more;
    }
    left = L - given;
  }
  return { devices, counts, cpuBlocks: left, ubatch, rule };
}

/** Evaluate one split: per-device memory and fit, predicted speed, llama.cpp settings. */
export function evaluateSplit(ctx: PlanContext, spec: SplitSpec): Evaluated {
  const s = ctx.summary;
  const k = ctx.constants;
  const stages = stagesOf(s, spec);
  const kvPerBlock = (ctx.context * s.kvBytesPerToken) / s.layerCount;
  const ctxDecode = ctx.workload.promptTokens + ctx.workload.generatedTokens / 2;
  const kvReadPerBlock = (ctxDecode * s.kvBytesPerToken) / s.layerCount;
  const hidden = s.embeddingLength * 4;
  const threads = Math.max(1, Math.min(ctx.threads, ctx.hw.host.cpuCores));
  const hostFlops = ctx.hw.host.cpuGflops * 1e9 * k.cpuComputeEfficiency * (threads / Math.max(1, ctx.hw.host.cpuCores));
  const anyGpu = stages.some((st) => st.device?.kind === "gpu");
  const compute = computeBufferBytes(s, spec.ubatch);

  // Per stage: decode read time, prefill compute per micro-batch, memory.
  const placements: DevicePlacement[] = [];
  let decode = 0;
  let hostBytes = s.embedding.bytes;
  const perStagePrefill: ((n: number, done: number) => number)[] = [];
  let misfit: string | null = null;
  const hostExpertBlocks: number[] = [];
  for (const st of stages) {
    const n = st.last - st.first + 1;
    const all = blockSums(s, st.first, st.last, st.output);
    // Experts on this host (the first hostExpertBlocks blocks, on local GPUs): the GPU keeps the rest.
    const hostExperts = (spec.hostExpertBlocks ?? 0) > 0 && st.device?.where === "local" && st.device.kind === "gpu";
    let ex = { bytes: 0, params: 0 };
    if (hostExperts) {
      for (let l = st.first; l <= Math.min(st.last, spec.hostExpertBlocks! - 1); l++) {
        const e = s.layers[l]!.ffn_experts;
        if (e.bytes > 0) hostExpertBlocks.push(l);
        ex = { bytes: ex.bytes + e.bytes, params: ex.params + e.params };
      }
    }
    const w = {
      bytes: all.bytes - ex.bytes,
      params: all.params - ex.params,
      activeBytes: all.activeBytes - ex.bytes * s.expertFraction,
      activeParams: all.activeParams - ex.params * s.expertFraction,
    };
    const kvBytes = kvPerBlock * n;
    const kvRead = kvReadPerBlock * n;
    const d = st.device;
    let bw: number, flops: number;
    if (d === null) {
      bw = ctx.hw.host.ramGBps * k.cpuEfficiency * GB;
      flops = hostFlops;
    } else if (d.kind === "gpu") {
      bw = d.memGBps * k.vramEfficiency * GB;
      flops = d.tflops * 1e12 * k.gpuPrefillEfficiency;
    } else {
      bw = d.memGBps * k.cpuEfficiency * GB;
      flops = d.tflops * 1e12 * k.cpuComputeEfficiency;
    }
    const cpuLike = d === null || d.kind === "cpu";
    let t = Math.max((w.activeBytes + kvRead) / bw, cpuLike ? (2 * w.activeParams) / flops : 0);
    // A CPU (here or behind an rpc-server) dispatches each block's ops per pass.
    if (cpuLike && n > 0) t += (n * k.cpuLayerOverheadMs) / 1000;
    // Each rpc device: its graph submitted and waited for, a round trip per forward pass.
    if (d?.where === "rpc") t += d.link.rttMs / 1000;
    // Host experts: read (or computed) by this host's CPU, a GPU <-> CPU hand-off per block.
    const hostRam = ctx.hw.host.ramGBps * k.cpuEfficiency * GB;
    if (ex.bytes > 0) {
      t += Math.max((ex.bytes * s.expertFraction) / hostRam, (2 * ex.params * s.expertFraction) / hostFlops) +
        (hostExpertBlocks.filter((l) => l >= st.first && l <= st.last).length * k.cpuHandoffMs) / 1000;
      hostBytes += ex.bytes;
    }
    decode += t;
    const attnPerPair = 4 * s.headCount * s.keyLength * Math.max(0, n);
    perStagePrefill.push((tokens, done) => {
      const eff = cpuLike ? 1 : tokens / (tokens + k.gemmHalfTokens);
      const f = 2 * w.activeParams * tokens + attnPerPair * tokens * (done + tokens / 2);
      // Host experts in prefill: llama.cpp copies them to the GPU per micro-batch, from pinned
      // memory (the candidate loads with -lm none, as the single-GPU -ncmoe ones).
      const copies = ex.bytes > 0 && d ? ex.bytes / (d.link.GBps * GB * k.pinnedCopyEfficiency) : 0;
      return Math.max(f / (flops * eff), w.bytes / bw) + copies;
    });
    if (d === null) {
      hostBytes += w.bytes + kvBytes;
      continue;
    }
    // Host experts are staged on the GPU one block at a time per prefill micro-batch (as -ncmoe).
    let staging = 0;
    if (ex.bytes > 0) for (const l of hostExpertBlocks) if (l >= st.first && l <= st.last) staging = Math.max(staging, s.layers[l]!.ffn_experts.bytes);
    const total = w.bytes + kvBytes + compute + staging;
    const reserve = d.kind === "gpu" ? ctx.limits.reserve || 768 * 2 ** 20 : 0;
    if (total + reserve > d.freeBytes && misfit === null) {
      misfit = `${d.id} (${d.name}${d.endpoint ? ` @${d.endpoint}` : ""}) needs ${formatBytes(total)} + ${formatBytes(reserve)} reserve > ${formatBytes(d.freeBytes)} free`;
    }
    placements.push({
      device: d.id,
      name: d.name,
      ...(d.endpoint ? { endpoint: d.endpoint } : {}),
      layers: n > 0 ? [st.first, st.last] : null,
      output: st.output,
      weightBytes: Math.round(w.bytes),
      kvBytes: Math.round(kvBytes),
      computeBytes: Math.round(compute + staging),
      totalBytes: Math.round(total),
      freeBytes: d.freeBytes,
      decodeMs: +(t * 1000).toPrecision(4),
      transferMs: 0,
    });
  }
  if (spec.cpuBlocks > 0) {
    const w = blockSums(s, 0, spec.cpuBlocks - 1, false);
    placements.unshift({
      device: "cpu",
      name: ctx.hw.host.cpuName ?? "this host's CPU",
      layers: [0, spec.cpuBlocks - 1],
      output: false,
      weightBytes: Math.round(w.bytes),
      kvBytes: Math.round(kvPerBlock * spec.cpuBlocks),
      computeBytes: 0,
      totalBytes: Math.round(w.bytes + kvPerBlock * spec.cpuBlocks),
      freeBytes: Math.round(ctx.limits.host),
      decodeMs: 0,
      transferMs: 0,
    });
  }
  if (hostBytes > ctx.limits.host && misfit === null) misfit = `needs ${formatBytes(hostBytes)} host RAM > ${formatBytes(ctx.limits.host)} usable`;

  // Hand-offs: embedding (CPU) -> first stage, between stages, logits back from the last.
  const chain: (DeviceInfo | null)[] = [null, ...stages.map((st) => st.device)];
  const transfer = (tokens: number): number => {
    let t = 0;
    for (let i = 1; i < chain.length; i++) {
      const dt = handoff(chain[i - 1]!, chain[i]!, tokens * hidden);
      t += dt;
      const p = placements.find((x) => x.device === (chain[i - 1]?.id ?? "cpu"));
      if (p && tokens === 1) p.transferMs = +(dt * 1000).toPrecision(3);
    }
    // Logits of the last token come back here.
    const back = handoff(chain[chain.length - 1]!, null, s.vocabSize * 4);
    const last = placements.find((x) => x.device === (chain[chain.length - 1]?.id ?? "cpu"));
    if (last && tokens === 1) last.transferMs = +(back * 1000).toPrecision(3);
    return t + back;
  };
  const decodeTransfer = transfer(1);
  const overhead = anyGpu
    ? k.tokenOverheadMs / 1000
    : cpuPassOverhead(spec.cpuBlocks, threads, k.cpuTokenOverheadMs, 0, k);
  const cpuStage = stages[0]?.device === null ? stages[0] : null;
  let cpuDecode = 0;
  if (cpuStage) {
    const w = blockSums(s, cpuStage.first, cpuStage.last, false);
    cpuDecode = Math.max((w.activeBytes + kvReadPerBlock * spec.cpuBlocks) / (ctx.hw.host.ramGBps * k.cpuEfficiency * GB), (2 * w.activeParams) / hostFlops);
    const p = placements.find((x) => x.device === "cpu");
    if (p) p.decodeMs = +(cpuDecode * 1000).toPrecision(4);
  }
  const decodeSeconds = (decode + decodeTransfer + overhead) * (k.overheadScale?.decode ?? 1);

  const P = ctx.workload.promptTokens;
  let prefill = 0;
  let prefillTransfer = 0;
  for (let done = 0; done < P;) {
    const n = Math.min(spec.ubatch, P - done);
    for (const f of perStagePrefill) prefill += f(n, done);
    prefillTransfer += transfer(n);
    prefill += overhead;
    done += n;
  }
  const prefillSeconds = prefill + prefillTransfer;

  const prediction: Prediction = {
    prefillTps: P / prefillSeconds,
    decodeTps: 1 / decodeSeconds,
    totalSeconds: prefillSeconds + ctx.workload.generatedTokens * decodeSeconds,
    decode: { vram: decode - cpuDecode, host_mapped: 0, host_cpu: cpuDecode, stream: decodeTransfer, kv: 0, overhead },
    prefill: { gpuCompute: prefill, gpuReads: 0, copies: prefillTransfer, cpu: 0 },
  };

  // Layout for the rest of the planner: device blocks count as "vram", CPU blocks as host_cpu.
  const onCpu = (l: number | null): boolean => l !== null && l < spec.cpuBlocks;
  const units: Unit[] = unitsOf(s, (g, l) => (g === "embedding" || onCpu(l) ? "host_cpu" : "vram"));
  const layout: Layout = { units, kv: "vram" };

  const used = spec.devices.filter((_, i) => spec.counts[i]! > 0 || i === spec.devices.length - 1);
  const counts = spec.devices.map((_, i) => spec.counts[i]!).filter((_, i) => spec.counts[i]! > 0 || i === spec.devices.length - 1);
  const rpc = [...new Set(used.filter((d) => d.where === "rpc").map((d) => d.endpoint!))];
  // -ts covers every device llama.cpp lists: all devices of the --rpc servers, then every local
  // GPU; unused ones get 0 and the last used one also takes the output head.
  const listed = (ctx.hw.devices ?? spec.devices).filter((d) => d.where === "local" || rpc.includes(d.endpoint!));
  const lastUsed = used[used.length - 1]!;
  const tensorSplit = listed.map((d) => {
    const i = used.indexOf(d);
    return i < 0 ? 0 : counts[i]! + (d === lastUsed ? 1 : 0);
  });
  const settings: RuntimeSettings = {
    contextLength: ctx.context,
    batch: Math.max(ctx.batch, spec.ubatch),
    ubatch: spec.ubatch,
    threads: ctx.threads,
    gpuLayers: s.layerCount - spec.cpuBlocks + 1,
    cpuMoeLayers: 0,
    overrideTensors: hostExpertBlocks.length > 0 ? [{ pattern: `blk\\.(${hostExpertBlocks.join("|")})\\.ffn_(up|down|gate|gate_up)_exps`, device: "CPU" }] : [],
    kvOnHost: false,
    loadMode: hostExpertBlocks.length > 0 ? "none" : "mmap",
    shim: null,
    split: { mode: "layer", devices: listed.map((d) => d.id), tensorSplit, rpc },
  };
  const localBytes = placements.filter((p) => spec.devices.find((d) => d.id === p.device)?.where === "local").reduce((a, p) => a + p.totalBytes, 0);
  const ids = used.map((d) => d.id).join("+");
  const candidate: Candidate = {
    id: `split-${spec.cpuBlocks > 0 ? "cpu+" : ""}${ids}-${hostExpertBlocks.length > 0 ? `ncmoe${hostExpertBlocks.length}` : spec.rule}-ub${spec.ubatch}`,
    label: placements.map((p) => `${p.device}: ${!p.layers ? "no blocks" : p.layers[0] === p.layers[1] ? `block ${p.layers[0]}` : `blocks ${p.layers[0]}-${p.layers[1]}`}${p.output ? " + output" : ""}`).join(", ") +
      ` (layer split, ub ${spec.ubatch})`,
    strategy: "split",
    fits: misfit === null,
    memory: { vram: localBytes, host_mapped: 0, host_cpu: Math.round(hostBytes), disk: 0 },
    predicted: { prefillTps: round(prediction.prefillTps), decodeTps: round(prediction.decodeTps), totalSeconds: round(prediction.totalSeconds) },
    settings,
    placements: [
      ...placements.filter((p) => p.layers).map((p) => ({
        class: "attention" as const,
        layers: p.layers!,
        tier: p.device === "cpu" || spec.devices.find((d) => d.id === p.device)?.kind === "cpu" ? "host_cpu" as const : "vram" as const,
        bytes: p.weightBytes,
      })),
      { class: "kv_cache", tier: "vram", bytes: Math.round(kvPerBlock * (s.layerCount - spec.cpuBlocks)) },
      { class: "compute", tier: "vram", bytes: compute },
    ],
    devices: placements,
  };
  if (misfit !== null) candidate.misfit = misfit;
  return { candidate, layout, prediction };
}

function round(x: number): number {
  return Number.isFinite(x) ? +x.toPrecision(4) : 0;
}

/** Runtimes that can split layers over devices (llama.cpp's --rpc/-ts; vLLM's -tp/-pp). */
export function canSplit(runtime: string): boolean {
  return runtime === "llama.cpp" || runtime === "vllm";
}

/**
 * The split candidates for `ctx.hw.devices`: for llama.cpp, every device and (with remote ones)
 * the local GPUs alone, each with the `fill` and `even` rules, per micro-batch size; for vLLM,
 * tensor (and pipeline) parallel over the local GPUs. Empty for one device.
 */
export function splitCandidates(ctx: PlanContext): Evaluated[] {
  const devs = ctx.hw.devices ?? [];
  if (!canSplit(ctx.runtime) || devs.length === 0) return [];
  const local = devs.filter((d) => d.where === "local");
  if (ctx.runtime === "vllm") return local.length >= 2 ? vllmParallel(ctx, local) : [];
  if (devs.length < 2 && !devs.some((d) => d.where === "rpc")) return [];
  const sets: DeviceInfo[][] = [devs];
  if (local.length >= 2 && local.length < devs.length) sets.push(local);
  const out: Evaluated[] = [];
  const seen = new Set<string>();
  for (const set of sets) {
    for (const ubatch of ctx.ubatches) {
      // `even` first: on a tie (equal devices) the balanced split wins the stable sort. MoE models
      // also get the fastest-first split with the local GPUs' experts on this host's CPU.
      const specs = [splitCounts(ctx, set, ubatch, "even"), splitCounts(ctx, set, ubatch, "fill")];
      // MoE over local GPUs whose blocks do not all fit whole: experts of the first blocks on this host.
      if (isMoe(ctx.summary) && set.every((d) => d.where === "local") && specs.every((x) => x.cpuBlocks > 0)) {
        const h = hostExpertsSplit(ctx, set, ubatch);
        if (h) specs.push(h);
      }
      for (const spec of specs) {
        const key = `${set.map((d) => d.id)}|${spec.counts}|${spec.cpuBlocks}|${ubatch}|${spec.hostExpertBlocks ?? 0}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(evaluateSplit(ctx, spec));
      }
    }
  }
  return out;
}

/**
 * vLLM over the local GPUs: tensor parallel over the largest power of two that divides the
 * attention heads, pipeline parallel over what is left (6 GPUs, 32 heads: -tp 2 -pp 3). Each GPU
 * holds 1/(tp*pp) of the weights and KV; decode reads 1/tp of a stage's weights per GPU and pays
 * two all-reduces per block (hidden state over the GPUs' link).
 */
function vllmParallel(ctx: PlanContext, gpus: DeviceInfo[]): Evaluated[] {
  const s = ctx.summary;
  const k = ctx.constants;
  let tp = 1;
  while (tp * 2 <= gpus.length && s.headCount % (tp * 2) === 0) tp *= 2;
  const pp = Math.floor(gpus.length / tp);
  const n = tp * pp;
  const used = gpus.slice(0, n);
  const ubatch = ctx.ubatches[0]!;
  const weights = s.totalBytes;
  const kv = ctx.context * s.kvBytesPerToken;
  const compute = computeBufferBytes(s, ubatch);
  const reserve = ctx.limits.reserve || 768 * 2 ** 20;
  const perGpu = weights / n + kv / n + compute;
  const worst = used.reduce((a, d) => (d.freeBytes < a.freeBytes ? d : a));
  const fits = perGpu + reserve <= worst.freeBytes;
  const bw = Math.min(...used.map((d) => d.memGBps)) * k.vramEfficiency * GB;
  const link = Math.min(...used.map((d) => d.link.GBps)) * GB;
  const active = s.layers.reduce((a, b) => a + b.attention.bytes + b.ffn_dense.bytes + b.ffn_experts.bytes * s.expertFraction, 0) + s.output.bytes;
  const ctxDecode = ctx.workload.promptTokens + ctx.workload.generatedTokens / 2;
  const allReduce = tp > 1 ? 2 * s.layerCount * ((s.embeddingLength * 2 * 2 * (tp - 1)) / tp / link + 10e-6) : 0;
  const ppHops = (pp - 1) * ((s.embeddingLength * 2) / link + 10e-6);
  const decodeSeconds = (active / tp + (ctxDecode * s.kvBytesPerToken) / tp) / bw + allReduce + ppHops + (k.runtimeOverheadMs.vllm ?? 4) / 1000;
  const flops = Math.min(...used.map((d) => d.tflops)) * 1e12 * k.gpuPrefillEfficiency * tp;
  const P = ctx.workload.promptTokens;
  const prefillSeconds = (2 * (active / Math.max(1e-9, weights)) * s.totalBytes * P) / flops + allReduce * Math.ceil(P / ubatch);
  const prediction: Prediction = {
    prefillTps: P / prefillSeconds,
    decodeTps: 1 / decodeSeconds,
    totalSeconds: prefillSeconds + ctx.workload.generatedTokens * decodeSeconds,
    decode: { vram: decodeSeconds - allReduce - ppHops, host_mapped: 0, host_cpu: 0, stream: allReduce + ppHops, kv: 0, overhead: 0 },
    prefill: { gpuCompute: prefillSeconds, gpuReads: 0, copies: 0, cpu: 0 },
  };
  const settings: RuntimeSettings = {
    contextLength: ctx.context,
    batch: Math.max(ctx.batch, ubatch),
    ubatch,
    threads: ctx.threads,
    gpuLayers: s.layerCount + 1,
    cpuMoeLayers: 0,
    overrideTensors: [],
    kvOnHost: false,
    loadMode: "mmap",
    shim: null,
    tensorParallel: tp,
    pipelineParallel: pp,
    gpuMemoryUtilization: Math.min(0.98, +((perGpu + reserve) / worst.totalBytes).toFixed(3)),
  };
  const per = Math.round(perGpu);
  const candidate: Candidate = {
    id: `tp${tp}-pp${pp}`,
    label: `vLLM tensor parallel ${tp} x pipeline parallel ${pp} over ${n} GPUs`,
    strategy: "split",
    fits,
    memory: { vram: per * n, host_mapped: 0, host_cpu: 0, disk: 0 },
    predicted: { prefillTps: round(prediction.prefillTps), decodeTps: round(prediction.decodeTps), totalSeconds: round(prediction.totalSeconds) },
    settings,
    placements: [{ class: "attention", tier: "vram", bytes: Math.round(weights) }, { class: "kv_cache", tier: "vram", bytes: Math.round(kv) }],
    devices: used.map((d) => ({
      device: d.id,
      name: d.name,
      layers: [0, s.layerCount - 1] as [number, number],
      output: true,
      weightBytes: Math.round(weights / n),
      kvBytes: Math.round(kv / n),
      computeBytes: Math.round(compute),
      totalBytes: per,
      freeBytes: d.freeBytes,
      decodeMs: +(decodeSeconds * 1000).toPrecision(4),
      transferMs: +((allReduce + ppHops) * 1000).toPrecision(3),
    })),
  };
  if (!fits) candidate.misfit = `each GPU needs ${formatBytes(per)} + ${formatBytes(reserve)} reserve > ${formatBytes(worst.freeBytes)} free on ${worst.id}`;
  const layout: Layout = { units: unitsOf(s, () => "vram"), kv: "vram" };
  return [{ candidate, layout, prediction }];
}

/** Why a split was chosen (or not), one or two sentences for the plan's reason. */
export function splitReason(chosen: Evaluated, ranked: Evaluated[]): string {
  const c = chosen.candidate;
  const single = ranked.find((e) => e.candidate.fits && e.candidate.strategy !== "split");
  const per = (c.devices ?? []).map((p) => `${p.device} ${p.layers ? `${p.layers[1] - p.layers[0] + 1} blocks` : "no blocks"}${p.output ? "+output" : ""} ${formatBytes(p.totalBytes)}/${formatBytes(p.freeBytes)}`).join(", ");
  let s = `Chose ${c.id}: ${c.predicted.decodeTps} tok/s decode, ${c.predicted.prefillTps} tok/s prefill, ${c.predicted.totalSeconds} s per request; ${per}.`;
  if (single) {
    s += ` The best single-device plan (${single.candidate.id}) predicts ${single.candidate.predicted.decodeTps} tok/s decode, ${single.candidate.predicted.totalSeconds} s per request` +
      (single.prediction.totalSeconds > chosen.prediction.totalSeconds ? ": splitting keeps all blocks in device memory, at the cost of one hidden-state hand-off per boundary per token." : ".");
  } else {
    s += " No single-device placement fits.";
  }
  return s;
}
