// The `orders` pipeline: raw files landing in data/landing are validated into DuckDB tables,
// then appended to an Iceberg v2 table (lake.orders) that Spark, Trino or DuckDB can read.
// `npm run demo` writes the landing folder (scripts/landing.mjs) and materializes everything.
import { z } from "zod";
import { checks, duckdbTable, icebergTable, partitions, pipeline, rawFiles } from "floe";

export const daily = partitions.daily({ start: "2025-01-01", end: "2025-01-07" });
const landing = { type: "local", root: "data/landing" } as const;

export const rawOrders = rawFiles("raw_orders", {
  storage: landing,
  glob: "orders/{partition}/*.csv",
  format: "csv",
  partitions: daily,
  tags: ["landing"],
});

export const rawCustomers = rawFiles("raw_customers", {
  storage: landing,
  glob: "customers/*.ndjson",
  format: "ndjson",
  tags: ["landing", "pii"],
});

export const customers = duckdbTable("customers", {
  deps: [rawCustomers],
  sql: ({ ref }) => `select id, name, country from ${ref(rawCustomers)}`,
  columns: z.object({ id: z.number().int(), name: z.string(), country: z.string() }),
  checks: [checks.unique("id"), checks.notNull("name")],
  tags: ["pii"],
});

export const orders = duckdbTable("orders", {
  deps: [rawOrders],
  partitions: daily,
  sql: ({ ref }) => `select * from ${ref(rawOrders)}`,
  columns: z.object({ id: z.number().int(), customer_id: z.number().int(), amount: z.number(), ts: z.date() }),
  checks: [checks.notNull("id"), checks.unique("id"), checks.range("amount", { min: 0 }), checks.rowCount({ min: 1 })],
  onInvalidRows: "quarantine",
});

// Every validated row lands in Iceberg once: a rematerialized day replaces that day's rows.
export const lakeOrders = icebergTable("lake.orders", {
  from: orders,
  partitionBy: [{ column: "ts", transform: "day" }],
  mode: "append",
});

export default pipeline("orders", { assets: [rawOrders, rawCustomers, customers, orders, lakeOrders] });
