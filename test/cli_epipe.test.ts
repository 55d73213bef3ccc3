// A closed stdout (`spillway plan RECIPE | head -1`) ends spillway quietly (issue 14 item 5): exit
// 0 or 141 (128 + SIGPIPE) as CLI tools do, no EPIPE stack trace on stderr.
import { test } from "node:test";
import { join } from "node:path";
import { assert, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { startCli } from "./_spillway_cli.ts";

for (const args of [["plan", join(ROOT, "recipes", "glm-4.7-flash-q8_0.json5")], ["plan", join(ROOT, "recipes", "glm-4.7-flash-q8_0.json5"), "--json"], ["synth", "--list"]]) {
  test(`spillway ${args.map((a) => a.replace(ROOT + "/", "")).join(" ")} | (reader gone): exits 0 or 141 without a stack trace (CLI)`, async () => {
    const child = startCli(args);
    // The reader goes away before spillway writes: every write to stdout fails with EPIPE.
    child.stdout!.destroy();
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on("close", (c, sig) => r(c ?? (sig === "SIGPIPE" ? 141 : null))));
    assert(code === 0 || code === 141, `exit ${code}; stderr: ${stderr}`);
    assert(!/EPIPE|\n\s+at /.test(stderr), `quiet on a closed stdout; stderr: ${stderr}`);
    assertMatch(String(code), /^(0|141)$/);
  });
}
