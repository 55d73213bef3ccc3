// The TypeScript client end to end inside the test bed's guest (run by bun, as root, with the
// module NOT loaded): load spillway.ko through finit_module, drive the pool through the uapi
// mirror (alloc, mmap view, info, limit, errors), check the kernel sees the bytes written through
// the view, unload through delete_module. Prints "PASS: <name>" / "FAIL: <name>" lines.
//
// Usage: bun client_e2e.ts <path of spillway.ko>
import process from "node:process";
import { KernelModuleError } from "../../../core/errors.ts";
import { libc, O } from "../../../ffi/libc.ts";
import { loadModule, moduleStatus, NOT_LOADED_MESSAGE, unloadModule } from "../../loader.ts";
import { Pool } from "../../pool.ts";
import { csum, DebugCheck, DEVICE_PATH, IOC, UAPI_VERSION } from "../../uapi.ts";

const ko = process.argv[2];
let failures = 0;

async function step(name: string, fn: () => unknown | Promise<unknown>): Promise<void> {
  try {
    await fn();
    console.log(`PASS: ts-client-${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL: ts-client-${name}\n  detail: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function check(cond: unknown, what: string): void {
  if (!cond) throw new Error(what);
}

const MiB = 1024 * 1024;

await step("status-not-loaded", () => {
  const s = moduleStatus();
  check(!s.loaded && s.message === NOT_LOADED_MESSAGE, `status: ${s.message}`);
});

await step("load-via-finit-module", async () => {
  await loadModule(ko, { group: 4242, debug_ioctls: true, pool_limit_bytes: 64 * MiB });
  for (let i = 0; i < 100 && !moduleStatus().device.exists; i++) await new Promise((r) => setTimeout(r, 20));
  const s = moduleStatus();
  check(s.loaded && s.limitBytes === 64 * MiB && s.params.group === "4242", `status after load: ${s.message}`);
  check(s.device.exists && s.device.mode === "0660" && s.device.gid === 4242, `device ${JSON.stringify(s.device)}`);
});

await step("load-twice-is-eexist", async () => {
  try {
    await loadModule(ko);
    throw new Error("second load succeeded");
  } catch (e) {
    check(e instanceof KernelModuleError && e.errno === 17 && e.message.includes("already loaded"), String(e));
  }
});

const pool = await Pool.open();

await step("version", () => {
  const v = pool.version();
  check(v.version === UAPI_VERSION && v.chunkSize === 2 * MiB && v.debugIoctls, JSON.stringify(v, (_k, x) => typeof x === "bigint" ? String(x) : x));
});

await step("alloc-map-kernel-sees-bytes", async () => {
  const c = await libc();
  const buf = pool.alloc(4 * MiB);
  check(buf.fd >= 0 && buf.chunks === 2 && buf.minOrder === 9, `buffer ${buf.fd} ${buf.chunks} ${buf.minOrder}`);
  const map = pool.map(buf);
  for (let i = 0; i < map.length; i += 4096) map.view[i] = (i >> 12) & 0xff;
  map.view[map.length - 1] = 0x5a;
  const want = csum(map.view);
  // the kernel's importer view of the same buffer (debug ioctl, through the TS struct mirror)
  // (a second open of the device: Pool keeps its fd private)
  const dev = c.open(DEVICE_PATH, O.RDWR | O.CLOEXEC);
  const req = DebugCheck.encode({ fd: buf.fd });
  const rc = c.ioctl(dev, IOC.DEBUG_CHECK, req);
  const errno = c.errno();
  c.close(dev);
  check(rc === 0, `DEBUG_CHECK: errno ${errno}`);
  const r = DebugCheck.decode(req);
  check(r.sg_nents === 2n && r.sg_chunks_ok === 2n && r.sg_bytes === BigInt(4 * MiB), `sg ${r.sg_nents} ${r.sg_chunks_ok}`);
  check(r.csum_sg === want && r.csum_vmap === want, `csum user ${want} sg ${r.csum_sg} vmap ${r.csum_vmap}`);
  const info = pool.info();
  check(info.usedBytes === 4 * MiB && info.buffers === 1 && info.chunksByOrder[9] === 2, JSON.stringify(info));
  buf.close();
  check(pool.info().buffers === 1, "the mapping must keep the buffer alive after close");
  map.unmap();
  const after = pool.info();
  check(after.usedBytes === 0 && after.buffers === 0, `after unmap: ${JSON.stringify(after)}`);
});

await step("over-limit-is-enomem-with-a-clear-message", () => {
  const old = pool.setLimit(4 * MiB);
  check(old === 64 * MiB, `old limit ${old}`);
  const a = pool.alloc(4 * MiB);
  try {
    pool.alloc(2 * MiB);
    throw new Error("alloc over the limit succeeded");
  } catch (e) {
    check(e instanceof KernelModuleError && e.errno === 12 && e.message.includes("pool limit"), String(e));
  } finally {
    a.close();
    pool.setLimit(old);
  }
});

await step("unload-busy-while-open-then-unload", async () => {
  try {
    await unloadModule();
    throw new Error("unload succeeded with /dev/spillway open");
  } catch (e) {
    check(e instanceof KernelModuleError && (e.errno === 11 || e.errno === 16) && e.message.includes("in use"), String(e));
  }
  pool.close();
  await unloadModule();
  check(!moduleStatus().loaded, "still loaded after unload");
});

console.log(`TS-CLIENT-RESULT: ${failures}`);
process.exit(failures ? 1 : 0);
