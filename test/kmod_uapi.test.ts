// The TypeScript mirror of the kernel module's uapi (kmod/uapi.ts) against what gcc makes of the
// header itself (kmod/include/uapi/spillway.h): sizes, offsets, field types, constants, ioctl
// numbers and the shared checksum. Proves the TS ioctl encodings equal C's.
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as uapi from "../kmod/uapi.ts";
import { fieldWidth } from "../ffi/struct.ts";
import { assert, assertEquals, assertStrictEquals, assertThrows } from "./_assert.ts";
import { buildC, ROOT } from "./_native.ts";

interface CField {
  offset: number;
  elem: number;
  count: number;
  signed: boolean;
}
interface CLayout {
  structs: Record<string, { size: number; fields: Record<string, CField> }>;
  ioctl: Record<string, number>;
  const: Record<string, number | string>;
  csum_pattern: string;
}

let layout: CLayout | undefined;
function cLayout(): CLayout {
  if (layout) return layout;
  const header = join(ROOT, "kmod/include/uapi/spillway.h");
  // the header is not a source of the build, so its hash goes into the flags (and the cache key)
  const sha = createHash("sha256").update(readFileSync(header)).digest("hex").slice(0, 16);
  const exe = buildC("kmod_uapi_layout", ["kmod/testbed/host/uapi_layout.c"], [
    "-I",
    join(ROOT, "kmod/include"),
    `-DSPILLWAY_HEADER_SHA=${sha}`,
  ]);
  layout = JSON.parse(execFileSync(exe, { encoding: "utf8" })) as CLayout;
  return layout;
}

test("kmod uapi: every struct has the size and field layout of the C header", () => {
  const c = cLayout();
  assertEquals(Object.keys(uapi.STRUCTS).sort(), Object.keys(c.structs).sort(), "struct sets differ");
  for (const [name, ts] of Object.entries(uapi.STRUCTS)) {
    const cs = c.structs[name];
    assertStrictEquals(ts.size, cs.size, `${name}: size`);
    assertEquals(Object.keys(ts.fields).sort(), Object.keys(cs.fields).sort(), `${name}: field names`);
    for (const [field, spec] of Object.entries(ts.fields)) {
      const cf = cs.fields[field];
      const where = `${name}.${field}`;
      assertStrictEquals(spec.offset, cf.offset, `${where}: offset`);
      assertStrictEquals(fieldWidth(spec.type), cf.elem, `${where}: width`);
      assertStrictEquals(spec.count ?? 0, cf.count, `${where}: array length`);
      assertStrictEquals(spec.type.startsWith("i"), cf.signed, `${where}: signedness`);
    }
    // explicit padding: the fields cover every byte, so no compiler-inserted holes exist
    const covered = Object.values(ts.fields).reduce((n, f) => n + fieldWidth(f.type) * (f.count ?? 1), 0);
    assertStrictEquals(covered, ts.size, `${name}: fields cover ${covered} of ${ts.size} bytes`);
  }
});

test("kmod uapi: ioctl numbers computed in TypeScript equal the C macros", () => {
  const c = cLayout();
  assertEquals(Object.keys(uapi.IOC).sort(), Object.keys(c.ioctl).sort());
  for (const [name, value] of Object.entries(uapi.IOC)) {
    assertStrictEquals(value, c.ioctl[name], `SPILLWAY_IOC_${name}: ${value.toString(16)} vs ${c.ioctl[name].toString(16)}`);
  }
  // and the encoder agrees with a kernel ioctl it did not define: DMA_BUF_IOCTL_SYNC
  assertStrictEquals(uapi.ioc(uapi.IOC_WRITE, 0x62, 0, 8), 0x40086200);
  assertThrows(() => uapi.ioc(3, 0x100, 0, 8), RangeError);
});

test("kmod uapi: constants equal the header's", () => {
  const k = cLayout().const;
  assertStrictEquals(uapi.UAPI_VERSION, k.UAPI_VERSION);
  assertStrictEquals(uapi.UAPI_VERSION_MAJOR, k.UAPI_VERSION_MAJOR);
  assertStrictEquals(uapi.UAPI_VERSION_MINOR, k.UAPI_VERSION_MINOR);
  assertStrictEquals(uapi.CHUNK_ORDER, k.CHUNK_ORDER);
  assertStrictEquals(BigInt(uapi.CHUNK_SIZE), BigInt(k.CHUNK_SIZE));
  assertStrictEquals(uapi.NR_ORDERS, k.NR_ORDERS);
  assertStrictEquals(uapi.MAX_ALLOC_BYTES, BigInt(k.MAX_ALLOC_BYTES));
  assertStrictEquals(uapi.ALLOC_FALLBACK, k.ALLOC_FALLBACK);
  assertStrictEquals(uapi.ALLOC_FLAGS_ALL, k.ALLOC_FLAGS_ALL);
  assertStrictEquals(uapi.PRESSURE.NONE, k.PRESSURE_NONE);
  assertStrictEquals(uapi.PRESSURE.MODERATE, k.PRESSURE_MODERATE);
  assertStrictEquals(uapi.PRESSURE.CRITICAL, k.PRESSURE_CRITICAL);
  assertStrictEquals(uapi.IOC_MAGIC, k.IOC_MAGIC);
  assertStrictEquals(uapi.CSUM_INIT, BigInt(k.CSUM_INIT));
  assertStrictEquals(uapi.DEVICE_PATH, k.DEVICE_PATH);
  assertStrictEquals(uapi.SYSFS_DIR, k.SYSFS_DIR);
  assertStrictEquals(uapi.PoolInfo.fields.chunks.count, uapi.NR_ORDERS);
});

test("kmod uapi: csum() equals the header's spillway_csum()", () => {
  const bytes = new Uint8Array(4096).map((_, i) => (i * 7 + 3) & 0xff);
  assertStrictEquals(uapi.csum(bytes), BigInt(cLayout().csum_pattern));
  assertThrows(() => uapi.csum(new Uint8Array(7)), RangeError);
});

test("kmod uapi: an encoded ALLOC request decodes to the same values", () => {
  const bytes = uapi.Alloc.encode({ size: BigInt(3 * uapi.CHUNK_SIZE), flags: uapi.ALLOC_FALLBACK, fd: -1 });
  assertStrictEquals(bytes.length, 48);
  const back = uapi.Alloc.decode(bytes);
  assertStrictEquals(back.size, 6291456n);
  assertStrictEquals(back.flags, 1);
  assertStrictEquals(back.fd, -1);
  assertEquals(back.reserved, [0n, 0n]);
  assert(bytes.subarray(32).every((b) => b === 0), "reserved bytes must encode as zero");
});
