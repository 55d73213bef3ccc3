/**
 * `spillway bench --rpc host:port[,host:port...]` (issue 19): what the planner needs to know about
 * each llama.cpp rpc-server: its devices and free memory (RPC GET_DEVICE_MEMORY), the round trip
 * of a small command, and the transfer rate each way (SET_TENSOR / GET_TENSOR of a buffer on the
 * server), with the recipe lines that carry them (`hardware.nodes[].linkGBps`, `rttMs`).
 *
 * @example
 * ```sh
 * spillway bench --rpc 192.168.1.20:50052
 * ```
 *
 * @module
 */
import { formatBytes } from "../core/bytes.ts";
import { measureRpcLink, queryRpcNode, type RpcLinkMeasurement, type RpcNodeInfo } from "../engine/hardware/rpc_client.ts";
import { isLoopback, parseEndpoint } from "../engine/hardware/rpc_client.ts";
import { exposureWarning } from "../engine/launch/rpc_servers.ts";

/** Options of {@link benchRpcCommand}. */
export interface BenchRpcOptions {
  endpoints: string[];
  json?: boolean;
  /** Bytes per transfer (default 16 MiB; --quick 4 MiB). */
  bytes?: number;
  pings?: number;
  repetitions?: number;
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
}

/** One node's report. */
export interface BenchRpcReport {
  node: RpcNodeInfo;
  link: RpcLinkMeasurement;
}

/** The table `spillway bench --rpc` prints. */
export function formatRpcBench(reports: BenchRpcReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`rpc ${r.node.endpoint} (protocol ${r.node.version})`);
    for (const d of r.node.devices) lines.push(`  device ${d.index}      ${formatBytes(d.freeBytes)} free of ${formatBytes(d.totalBytes)}`);
    const l = r.link;
    lines.push(`  round trip    ${l.rttMs.median} ms (min ${l.rttMs.min}, max ${l.rttMs.max})`);
    lines.push(`  upload        ${l.uploadGBps.median} GB/s (${formatBytes(l.bytes)} SET_TENSOR; min ${l.uploadGBps.min}, max ${l.uploadGBps.max})`);
    lines.push(`  download      ${l.downloadGBps.median} GB/s (GET_TENSOR; min ${l.downloadGBps.min}, max ${l.downloadGBps.max})`);
    lines.push(`  recipe        hardware.nodes: [{ rpc: "${r.node.endpoint}", linkGBps: ${Math.min(l.uploadGBps.median, l.downloadGBps.median)}, rttMs: ${l.rttMs.median} }]`);
  }
  return lines.join("\n") + "\n";
}

/** Measure each node; exit status 0, or 1 when a node does not answer. */
export async function benchRpcCommand(o: BenchRpcOptions): Promise<number> {
  const out = o.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = o.stderr ?? ((t: string) => void process.stderr.write(t));
  const reports: BenchRpcReport[] = [];
  for (const endpoint of o.endpoints) {
    try {
      if (!isLoopback(parseEndpoint(endpoint).host)) err(exposureWarning(endpoint, false) + "\n");
      const node = await queryRpcNode(endpoint);
      const link = await measureRpcLink(endpoint, { bytes: o.bytes, pings: o.pings, repetitions: o.repetitions });
      reports.push({ node, link });
    } catch (e) {
      err(`spillway bench --rpc: ${(e as Error).message}\n`);
      return 1;
    }
  }
  if (o.json) {
    err(formatRpcBench(reports));
    out(JSON.stringify(reports, null, 2) + "\n");
  } else out(formatRpcBench(reports));
  return 0;
}
