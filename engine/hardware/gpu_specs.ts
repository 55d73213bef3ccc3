/**
 * Spec-sheet numbers NVML does not report (VRAM bandwidth, fp16 tensor throughput) for common GPUs,
 * and PCIe bandwidth estimates from the link generation and width. Used by the probe; `spillway
 * bench` replaces them with measurements.
 *
 * @module
 */

/** Spec numbers of one GPU model. */
export interface GpuSpec {
  /** VRAM bandwidth, GB/s. */
  vramGBps: number;
  /** Dense fp16 tensor throughput as the spec sheet lists it (GeForce: fp16 accumulate; datacenter: dense bf16), TFLOP/s. */
  fp16Tflops: number;
}

// Longest pattern first where one name contains another (5070 Ti before 5070).
const TABLE: [RegExp, GpuSpec][] = [
  [/H200/i, { vramGBps: 4800, fp16Tflops: 989 }],
  [/H100.*PCIe/i, { vramGBps: 2000, fp16Tflops: 756 }],
  [/H100/i, { vramGBps: 3350, fp16Tflops: 989 }],
  [/GH200/i, { vramGBps: 4000, fp16Tflops: 989 }],
  [/A100.*80/i, { vramGBps: 2039, fp16Tflops: 312 }],
  [/A100/i, { vramGBps: 1555, fp16Tflops: 312 }],
  [/L40S/i, { vramGBps: 864, fp16Tflops: 362 }],
  [/L4\b/i, { vramGBps: 300, fp16Tflops: 121 }],
  [/A10\b/i, { vramGBps: 600, fp16Tflops: 125 }],
  [/T4\b/i, { vramGBps: 320, fp16Tflops: 65 }],
  [/5090/, { vramGBps: 1792, fp16Tflops: 419 }],
  [/5080/, { vramGBps: 960, fp16Tflops: 225 }],
  [/5070 Ti/i, { vramGBps: 896, fp16Tflops: 176 }],
  [/5070/, { vramGBps: 672, fp16Tflops: 123 }],
  [/5060 Ti/i, { vramGBps: 448, fp16Tflops: 95 }],
  [/4090/, { vramGBps: 1008, fp16Tflops: 330 }],
  [/4080/, { vramGBps: 717, fp16Tflops: 195 }],
  [/4070 Ti/i, { vramGBps: 504, fp16Tflops: 160 }],
  [/4070/, { vramGBps: 504, fp16Tflops: 117 }],
  [/4060 Ti/i, { vramGBps: 288, fp16Tflops: 88 }],
  [/3090/, { vramGBps: 936, fp16Tflops: 142 }],
  [/3080/, { vramGBps: 760, fp16Tflops: 119 }],
];

/** Spec numbers for a GPU name, or null when it is not in the table. */
export function gpuSpecFor(name: string): GpuSpec | null {
  for (const [re, spec] of TABLE) if (re.test(name)) return { ...spec };
  return null;
}

/** Raw PCIe bandwidth per lane and direction, GB/s, by generation (after line coding). */
const PER_LANE: Record<number, number> = { 1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563 };

/**
 * Achievable PCIe bandwidths, GB/s: pinned copies reach about 82% of the raw link, GPU kernels
 * reading mapped host memory about 72% (PCIe 4.0 x16: 25.8 and 22.7; measured on PCIe 5.0 x16:
 * 55.4 and 51.3, a little better than this estimate).
 */
export function pcieBandwidth(gen: number, width: number): { copyGBps: number; zeroCopyGBps: number } {
  const raw = (PER_LANE[gen] ?? PER_LANE[4]) * width;
  return { copyGBps: +(raw * 0.82).toFixed(1), zeroCopyGBps: +(raw * 0.72).toFixed(1) };
}
