// A separate process appending upstream batches to one table through the SQL catalog on PostgreSQL,
// one appendBatches call per group:
// `node --import tsx test/iceberg/batch-append-process.ts <databaseUrl> <warehouse> <batchDir> <groups as JSON>`.
// Each batch `<id>` is the Parquet file `<batchDir>/<id>.parquet`. Prints, per call, what it committed and found.
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { appendBatches } from "../../src/iceberg/table-writer.js";
import { localStorage } from "../../src/storage/local-storage.js";

const [url, warehouse, batchDir, groupsJson] = process.argv.slice(2);
const groups = JSON.parse(groupsJson!) as string[][];
const db = new Kysely<IcebergCatalogTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) });
const catalog = new SqlCatalog(db, "floe");
const storage = localStorage({ root: warehouse! });
const duck = await DuckDBInstance.create(":memory:", { threads: "1" });
const connection = await duck.connect();
const calls: Array<{ committed: string[]; found: string[]; retries: number }> = [];
for (const group of groups) {
  const r = await appendBatches({
    connection,
    table: { namespace: ["race"], name: "batches" },
    catalog,
    storage,
    partitionBy: [{ column: "ts", transform: "day" }],
    summary: { "floe.run-id": `pid-${process.pid}` },
    batches: group.map((id) => ({ id, files: [join(batchDir!, `${id}.parquet`)] })),
    retryWaitMs: 5,
    maxCommitRetries: 50,
  });
  calls.push({ committed: r.committed, found: r.found, retries: r.commitRetries });
}
connection.closeSync();
duck.closeSync();
await db.destroy();
process.stdout.write(JSON.stringify(calls));
