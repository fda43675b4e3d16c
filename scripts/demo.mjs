// npm run demo: writes a small deterministic landing folder (data/landing), then materializes the
// example pipelines on embedded defaults: raw files → validated DuckDB tables → Iceberg → a chained summary.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeLanding } from "./landing.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
writeLanding(`${root}/data/landing`);
const floe = (...args) => {
  console.log(`\n$ floe ${args.join(" ")}`);
  const r = spawnSync(process.execPath, [`${root}/bin/floe.js`, ...args, "--project", root], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

floe("lineage");
floe("materialize", "--select", "*", "--from", "2025-01-01", "--to", "2025-01-07");
floe("status");
floe("materialize", "--select", "*", "--from", "2025-01-01", "--to", "2025-01-07", "--stale");
floe("runs", "--limit", "5");
const runs = JSON.parse(spawnSync(process.execPath, [`${root}/bin/floe.js`, "runs", "--json", "--project", root], { encoding: "utf8" }).stdout);
const first = runs.at(-1);
if (first) floe("run", first.runId.slice(0, 8)); // its events show the quarantined rows

// Where the Iceberg table is, for readers outside floe.
const table = join(root, ".floe", "warehouse", "iceberg", "lake", "orders");
if (existsSync(join(table, "metadata", "version-hint.text"))) {
  const version = readFileSync(join(table, "metadata", "version-hint.text"), "utf8").trim();
  console.log(`\nlake.orders is an Iceberg v2 table in ${table} (metadata/v${version}.metadata.json).`);
  console.log("Spark, Trino or PyIceberg open it through the SQL catalog in the state store (table iceberg_tables), or by its path.");
}
