/**
 * A small client of llama.cpp's RPC protocol (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol 7.x, the
 * version the bundled llama.cpp speaks), over node:net: enough to ask an `rpc-server` which
 * devices it exposes and how much memory they have free, and to measure the link to it (round
 * trip and transfer rate) with the same messages llama.cpp sends.
 *
 * Framing: a request is `| cmd (1 byte) | size (u64 LE) | payload |`; a reply is
 * `| size (u64 LE) | payload |`, sent only by commands that answer. The first command of a
 * connection must be HELLO (payload: 24 bytes of transport capabilities; zeros ask for plain TCP).
 *
 * @example
 * ```ts
 * import { queryRpcNode } from "./rpc_client.ts";
 * const node = await queryRpcNode("127.0.0.1:50052");
 * console.log(node.devices); // [{ index: 0, freeBytes: ..., totalBytes: ... }]
 * ```
 *
 * @module
 */
import { connect, type Socket } from "node:net";
import { isIP } from "node:net";
import type { Measured } from "../../core/types.ts";

/** Protocol major version this client speaks (RPC_PROTO_MAJOR_VERSION of the bundled llama.cpp). */
export const RPC_PROTO_MAJOR = 7;

/** Command numbers (enum rpc_cmd). */
export const RPC_CMD = {
  ALLOC_BUFFER: 0,
  GET_ALIGNMENT: 1,
  BUFFER_GET_BASE: 3,
  FREE_BUFFER: 4,
  SET_TENSOR: 6,
  GET_TENSOR: 8,
  GET_DEVICE_MEMORY: 11,
  HELLO: 14,
  DEVICE_COUNT: 15,
} as const;

/** Size of the HELLO capability block (RPC_CONN_CAPS_SIZE). */
const CAPS_SIZE = 24;
/** sizeof(struct rpc_tensor), packed: see {@link encodeRpcTensor}. */
export const RPC_TENSOR_SIZE = 296;
const GGML_TYPE_I8 = 24;

/** An RPC failure: the endpoint, what was being done, and why. */
export class RpcError extends Error {
  constructor(readonly endpoint: string, message: string, options?: ErrorOptions) {
    super(`rpc ${endpoint}: ${message}`, options);
    this.name = "RpcError";
  }
}

/** `host:port` split and checked (IPv6 as `[::1]:50052`). */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(endpoint) ?? /^([^:\s]+):(\d+)$/.exec(endpoint);
  if (!m) throw new Error(`${JSON.stringify(endpoint)} is not host:port (e.g. "192.168.1.20:50052")`);
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) throw new Error(`${JSON.stringify(endpoint)}: port ${m[2]} is outside 1..65535`);
  return { host: m[1]!, port };
}

/** True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

/**
 * Serialize a byte tensor (GGML_TYPE_I8, `size` elements) living at `data` in remote buffer
 * `buffer`, as struct rpc_tensor (packed, little endian): id u64, type u32, buffer u64, ne[4] u32,
 * nb[4] u32, op u32, op_params[16] i32, flags i32, src[10] u64, view_src u64, view_offs u64,
 * data u64, name[64], use_count i32 = 296 bytes.
 */
export function encodeRpcTensor(buffer: bigint, data: bigint, size: number): Buffer {
  const b = Buffer.alloc(RPC_TENSOR_SIZE);
  b.writeBigUInt64LE(1n, 0); // id: any non-zero value
  b.writeUInt32LE(GGML_TYPE_I8, 8);
  b.writeBigUInt64LE(buffer, 12);
  const ne = [size, 1, 1, 1];
  const nb = [1, size, size, size];
  for (let i = 0; i < 4; i++) {
    b.writeUInt32LE(ne[i]!, 20 + 4 * i);
    b.writeUInt32LE(nb[i]!, 36 + 4 * i);
  }
  b.writeBigUInt64LE(data, 220);
  return b;
}

/** One open connection to an rpc-server, after HELLO. Commands run one at a time. */
export class RpcConnection {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;
  /** Server protocol version. */
  version = { major: 0, minor: 0, patch: 0 };

