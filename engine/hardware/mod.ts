/**
 * Hardware model: built-in profiles, the probe, the measured-profile cache, and resolution of a
 * recipe's `hardware` field.
 *
 * @module
 */
export { getProfile, isProfileName, profileNames } from "./profiles.ts";
export { parseCpuinfo, parseMeminfo, parseNvidiaSmi, probeGpus, probeHardware, probeHost } from "./probe.ts";
export type { GpuProbe, HostFacts, ProbeOptions } from "./probe.ts";
export { measuredProfilePath, readMeasuredProfile } from "./measured_profile.ts";
export { applyOverrides, resolveHardware } from "./resolve.ts";
export type { ResolveOptions } from "./resolve.ts";
export { gpuSpecFor, pcieBandwidth } from "./gpu_specs.ts";
