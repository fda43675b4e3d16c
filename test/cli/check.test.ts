import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { partitions } from "../../src/dag/partitions.js";
import { floe, repoRoot, type CliResult } from "../helpers/project.js";

// floe check on projects outside this repository: `tsc --noEmit` (a real TypeScript) plus floe's
// own validation, each problem as `file:line:col message`, exit 0 clean and 2 with problems.
let base: string;
beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "floe-check-")));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** What `npm install` puts in node_modules for a project made by floe init, without the network. */
function linkInstall(dir: string, withTypeScript: boolean): void {
  mkdirSync(join(dir, "node_modules", "@types"), { recursive: true });
  symlinkSync(repoRoot, join(dir, "node_modules", "floe"), "dir");
  if (!withTypeScript) return;
  symlinkSync(join(repoRoot, "node_modules", "typescript"), join(dir, "node_modules", "typescript"), "dir");
  symlinkSync(join(repoRoot, "node_modules", "@types", "node"), join(dir, "node_modules", "@types", "node"), "dir");
}

/** 1-based line and column of the first `needle` in `text`. */
function at(text: string, needle: string): string {
  const i = text.indexOf(needle);
  expect(i, needle).toBeGreaterThanOrEqual(0);
  const before = text.slice(0, i).split("\n");
  return `${before.length}:${before.at(-1)!.length + 1}`;
}

interface CheckJson {
  problems: Array<{ file: string | null; line: number; col: number; message: string; source: string }>;
  typescript: { version: string; from: string } | null;
  assets: number;
}

function lines(r: CliResult): string[] {
  return r.stdout.trim().split("\n");
}