  private constructor(readonly endpoint: string, private readonly sock: Socket, private readonly timeoutMs: number) {
    sock.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.wake();
    });
    const fail = (e: Error): void => {
      this.failure ??= e;
      this.wake();
    };
    sock.on("error", (e) => fail(new RpcError(endpoint, e.message, { cause: e })));
    sock.on("close", () => fail(new RpcError(endpoint, "the server closed the connection (it serves one client at a time, or rejected the request)")));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /**
   * Connect and say HELLO; rejects when nothing answers within `timeoutMs`, or the server speaks
   * another protocol major version.
   */
  static async connect(endpoint: string, timeoutMs = 5000): Promise<RpcConnection> {
    const { host, port } = parseEndpoint(endpoint);
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host, port, noDelay: true });
      const t = setTimeout(() => {
        s.destroy();
        reject(new RpcError(endpoint, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(t);
        reject(new RpcError(endpoint, `cannot connect: ${e.message} (is rpc-server running there?)`, { cause: e }));
      });
    });
    const c = new RpcConnection(endpoint, sock, timeoutMs);
    try {
      const rsp = await c.call(RPC_CMD.HELLO, Buffer.alloc(CAPS_SIZE), 4 + CAPS_SIZE);
      c.version = { major: rsp[0]!, minor: rsp[1]!, patch: rsp[2]! };
    } catch (e) {
      c.close();
      throw e;
    }
    if (c.version.major !== RPC_PROTO_MAJOR) {
      c.close();
      throw new RpcError(endpoint, `server speaks RPC protocol ${c.version.major}.${c.version.minor}.${c.version.patch}, this spillway ${RPC_PROTO_MAJOR}.x: run the rpc-server of the same llama.cpp version`);
    }
    return c;
  }

  private async read(n: number): Promise<Buffer> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.have < n) {
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new RpcError(this.endpoint, `no reply within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    return out;
  }

  /** Send a command without a reply (SET_TENSOR, FREE_BUFFER). */
  send(cmd: number, payload: Buffer): void {
    if (this.failure) throw this.failure;
    const head = Buffer.alloc(9);
    head.writeUInt8(cmd, 0);
    head.writeBigUInt64LE(BigInt(payload.length), 1);
    this.sock.write(head);
    if (payload.length) this.sock.write(payload);
  }

  /** Send a command and read its reply of exactly `replySize` bytes. */
  async call(cmd: number, payload: Buffer, replySize: number): Promise<Buffer> {
    this.send(cmd, payload);
    const size = Number((await this.read(8)).readBigUInt64LE(0));
    if (size !== replySize) throw new RpcError(this.endpoint, `command ${cmd}: reply of ${size} bytes, expected ${replySize}`);
    return Buffer.from(await this.read(size));
  }

  /** Devices the server exposes. */
  async deviceCount(): Promise<number> {
    return (await this.call(RPC_CMD.DEVICE_COUNT, Buffer.alloc(0), 4)).readUInt32LE(0);
  }

  /** Free and total memory of one device, bytes. */
  async deviceMemory(device: number): Promise<{ freeBytes: number; totalBytes: number }> {
    const req = Buffer.alloc(4);
    req.writeUInt32LE(device, 0);
    const r = await this.call(RPC_CMD.GET_DEVICE_MEMORY, req, 16);
    return { freeBytes: Number(r.readBigUInt64LE(0)), totalBytes: Number(r.readBigUInt64LE(8)) };
  }

  /** Allocate a buffer on a device: its handle and base address (remote pointers). */
  async allocBuffer(device: number, size: number): Promise<{ handle: bigint; base: bigint; size: number }> {
    const req = Buffer.alloc(12);
    req.writeUInt32LE(device, 0);
    req.writeBigUInt64LE(BigInt(size), 4);
    const r = await this.call(RPC_CMD.ALLOC_BUFFER, req, 16);
    const handle = r.readBigUInt64LE(0);
    if (handle === 0n) throw new RpcError(this.endpoint, `cannot allocate ${size} bytes on device ${device}`);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(handle, 0);
    const base = (await this.call(RPC_CMD.BUFFER_GET_BASE, b, 8)).readBigUInt64LE(0);
    return { handle, base, size: Number(r.readBigUInt64LE(8)) };
  }

  /** Free a buffer from {@link allocBuffer} (no reply). */
  freeBuffer(handle: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(handle, 0);
    this.send(RPC_CMD.FREE_BUFFER, b);
  }

  /** Write `data` at the start of a buffer (no reply: follow with a call to wait for it). */
  setBytes(buf: { handle: bigint; base: bigint }, data: Buffer): void {
    const head = Buffer.alloc(RPC_TENSOR_SIZE + 9);
    encodeRpcTensor(buf.handle, buf.base, data.length).copy(head, 0);
    // cache_flag 0, offset 0
    this.send(RPC_CMD.SET_TENSOR, Buffer.concat([head, data]));
  }

  /** Read `size` bytes from the start of a buffer. */
  async getBytes(buf: { handle: bigint; base: bigint }, size: number): Promise<Buffer> {
    const req = Buffer.alloc(RPC_TENSOR_SIZE + 16);
    encodeRpcTensor(buf.handle, buf.base, size).copy(req, 0);
    req.writeBigUInt64LE(0n, RPC_TENSOR_SIZE);
    req.writeBigUInt64LE(BigInt(size), RPC_TENSOR_SIZE + 8);
    return this.call(RPC_CMD.GET_TENSOR, req, size);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** What an rpc-server says about itself. */
export interface RpcNodeInfo {
  endpoint: string;
  version: string;
  devices: { index: number; freeBytes: number; totalBytes: number }[];
}

/** Ask an rpc-server for its devices and their free memory (one connection, closed after). */
export async function queryRpcNode(endpoint: string, timeoutMs = 5000): Promise<RpcNodeInfo> {
  const c = await RpcConnection.connect(endpoint, timeoutMs);
  try {
    const n = await c.deviceCount();
    const devices: RpcNodeInfo["devices"] = [];
    for (let i = 0; i < n; i++) devices.push({ index: i, ...(await c.deviceMemory(i)) });
    return { endpoint, version: `${c.version.major}.${c.version.minor}.${c.version.patch}`, devices };
  } finally {
    c.close();
  }
}

/** What {@link measureRpcLink} measured. */
export interface RpcLinkMeasurement {
  endpoint: string;
  /** One small command's round trip (DEVICE_COUNT), ms. */
  rttMs: Measured;
  /** Client -> server (SET_TENSOR of `bytes`, then a round trip to wait for it), GB/s. */
  uploadGBps: Measured;
  /** Server -> client (GET_TENSOR of `bytes`), GB/s. */
  downloadGBps: Measured;
  bytes: number;
}

function stats(xs: number[], unit: string): Measured {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const r = (x: number): number => +x.toPrecision(4);
  return { min: r(s[0]!), median: r(median), max: r(s[s.length - 1]!), unit };
}

/**
 * Measure the link to an rpc-server the way the planner needs it: the round trip of a small
 * command (each token pays it per network boundary) and the rate of moving `bytes` each way
 * (weights at load, hidden states per micro-batch). Uses a buffer of `bytes` on `device`, freed after.
 */
export async function measureRpcLink(
  endpoint: string,
  options: { pings?: number; bytes?: number; repetitions?: number; device?: number; timeoutMs?: number } = {},
): Promise<RpcLinkMeasurement> {
  const pings = options.pings ?? 50;
  const bytes = options.bytes ?? 16 * 2 ** 20;
  const reps = options.repetitions ?? 5;
  const c = await RpcConnection.connect(endpoint, options.timeoutMs ?? 30_000);
  const now = (): number => performance.now();
  try {
    const rtt: number[] = [];
    for (let i = 0; i < pings; i++) {
      const t = now();
      await c.deviceCount();
      rtt.push(now() - t);
    }
    const buf = await c.allocBuffer(options.device ?? 0, bytes);
    const up: number[] = [];
    const down: number[] = [];
    try {
      const data = Buffer.alloc(bytes, 0x5a);
      for (let i = 0; i < reps; i++) {
        let t = now();
        c.setBytes(buf, data);
        await c.deviceCount(); // the server handles commands in order: this returns after the write
        up.push(bytes / ((now() - t) / 1000) / 1e9);
        t = now();
        const back = await c.getBytes(buf, bytes);
        down.push(bytes / ((now() - t) / 1000) / 1e9);
        if (i === 0 && !back.equals(data)) throw new RpcError(endpoint, "the bytes read back differ from those written");
      }
    } finally {
      c.freeBuffer(buf.handle);
      await c.deviceCount().catch(() => 0);
    }
    return { endpoint, rttMs: stats(rtt, "ms"), uploadGBps: stats(up, "GB/s"), downloadGBps: stats(down, "GB/s"), bytes };
  } finally {
    c.close();
  }
}
