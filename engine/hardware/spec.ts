/**
 * How a recipe (or the CLI) describes the hardware to plan for: probe, a built-in profile, or
 * explicit numbers over one. The recipe parser produces it and engine/hardware/resolve.ts turns it
 * into one HardwareProfile; it lives here so the hardware stage needs nothing of the recipe stage.
 *
 * @module
 */
import type { HardwareProfile } from "../../core/types.ts";

/** Explicit hardware numbers overriding a profile (same field names as HardwareProfile). */
export interface HardwareOverrides {
  name?: string;
  gpu?: null | Partial<Omit<NonNullable<HardwareProfile["gpu"]>, "pcie">> & { pcie?: { gen?: number; width?: number } };
  host?: Partial<HardwareProfile["host"]>;
  disk?: Partial<HardwareProfile["disk"]>;
  /**
   * Every local GPU (issue 19), in CUDA order; the first is also `gpu`. For planning a machine
   * described inline (a probe finds them by NVML).
   */
  gpus?: LocalGpuSpec[];
  /** llama.cpp rpc-servers whose devices a model may be split over (issue 19). */
  nodes?: RpcNodeSpec[];
}

/** One local GPU described in a recipe (same field names as HardwareProfile.gpu). */
export interface LocalGpuSpec {
  name?: string;
  vramBytes: number;
  freeVramBytes?: number;
  vramGBps?: number;
  fp16Tflops?: number;
  pcie?: { gen?: number; width?: number };
}

/** One rpc-server (llama.cpp tools/rpc) a recipe names. */
export interface RpcNodeSpec {
  /** `host:port` it listens on. */
  rpc: string;
  /**
   * `spillway run` starts it on this host (the endpoint's host is the bind address: keep
   * 127.0.0.1 unless other hosts must reach it; the protocol has no authentication).
   */
  start?: boolean;
  /** rpc-server program for `start` (default: the one spillway builds, else `rpc-server` in PATH). */
  binary?: string;
  /** Threads of a started CPU rpc-server (-t). */
  threads?: number;
  /** Its devices; absent: asked from the server (RPC GET_DEVICE_MEMORY) when planning. */
  devices?: RpcDeviceSpec[];
  /** Network bandwidth to it, GB/s (default: 1.25, 10 GbE; loopback 5); `spillway bench --rpc` measures it. */
  linkGBps?: number;
  /** Round trip to it, ms (default 0.2; loopback 0.05). */
  rttMs?: number;
}

/** One device of an rpc-server. */
export interface RpcDeviceSpec {
  kind?: "gpu" | "cpu";
  name?: string;
  memoryBytes: number;
  freeBytes?: number;
  /** Memory read bandwidth, GB/s (default: from the GPU name, else 300 for a GPU, 20 for a CPU). */
  memGBps?: number;
  tflops?: number;
}

/** Where the hardware description comes from. */
export type HardwareSpec =
  /** Probe this machine (or use the `spillway bench` cache); `fallback` profile when there is no GPU. */
  | { kind: "probe"; fallback?: string }
  /** A built-in profile by name. */
  | { kind: "profile"; name: string }
  /** A profile (or the probe when `profile` is absent) with explicit numbers on top. */
  | { kind: "explicit"; profile?: string; overrides: HardwareOverrides };
