import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../errors.js";

/** What `floe init` needs to know about the floe that runs it. */
export interface FloePackage {
  /** The package folder (a checkout, or `…/node_modules/floe`). */
  root: string;
  version: string;
  engines: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

let cached: FloePackage | undefined;

/**
 * floe's own package.json (the same file from `src/` and from `dist/`).
 *
 * @example
 * floePackage().version; // "0.1.0"
 */
export function floePackage(): FloePackage {
  if (cached) return cached;
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Partial<FloePackage>;
  cached = {
    root: root.endsWith(sep) ? root.slice(0, -1) : root,
    version: pkg.version ?? "0.0.0",
    engines: pkg.engines ?? {},
    dependencies: pkg.dependencies ?? {},
    devDependencies: pkg.devDependencies ?? {},
  };
  return cached;
}

/** Days of the sample landing folder, and their rows (`id,customer,amount`). */
const SAMPLE: Record<string, string[]> = {
  "2025-01-01": ["1,ada,12.50", "2,grace,7.25", "3,alan,30.00"],
  "2025-01-02": ["4,ada,5.00", "5,linus,18.75"],
  "2025-01-03": ["6,grace,9.50", "7,ada,20.25", "8,alan,1.00", "9,margaret,11.25"],
};

const PIPELINE = `// The example pipeline: CSV files landing in data/landing/orders/<day>/ become a checked DuckDB
// table per day, and a daily revenue figure is computed over it. Run it with
//   npx floe materialize --select "+daily_revenue" --from 2025-01-01 --to 2025-01-03
import { asset, checks, duckdbTable, partitions, pipeline, rawFiles } from "floe";

export const daily = partitions.daily({ start: "2025-01-01" });

export const rawOrders = rawFiles("raw_orders", {
  storage: { type: "local", root: "data/landing" }, // relative to the project; or S3 (see the README of floe)
  glob: "orders/{partition}/*.csv",                  // {partition} is the day: 2025-01-01
  format: "csv",
  partitions: daily,
});

export const orders = duckdbTable("orders", {
  deps: [rawOrders],
  partitions: daily,
  sql: ({ ref }) => \`select cast(id as integer) as id, customer, cast(amount as double) as amount from \${ref(rawOrders)}\`,
  checks: [checks.unique("id"), checks.notNull("customer"), checks.range("amount", { min: 0 }), checks.rowCount({ min: 1 })],
  codeVersion: "1", // bump it when the SQL changes meaning: days materialized before become stale
});

export const dailyRevenue = asset("daily_revenue", {
  deps: [orders],
  partitions: daily,
  async materialize(ctx) {
    const [row] = await ctx.duckdb.all(\`select count(*) as orders, sum(amount) as revenue from \${ctx.ref(orders)}\`);
    ctx.log.info(\`\${ctx.partitionKey}: \${String(row?.orders)} orders\`);
    return { metadata: { orders: Number(row?.orders), revenue: Number(row?.revenue) } };
  },
});

export default pipeline("orders", { assets: [rawOrders, orders, dailyRevenue] });
`;

const PIPELINE_TEST = `// \`npm test\` runs this file with node:test, which is built into Node: no test framework to
// install. floe/register lets Node load TypeScript, as floe does for pipeline modules.
// The test materializes the sample days into a throwaway embedded store and checks what landed.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { main } from "floe/engine";

const project = fileURLToPath(new URL("..", import.meta.url));
const home = mkdtempSync(join(tmpdir(), "floe-test-"));
process.env.FLOE_HOME = home; // state and tables of this test only
delete process.env.FLOE_DATABASE_URL; // never the shared store
after(() => rmSync(home, { recursive: true, force: true }));

/** Runs a floe command in this process, as the CLI would: its exit code and what it printed. */
async function floe(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main([...args, "--project", project], { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

interface Step {
  asset: string;
  partition: string | null;
  status: string;
  metadata: Record<string, unknown>;
}

test("the sample days land, each with its orders and revenue", async () => {
  const r = await floe("materialize", "--select", "+daily_revenue", "--from", "2025-01-01", "--to", "2025-01-03", "--json");
  assert.equal(r.code, 0, r.err || r.out);
  const steps = (JSON.parse(r.out) as { steps: Step[] }).steps;
  assert.deepEqual(steps.filter((s) => s.status !== "success"), []);
  const revenue = steps
    .filter((s) => s.asset === "daily_revenue")
    .map((s) => [s.partition, s.metadata.orders, s.metadata.revenue])
    .sort();
  assert.deepEqual(revenue, [
    ["2025-01-01", 3, 49.75],
    ["2025-01-02", 2, 23.75],
    ["2025-01-03", 4, 42],
  ]);
});

test("nothing is stale after that run", async () => {
  const r = await floe("materialize", "--select", "+daily_revenue", "--from", "2025-01-01", "--to", "2025-01-03", "--stale", "--json");
  assert.equal(r.code, 0, r.err || r.out);
  assert.deepEqual((JSON.parse(r.out) as { steps: Step[] }).steps, []);
});
`;

const CONFIG = `// Project settings (optional); environment variables win over them. Every key is listed in
// floe's README ("Operating it").
import { defineConfig } from "floe";

export default defineConfig({
  // databaseUrl: "postgres://user@host:5432/floe", // default: an embedded store under .floe/ (env FLOE_DATABASE_URL)
  // warehouse: "s3://bucket/prefix",               // default: .floe/warehouse (env FLOE_WAREHOUSE)
  // concurrency: 4,                                // steps at once per run (default: the cores)
});
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2023"],
    types: ["node"],
    strict: true,
    isolatedModules: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
    noEmit: true,
  },
  include: ["pipelines", "floe.config.ts"],
};

const GITIGNORE = [".floe/", "node_modules/"];

/** What `floe init` did, for the lines it prints. */
export interface InitResult {
  dir: string;
  created: string[];
  updated: string[];
  kept: string[];
  /** The floe dependency written to package.json (`^0.1.0`, or `file:…` when floe runs from a checkout). */
  floeSpec: string;
  notes: string[];
}

/** `^1.2.3` for a pinned version; a range stays as it is. */
function caret(version: string | undefined, fallback: string): string {
  if (version === undefined) return fallback;
  return /^\d/.test(version) ? `^${version}` : version;
}

/** A package name npm accepts, from the folder name. */
function packageName(dir: string): string {
  const name = basename(dir).toLowerCase().replace(/[^a-z0-9._~-]+/g, "-").replace(/^[._-]+|-+$/g, "");
  return name === "" ? "floe-project" : name.slice(0, 214);
}

/** The files `floe init` writes besides package.json and .gitignore (which it merges). */
function projectFiles(): Record<string, string> {
  const files: Record<string, string> = {
    "floe.config.ts": CONFIG,
    "pipelines/orders.ts": PIPELINE,
    "pipelines/orders.test.ts": PIPELINE_TEST,
  };
  for (const [day, rows] of Object.entries(SAMPLE)) files[`data/landing/orders/${day}/orders.csv`] = ["id,customer,amount", ...rows, ""].join("\n");
  return files;
}

/**
 * How a project outside this repository depends on the floe that runs `init`: the published
 * version when floe was installed into a node_modules (npm, npx, a tarball), else the checkout
 * itself as a `file:` dependency, relative, as `npm i /path/to/floe` writes it.
 */
function floeDependency(projectDir: string): string {
  const pkg = floePackage();
  if (pkg.root.split(sep).includes("node_modules")) return caret(pkg.version, "*");
  const rel = relative(projectDir, pkg.root).split(sep).join("/");
  return `file:${rel === "" ? "." : rel}`;
}

/**
 * Creates a floe project in `dir` (created when missing): package.json with `"type": "module"`
 * and floe as a dependency, tsconfig.json (strict, NodeNext, noEmit), floe.config.ts, an example
 * daily pipeline over sample CSV files with its node:test test, and .gitignore.
 *
 * It never overwrites a file. An existing package.json is merged (what `npm init -y` or
 * `npm i floe` wrote: "type" becomes "module", missing dependencies and scripts are added), an
 * existing .gitignore gets the missing lines, an existing tsconfig.json is kept. A folder that is
 * already a floe project (pipelines/ or floe.config.*), or holds a file init would write, is
 * refused with a UserError and nothing is written.
 *
 * @example
 * const result = initProject("/home/me/shop");
 * console.log(initSummary(result, "/home/me"));
 */
export function initProject(dir: string): InitResult {
  const target = resolve(dir);
  if (existsSync(target) && !statSync(target).isDirectory()) throw new UserError(`${target} is a file; give floe init a folder`);
  const already = ["pipelines", "floe.config.ts", "floe.config.mts", "floe.config.js", "floe.config.mjs"].find((f) => existsSync(join(target, f)));
  if (already !== undefined) {
    throw new UserError(`${target} is already a floe project (it has ${already}${already === "pipelines" ? "/" : ""}); floe init writes into a new or empty folder and never overwrites: pick another folder`);
  }
  const files = projectFiles();
  const clash = Object.keys(files).find((f) => existsSync(join(target, f)));
  if (clash !== undefined) throw new UserError(`${join(target, clash)} exists; floe init never overwrites a file: move it or pick another folder`);

  // package.json: read and check it before writing anything.
  const pkgPath = join(target, "package.json");
  let pkg: Record<string, unknown> = {};
  const hadPackage = existsSync(pkgPath);
  if (hadPackage) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(pkgPath, "utf8"));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
      pkg = parsed as Record<string, unknown>;
    } catch (e) {
      throw new UserError(`${pkgPath} is not a JSON object (${e instanceof Error ? e.message : String(e)}); fix it or pick another folder`);
    }
  }
  const notes: string[] = [];
  const floe = floePackage();
  const floeSpec = floeDependency(target);
  const record = (key: string): Record<string, string> => {
    const v = pkg[key];
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, string>) : {};
  };
  const dependencies = record("dependencies");
  const devDependencies = record("devDependencies");
  const scripts = record("scripts");
  if (pkg.type !== undefined && pkg.type !== "module") {
    notes.push(`package.json: "type" was ${JSON.stringify(pkg.type)}, now "module": floe pipeline modules are ES modules`);
  }
  const next: Record<string, unknown> = {
    ...(hadPackage ? {} : { name: packageName(target), version: "0.1.0", private: true }),
    ...pkg,
    type: "module",
    scripts: {
      ...scripts,
      // npm init's placeholder test fails on purpose; replace it, keep any other
      ...(scripts.test === undefined || /no test specified/.test(scripts.test) ? { test: "node --import floe/register --test pipelines/*.test.ts" } : {}),
      ...(scripts.check === undefined ? { check: "floe check" } : {}),
    },
    dependencies: { ...dependencies, ...(dependencies.floe === undefined ? { floe: floeSpec } : {}) },
    devDependencies: {
      ...devDependencies,
      ...(devDependencies.typescript === undefined ? { typescript: caret(floe.devDependencies.typescript, "^5") } : {}),
      ...(devDependencies["@types/node"] === undefined ? { "@types/node": caret(floe.devDependencies["@types/node"], "^20") } : {}),
    },
    ...(pkg.engines === undefined && floe.engines.node !== undefined ? { engines: { node: floe.engines.node } } : {}),
  };
  if (dependencies.floe !== undefined) notes.push(`package.json: kept its floe dependency (${dependencies.floe})`);
  if (typeof scripts.test === "string" && !/no test specified/.test(scripts.test)) notes.push("package.json: kept its test script; `node --import floe/register --test pipelines/*.test.ts` runs the example's test");

  const created: string[] = [];
  const updated: string[] = [];
  const kept: string[] = [];
  mkdirSync(target, { recursive: true });
  writeFileSync(pkgPath, `${JSON.stringify(next, null, 2)}\n`);
  (hadPackage ? updated : created).push("package.json");
  const tsconfig = join(target, "tsconfig.json");
  if (existsSync(tsconfig)) {
    kept.push("tsconfig.json");
    notes.push("tsconfig.json: kept yours; floe check type-checks with it (include pipelines/ in it)");
  } else {
    writeFileSync(tsconfig, `${JSON.stringify(TSCONFIG, null, 2)}\n`);
    created.push("tsconfig.json");
  }
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(target, name)), { recursive: true });
    writeFileSync(join(target, name), text, { flag: "wx" }); // wx: never replace a file that appeared meanwhile
    created.push(name);
  }
  const gitignore = join(target, ".gitignore");
  if (existsSync(gitignore)) {
    const text = readFileSync(gitignore, "utf8");
    const have = new Set(text.split(/\r?\n/).map((l) => l.trim()));
    const missing = GITIGNORE.filter((l) => !have.has(l) && !have.has(l.replace(/\/$/, "")));
    if (missing.length > 0) {
      writeFileSync(gitignore, `${text}${text === "" || text.endsWith("\n") ? "" : "\n"}${missing.join("\n")}\n`);
      updated.push(".gitignore");
    }
  } else {
    writeFileSync(gitignore, `${GITIGNORE.join("\n")}\n`);
    created.push(".gitignore");
  }
  return { dir: target, created, updated, kept, floeSpec, notes };
}

/**
 * What `floe init` prints: what it wrote, then the next commands, from the folder it ran in.
 *
 * @example
 * io.out(initSummary(initProject("shop"), process.cwd()));
 */
export function initSummary(result: InitResult, cwd: string): string {
  const sample = result.created.filter((f) => f.startsWith("data/"));
  const listed = [
    ...result.created.filter((f) => !f.startsWith("data/")),
    ...(sample.length > 0 ? [`data/landing/orders/ (sample CSV of ${sample.length} days)`] : []),
  ];
  const lines = [`floe project created in ${result.dir}: ${listed.join(", ")}`];
  if (result.updated.length > 0) lines.push(`updated: ${result.updated.join(", ")}`);
  lines.push(...result.notes);
  const install = result.floeSpec.startsWith("file:")
    ? `floe from ${result.floeSpec} (this checkout; \`npm i floe\` once it is published), typescript, @types/node`
    : "floe, typescript, @types/node";
  const where = relative(cwd, result.dir);
  const commands: Array<[string, string]> = [
    ...(where === "" ? [] : [[`cd ${/[\s"'$`\\]/.test(where) ? JSON.stringify(where) : where}`, ""] as [string, string]]),
    ["npm install", install],
    ['npx floe materialize --select "+daily_revenue" --from 2025-01-01 --to 2025-01-03', "the example, three sample days"],
    ["npx floe status", "what is materialized, stale or missing"],
    ["npm test", "pipelines/orders.test.ts, with node:test"],
    ["npx floe check", "type-check and validate the pipelines, as your editor does"],
  ];
  lines.push("", "next:", ...commands.map(([cmd, why]) => `  ${why === "" ? cmd : `${cmd.padEnd(16)} # ${why}`}`));
  return lines.join("\n");
}
