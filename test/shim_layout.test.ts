// shim/stats.ts mirrors shim/include/spillway_stats.h: a compiled C program prints sizeof/offsetof
// and the constants, and they must equal the TypeScript side.
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { STATS_FLAG, STATS_LAYOUT, STATS_MAGIC, STATS_SIZE, STATS_VERSION, TIER_LAYOUT, TIER_NAMES } from "../shim/stats.ts";
import { assertEquals } from "./_assert.ts";
import { buildC } from "./_native.ts";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ROOT } from "./_native.ts";

test("shim stats layout: TypeScript mirror equals the C header", () => {
  // buildC hashes the .c only: the header's hash in a define rebuilds it when the header changes.
  const header = createHash("sha256").update(readFileSync(join(ROOT, "shim/include/spillway_stats.h"))).digest("hex").slice(0, 12);
  const exe = buildC("stats_layout", ["test/fixtures/fakecuda/stats_layout.c"], [`-DHEADER_HASH=${header}`]);
  const c = JSON.parse(execFileSync(exe, { encoding: "utf8" }));
  assertEquals(c.size, STATS_SIZE);
  assertEquals(BigInt(`0x${c.magic}`), STATS_MAGIC);
  assertEquals(c.version, STATS_VERSION);
  assertEquals(c.tiers, TIER_NAMES.length);
  assertEquals(c.offsets, { ...STATS_LAYOUT });
  assertEquals(c.tier, { ...TIER_LAYOUT });
  assertEquals(c.flags, { ...STATS_FLAG });
});
