// A separate process committing N appends to one table through the SQL catalog on PostgreSQL:
// `node --import tsx test/iceberg/append-process.ts <databaseUrl> <warehouse> <writer> <count>`.
import { DuckDBInstance } from "@duckdb/node-api";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { appendRows } from "../../src/iceberg/table-writer.js";
import { localStorage } from "../../src/storage/local-storage.js";

const [url, warehouse, writer, count] = process.argv.slice(2);
const db = new Kysely<IcebergCatalogTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) });
const catalog = new SqlCatalog(db, "floe");
const storage = localStorage({ root: warehouse! });
const duck = await DuckDBInstance.create(":memory:");
const connection = await duck.connect();
let retries = 0;
for (let i = 0; i < Number(count); i++) {
  const id = Number(writer) * 1_000_000 + i * 100;
  const r = await appendRows({
    connection,
    source: { sql: `SELECT (${id} + range)::BIGINT AS id, 'w${writer}' AS writer FROM range(100)` },
    table: { namespace: ["race"], name: "appends" },
    catalog,
    storage,
    summary: { "floe.run-id": `w${writer}-${i}` },
    retryWaitMs: 5,
    maxCommitRetries: 50,
  });
  retries += r.commitRetries;
}
connection.closeSync();
duck.closeSync();
await db.destroy();
process.stdout.write(JSON.stringify({ retries }));
