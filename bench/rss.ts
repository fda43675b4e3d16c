// bench/rss: peak resident memory of a real `floe materialize` ingesting one large CSV (2 GB by
// default, generated deterministically into bench/.tmp/rss) through rawFiles → duckdbTable
// (contract, 2 checks) → icebergTable, with state on PostgreSQL (a fresh database) and on the
// embedded PGlite store. Measured by /usr/bin/time (max RSS of the process, DuckDB's native
// memory and PGlite's WebAssembly heap included). Baseline in the same run: bare DuckDB
// `COPY (SELECT * FROM read_csv(...)) TO x.parquet` in a child process of its own. Target < 1 GB.
// Run: npm run build && npx tsx bench/rss.ts [sizeInMB]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DuckDBInstance } from "@duckdb/node-api";
import { benchDatabase } from "./lib.js";

const MB = Number(process.argv[2] ?? 2048);
const repo = fileURLToPath(new URL("..", import.meta.url));
// inside the repo so that the project's `import … from "floe"` resolves to this package
const root = join(repo, "bench", ".tmp", "rss");
const csv = join(root, "landing", "big", `orders-${MB}mb.csv`);
const ROW_BYTES = 47; // about the width of one generated line

if (!existsSync(csv)) {
  mkdirSync(join(root, "landing", "big"), { recursive: true });
  const duck = await DuckDBInstance.create(":memory:");
  const con = await duck.connect();
  const rows = Math.round((MB * 1024 * 1024) / ROW_BYTES);
  await con.run(`COPY (
    SELECT range AS id, (hash(range) % 5000)::BIGINT AS customer, round(((hash(range * 7) % 100000) / 100.0), 2) AS amount,
           ['open', 'paid', 'shipped'][1 + (hash(range * 3) % 3)::INT] AS status, TIMESTAMP '2025-01-01' + INTERVAL (range % 86400) SECOND AS ts
    FROM range(${rows})) TO '${csv}' (HEADER)`);
  con.closeSync();
  duck.closeSync();
}
const size = statSync(csv).size;

mkdirSync(join(root, "pipelines"), { recursive: true });
writeFileSync(
  join(root, "pipelines", "big.ts"),
  `import { z } from "zod";
import { checks, duckdbTable, icebergTable, pipeline, rawFiles } from "floe";
const raw = rawFiles("raw_big", { storage: { type: "local", root: "landing" }, glob: "big/orders-${MB}mb.csv", format: "csv" });
const orders = duckdbTable("big_orders", { deps: [raw], sql: ({ ref }) => \`select id, customer, amount, status, ts from \${ref(raw)}\`,
  columns: z.object({ id: z.number().int(), customer: z.number().int(), amount: z.number(), status: z.enum(["open", "paid", "shipped"]), ts: z.date() }),
  checks: [checks.notNull("customer"), checks.range("amount", { min: 0 })] });
const lake = icebergTable("lake.big", { from: orders });
export default pipeline("big", { assets: [raw, orders, lake] });
`,
);
rmSync(join(root, ".floe"), { recursive: true, force: true });

/** Max RSS in MB and wall seconds of a command, from GNU time. */
function measure(args: string[], env: NodeJS.ProcessEnv = process.env): { mb: number; s: number } {
  const started = Date.now();
  const r = spawnSync("/usr/bin/time", ["-f", "MAXRSS %M", ...args], { cwd: root, env, encoding: "utf8" });
  const m = /MAXRSS (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${args.join(" ")} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return { mb: Number(m[1]) / 1024, s: (Date.now() - started) / 1000 };
}

const baselineScript = `import { DuckDBInstance } from "@duckdb/node-api";
const d = await DuckDBInstance.create(":memory:"); const c = await d.connect();
await c.run("COPY (SELECT * FROM read_csv('${csv}')) TO '${join(root, "baseline.parquet")}' (FORMAT parquet)");`;
writeFileSync(join(root, "baseline.mjs"), baselineScript);
const base = measure([process.execPath, join(root, "baseline.mjs")]);
const db = await benchDatabase();
let onPostgres: { mb: number; s: number };
try {
  onPostgres = measure([process.execPath, join(repo, "bin", "floe.js"), "materialize", "--select", "+lake.big"], { ...process.env, FLOE_DATABASE_URL: db.url });
} finally {
  await db.drop();
}
rmSync(join(root, ".floe"), { recursive: true, force: true });
// create the embedded store first: PGlite's one-time initdb is not ingestion (it peaks near 0.9 GB)
spawnSync(process.execPath, [join(repo, "bin", "floe.js"), "status"], { cwd: root, env: { ...process.env, FLOE_DATABASE_URL: "" } });
const embedded = measure([process.execPath, join(repo, "bin", "floe.js"), "materialize", "--select", "+lake.big"], { ...process.env, FLOE_DATABASE_URL: "" });
const verdict = (mb: number): string => `(target < 1024 MB: ${mb < 1024 ? "met" : "MISSED"})`;
console.log(`bench/rss: one ${(size / 1024 ** 3).toFixed(2)} GB CSV, DuckDB memory limit ${process.env.FLOE_DUCKDB_MEMORY_LIMIT ?? "512MB (default)"}`);
console.log(`  baseline: bare DuckDB COPY read_csv → Parquet (default memory limit)   peak RSS ${base.mb.toFixed(0)} MB   ${base.s.toFixed(1)} s`);
console.log(`  floe materialize rawFiles → duckdbTable → icebergTable, state on PostgreSQL   peak RSS ${onPostgres.mb.toFixed(0)} MB   ${onPostgres.s.toFixed(1)} s   ${verdict(onPostgres.mb)}`);
console.log(`  the same on the embedded PGlite store   peak RSS ${embedded.mb.toFixed(0)} MB   ${embedded.s.toFixed(1)} s   ${verdict(embedded.mb)}`);