describe("floe check", () => {
  it("is clean on a new project, then finds a number for codeVersion (tsc and floe) and an unknown dep, with file:line:col", async () => {
    expect((await floe(["init", "shop"], { cwd: base })).code).toBe(0);
    const dir = join(base, "shop");
    linkInstall(dir, true);
    const file = join(dir, "pipelines", "orders.ts");
    const original = readFileSync(file, "utf8");

    const clean = await floe(["check", "--json"], { cwd: join(dir, "pipelines") }); // from a subfolder
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    const report = JSON.parse(clean.stdout) as CheckJson;
    expect(report.problems).toEqual([]);
    expect(report.typescript).toEqual({ version: JSON.parse(readFileSync(join(repoRoot, "node_modules/typescript/package.json"), "utf8")).version, from: "project" });
    expect(report.assets).toBe(3);

    const broken = original.replace('codeVersion: "1"', "codeVersion: 1");
    expect(broken).not.toBe(original);
    writeFileSync(file, broken);
    const r = await floe(["check"], { cwd: dir });
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(lines(r)).toEqual([
      `pipelines/orders.ts:${at(broken, 'duckdbTable("orders"')} asset \`orders\`: codeVersion must be a string, got number 1 (write codeVersion: "1")`,
      `pipelines/orders.ts:${at(broken, "codeVersion: 1")} Type 'number' is not assignable to type 'string'. (TS2322)`,
      expect.stringMatching(/^2 problems in 1 file; types checked by TypeScript \d+\.\d+\.\d+ \(the project's\)$/),
    ]);
    // every other command refuses the module at load, in one line
    const list = await floe(["list"], { cwd: dir });
    expect([list.code, list.stderr]).toEqual([2, 'floe: pipelines/orders.ts: asset `orders`: codeVersion must be a string, got number 1 (write codeVersion: "1")\n']);

    // all modules load, the graph does not: the problem is put where the asset is declared
    const unknownDep = original.replace(
      "export default pipeline(",
      'export const report = asset("report", { deps: ["ordrs"], materialize: () => ({}) });\n\nexport default pipeline(',
    ).replace("assets: [rawOrders, orders, dailyRevenue]", "assets: [rawOrders, orders, dailyRevenue, report]");
    writeFileSync(file, unknownDep);
    const graph = await floe(["check"], { cwd: dir });
    expect(graph.code, graph.stdout + graph.stderr).toBe(2);
    expect(lines(graph)).toEqual([
      `pipelines/orders.ts:${at(unknownDep, '"report"')} asset \`report\` depends on \`ordrs\`, which no loaded pipeline declares; did you mean \`orders\`?`,
      expect.stringMatching(/^1 problem in 1 file; /),
    ]);
  }, 300_000);

  it("lists every broken module and the config, with floe's own TypeScript and no tsconfig.json", async () => {
    const dir = join(base, "bare");
    mkdirSync(join(dir, "pipelines"), { recursive: true });
    linkInstall(dir, false); // no TypeScript in the project: floe's own checks the types
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    const good = 'import { asset, pipeline } from "floe";\n\nexport default pipeline("good", { assets: [asset("fine", { materialize: () => ({}) })] });\n';
    const syntax = 'import { asset, pipeline } from "floe";\n\nexport default pipeline("bad", {\n  assets: [asset("x", { materialize: () => ({}) }) +],\n});\n';
    const typed = 'import { asset, partitions, pipeline } from "floe";\n\nconst daily = partitions.daily({ start: "2025-01-01" });\nexport default pipeline("typed", { assets: [asset("y", { partitions: daily, pool: 2 as unknown as string, materialize: () => ({}) })] });\n';
    const config = 'import { defineConfig } from "floe";\n\nexport default defineConfig({\n  warehouse: "lake",\n  concurrency: "four" as unknown as number,\n});\n';
    writeFileSync(join(dir, "pipelines", "a_good.ts"), good);
    writeFileSync(join(dir, "pipelines", "b_syntax.ts"), syntax);
    writeFileSync(join(dir, "pipelines", "c_typed.ts"), typed);
    writeFileSync(join(dir, "floe.config.ts"), config);
    const r = await floe(["check", "--json"], { cwd: dir });
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const report = JSON.parse(r.stdout) as CheckJson;
    expect(report.typescript?.from).toBe("floe");
    const floeProblems = report.problems.filter((p) => p.source === "floe").map((p) => `${p.file}:${p.line}:${p.col} ${p.message}`);
    expect(floeProblems).toEqual([
      expect.stringMatching(new RegExp(`^floe\\.config\\.ts:${at(config, "concurrency")} concurrency: .*expected number`, "i")),
      expect.stringMatching(new RegExp(`^pipelines/b_syntax\\.ts:${at(syntax, "],")} syntax error: Unexpected "\\]"$`)),
      `pipelines/c_typed.ts:${at(typed, 'asset("y"')} asset \`y\`: pool must be a string, got number 2`,
    ]);
    // tsc saw the syntax error too (the casts hide the other two from it, not from floe)
    expect(report.problems.filter((p) => p.source === "typescript" && p.file === "pipelines/b_syntax.ts").map((p) => `${p.line}:${p.col}`)).toEqual([at(syntax, "],")]);

    const text = await floe(["check"], { cwd: dir });
    expect(text.code).toBe(2);
    expect(lines(text).at(-1)).toMatch(/^\d+ problems in 3 files; types checked by TypeScript [\d.]+ \(floe's own\)$/);
    for (const line of lines(text).slice(0, -1)) expect(line).toMatch(/^(floe\.config\.ts|pipelines\/[a-z_]+\.ts):\d+:\d+ \S/);
  }, 300_000);
});

describe("asset options are type-checked at load", () => {
  const m = () => ({});
  const bad = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      expect((e as Error).name).toBe("UserError");
      return (e as Error).message;
    }
    throw new Error("expected a UserError");
  };
  const loose = asset as unknown as (key: unknown, options: Record<string, unknown>) => unknown;
  const loosePipeline = pipeline as unknown as (name: unknown, options: Record<string, unknown>) => unknown;

  it("names the option, the type it got and what it should be", () => {
    expect(bad(() => loose("a", { codeVersion: 2, materialize: m }))).toBe('asset `a`: codeVersion must be a string, got number 2 (write codeVersion: "2")');
    expect(bad(() => loose("a", { codeVersion: ["1"], materialize: m }))).toBe("asset `a`: codeVersion must be a string, got array");
    expect(bad(() => loose("a", { description: 5, materialize: m }))).toBe("asset `a`: description must be a string, got number 5");
    expect(bad(() => loose("a", { deps: "raw", materialize: m }))).toBe('asset `a`: deps must be an array of assets or asset keys, got string "raw"');
    expect(bad(() => loose("a", { tags: ["pii", 1], materialize: m }))).toMatch(/^asset `a`: tags must be an array of strings or an object of string values .*, got array$/);
    expect(bad(() => loose("a", { tags: { team: 1 }, materialize: m }))).toMatch(/^asset `a`: tags must be .*, got object$/);
    expect(bad(() => loose("a", { kinds: "x", materialize: m }))).toBe('asset `a`: kinds must be an array of strings, got string "x"');
    expect(bad(() => loose("a", { partitions: "daily", materialize: m }))).toMatch(/^asset `a`: partitions must be a partitions definition .*, got string "daily"$/);
    expect(bad(() => loose("a", { retry: 3, materialize: m }))).toBe("asset `a`: retry must be an object ({ maxAttempts: 3, delayMs: 500 }), got number 3");
    expect(bad(() => loose("a", { retry: { maxAttempts: "3" }, materialize: m }))).toBe('asset `a`: retry.maxAttempts must be a whole number of at least 1, got string "3"');
    expect(bad(() => loose("a", { retry: { maxAttempts: 3, delayMs: -1 }, materialize: m }))).toBe("asset `a`: retry.delayMs must be a number of at least 0, got number -1");
    expect(bad(() => loose(7, { materialize: m }))).toBe("an asset key must be a string, got number 7");
    expect(bad(() => loosePipeline("p", { assets: [], schedule: { cron: 5 } }))).toBe('pipeline `p`: schedule must be an object with a cron string ({ cron: "0 2 * * *" }), got cron number 5');
    expect(bad(() => loosePipeline(1, { assets: [] }))).toBe("a pipeline name must be a string, got number 1");
  });

  it("accepts every option of the right type", () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const a = asset("a", { partitions: daily, codeVersion: "2", pool: "p", description: "d", tags: { team: "data" }, kinds: ["x"], retry: { maxAttempts: 3, delayMs: 0 }, materialize: m });
    expect([a.codeVersion, a.pool, a.tags, a.kinds, a.retry]).toEqual(["2", "p", { team: "data" }, ["asset", "x"], { maxAttempts: 3, delayMs: 0 }]);
    expect(asset("b", { deps: [a, "c"], tags: ["pii"], materialize: m }).deps).toEqual(["a", "c"]);
  });
});
