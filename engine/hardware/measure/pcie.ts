/**
 * The GPU's PCIe link as sysfs reports it (generation and width), for the measured profile.
 *
 * @example
 * ```ts
 * import { pcieGenFromSpeed } from "./pcie.ts";
 * pcieGenFromSpeed("32.0 GT/s PCIe"); // 5
 * ```
 *
 * @module
 */
import { readFileSync } from "node:fs";

/** PCIe generation from a sysfs link speed like "32.0 GT/s PCIe". */
export function pcieGenFromSpeed(speed: string): number | null {
  const m = /([0-9.]+)\s*GT\/s/.exec(speed);
  if (!m) return null;
  const gts = Number(m[1]);
  const table: [number, number][] = [[2.5, 1], [5, 2], [8, 3], [16, 4], [32, 5], [64, 6], [128, 7]];
  for (const [g, gen] of table) if (Math.abs(gts - g) < 0.5) return gen;
  return null;
}

/** Current PCIe link of a device from sysfs (read while it is busy: idle links slow down). */
export function readPcieLink(pciAddress: string): { gen: number; width: number } | null {
  try {
    const base = `/sys/bus/pci/devices/${pciAddress.toLowerCase()}`;
    const gen = pcieGenFromSpeed(readFileSync(`${base}/current_link_speed`, "utf8"));
    const width = Number(readFileSync(`${base}/current_link_width`, "utf8").trim());
    return gen && width > 0 ? { gen, width } : null;
  } catch {
    return null;
  }
}
