import type { DuckDBConnection } from "@duckdb/node-api";

/** Operators that only read and pass rows on: a query made of them is cheap to run again. */
const STREAMING = new Set(["UNGROUPED_AGGREGATE", "PROJECTION", "FILTER", "UNION", "READ_PARQUET", "PARQUET_SCAN", "TABLE_SCAN", "SEQ_SCAN", "READ_CSV", "READ_JSON", "COLUMN_DATA_SCAN", "DUMMY_SCAN", "RANGE", "EMPTY_RESULT"]);
/** What makes the rows differ from one run to the next: volatile functions, a sample inside a scan. */
const VOLATILE = /\b(random|uuid|gen_random_uuid|nextval|setseed)\s*\(|"Sample Method"/i;

/**
 * Whether counting the rows of `sql` only scans and filters (no join, aggregate, window, sort or
 * sample) and gives the same count every time (no volatile function): then running it again for
 * its row count costs a scan, not the query.
 *
 * @example
 * await countIsScan(con, "select id from read_parquet('a.parquet') where id > 0"); // true
 * await countIsScan(con, "select id, count(*) from read_parquet('a.parquet') group by id"); // false
 */
export async function countIsScan(con: DuckDBConnection, sql: string): Promise<boolean> {
  const reader = await con.runAndReadAll(`EXPLAIN (FORMAT json) SELECT count(*) FROM (${sql})`);
  const plan = String(reader.getRowObjectsJS().find((r) => r.explain_key === "physical_plan")?.explain_value ?? "");
  if (plan === "" || VOLATILE.test(plan)) return false;
  const operators = [...plan.matchAll(/"name":\s*"([A-Z_]+)"/g)].map((m) => m[1]!);
  return operators.length > 0 && operators.every((o) => STREAMING.has(o));
}
