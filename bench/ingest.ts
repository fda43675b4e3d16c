// bench/ingest: 100 CSV files × 100,000 rows (generated deterministically by DuckDB, kept in
// bench/.tmp/ingest), ingested by floe: rawFiles → duckdbTable (zod contract, 3 checks) →
// icebergTable append, on a fresh PostgreSQL database. Baseline in the same run: bare DuckDB
// `COPY (SELECT * FROM read_csv([...])) TO 'x.parquet'` over the same files. Prints rows/s of
// both and the ratio (target ≥ 0.8× bare DuckDB).
// Run: npx tsx bench/ingest.ts [files] [rowsPerFile]
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DuckDBInstance } from "@duckdb/node-api";
import { z } from "zod";
import { pipeline } from "../src/assets/asset.js";
import { duckdbTable } from "../src/assets/duckdb-table.js";
import { icebergTable } from "../src/assets/iceberg-table.js";
import { rawFiles } from "../src/assets/raw-files.js";
import { AssetGraph } from "../src/dag/graph.js";
import { checks } from "../src/duckdb/checks.js";
import type { ProjectSettings } from "../src/project/config.js";
import { builtinResources } from "../src/project/plugins.js";
import { resourceMigrations, resourcePool } from "../src/project/resources.js";
import { materialize } from "../src/runner/launch.js";
import { StateStore } from "../src/state/index.js";
import { benchDatabase, timed } from "./lib.js";

const FILES = Number(process.argv[2] ?? 100);
const ROWS = Number(process.argv[3] ?? 100_000);
const root = join(fileURLToPath(new URL(".", import.meta.url)), ".tmp", "ingest");
const landing = join(root, `landing-${FILES}x${ROWS}`);

/** CSV files with an id, a customer, an amount, a status and a timestamp, the same on every run. */
async function generate(): Promise<void> {
  if (existsSync(join(landing, "done"))) return;
  mkdirSync(join(landing, "orders"), { recursive: true });
  const duck = await DuckDBInstance.create(":memory:");
  const con = await duck.connect();
  for (let f = 0; f < FILES; f++) {
    const from = f * ROWS;
    await con.run(`COPY (
      SELECT range AS id, (hash(range) % 5000)::BIGINT AS customer, round(((hash(range * 7) % 100000) / 100.0), 2) AS amount,
             ['open', 'paid', 'shipped'][1 + (hash(range * 3) % 3)::INT] AS status,
             TIMESTAMP '2025-01-01' + INTERVAL (range % 86400) SECOND AS ts
      FROM range(${from}, ${from + ROWS})) TO '${join(landing, "orders", `f${String(f).padStart(4, "0")}.csv`)}' (HEADER)`);
  }
  con.closeSync();
  duck.closeSync();
  writeFileSync(join(landing, "done"), "");
}

await generate();
const total = FILES * ROWS;

const ROUNDS = Number(process.env.ROUNDS ?? 3);

/** Baseline: one DuckDB COPY of all files to Parquet, same threads as floe's DuckDB, a fresh instance each round. */
async function baseline(): Promise<number> {
  const dir = join(root, "baseline");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const duck = await DuckDBInstance.create(":memory:", { threads: String(availableParallelism()) });
  const con = await duck.connect();
  try {
    const bare = await timed(async () => {
      const r = await con.runAndReadAll(`COPY (SELECT * FROM read_csv('${join(landing, "orders")}/*.csv')) TO '${join(dir, "x.parquet")}' (FORMAT parquet, RETURN_STATS)`);
      return Number(r.getRowObjectsJS()[0]?.count ?? 0);
    });
    if (bare.value !== total) throw new Error(`baseline copied ${bare.value} rows, expected ${total}`);
    return bare.ms;
  } finally {
    con.closeSync();
    duck.closeSync();
  }
}

/** floe: the three asset kinds, in-process, state on a fresh PostgreSQL database and a fresh home each round. */
async function floe(): Promise<{ ms: number; steps: string; adopted: number }> {
  const home = join(root, "home");
  rmSync(home, { recursive: true, force: true });
  const settings: ProjectSettings = {
    dir: root, home, databaseUrl: undefined, warehouse: join(home, "warehouse"), concurrency: undefined,
    eventRetentionDays: 30, shutdownGraceMs: 30_000, heartbeatMs: 5_000, notifications: [], pools: {}, maxConcurrentRuns: undefined, warehouseS3: undefined,
  };
  const raw = rawFiles("raw_orders", { storage: { type: "local", root: landing }, glob: "orders/*.csv", format: "csv", parallelism: 4 });
  const orders = duckdbTable("orders", {
    deps: [raw],
    sql: ({ ref }) => `select id, customer, amount, status, ts from ${ref(raw)}`,
    columns: z.object({ id: z.number().int(), customer: z.number().int(), amount: z.number(), status: z.enum(["open", "paid", "shipped"]), ts: z.date() }),
    checks: [checks.unique("id"), checks.notNull("customer"), checks.range("amount", { min: 0 })],
  });
  const lake = icebergTable("lake.orders", { from: orders });
  const graph = AssetGraph.build([{ module: "bench.ts", pipeline: pipeline("bench", { assets: [raw, orders, lake] }) }]);
  const db = await benchDatabase();
  const store = await StateStore.open({ url: db.url, home, extraMigrations: resourceMigrations(builtinResources) });
  const pool = resourcePool({ settings, store }, builtinResources);
  try {
    await pool.get("duckdb"); // DuckDB's start-up is not ingestion
    const run = await timed(() => materialize(store, graph, { assets: new Set(graph.keys()), selection: "*" }, { resources: pool }));
    const outcome = run.value;
    if (outcome.status !== "success") throw new Error(`floe run failed: ${JSON.stringify(outcome.steps.map((s) => [s.asset, s.status, s.error]))}`);
    const lakeStep = outcome.steps.find((s) => s.asset === "lake.orders");
    const icebergRows = Number(lakeStep?.metadata.addedRecords ?? -1);
    if (icebergRows !== total) throw new Error(`Iceberg got ${icebergRows} rows, expected ${total}`);
    const steps = outcome.steps.map((s) => `${s.asset} ${((s.durationMs ?? 0) / 1000).toFixed(1)} s`).join(", ");
    return { ms: run.ms, steps, adopted: Number(lakeStep?.metadata.icebergAdoptedFiles ?? 0) };
  } finally {
    await pool.close();
    await store.close();
    await db.drop();
  }
}

// Alternating rounds, medians: the machine's speed drifts by tens of percent from minute to minute.
const bares: number[] = [];
const floes: Array<{ ms: number; steps: string; adopted: number }> = [];
for (let r = 0; r < ROUNDS; r++) {
  bares.push(await baseline());
  floes.push(await floe());
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (ms: number): string => `${Math.round(total / (ms / 1000)).toLocaleString("en-US")} rows/s`;
const secs = (xs: number[]): string => xs.map((ms) => (ms / 1000).toFixed(1)).join(" / ");
const bareMs = median(bares);
const floeMs = median(floes.map((f) => f.ms));
console.log(`bench/ingest: ${FILES} CSV files × ${ROWS.toLocaleString("en-US")} rows = ${total.toLocaleString("en-US")} rows, ${availableParallelism()} cores, ${ROUNDS} alternating rounds (medians)`);
console.log(`  baseline: DuckDB COPY read_csv → Parquet   ${(bareMs / 1000).toFixed(1)} s   ${rate(bareMs)}   (rounds: ${secs(bares)} s)`);
console.log(`  floe: rawFiles → duckdbTable (contract, 3 checks) → icebergTable append   ${(floeMs / 1000).toFixed(1)} s   ${rate(floeMs)}   (rounds: ${secs(floes.map((f) => f.ms))} s)`);
for (const f of floes) console.log(`    ${f.steps}; Iceberg data files taken as written: ${f.adopted}`);
const ratio = bareMs / floeMs;
console.log(`  ratio: floe runs at ${ratio.toFixed(2)}× bare DuckDB (target ≥ 0.8×: ${ratio >= 0.8 ? "met" : "MISSED"})`);
