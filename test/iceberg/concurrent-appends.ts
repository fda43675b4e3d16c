import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { icebergRead } from "icebird";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { expect } from "vitest";
import { icebergCatalogMigration, SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { loadTable } from "../../src/iceberg/table-writer.js";
import { localStorage } from "../../src/storage/local-storage.js";
import { repoRoot } from "../helpers/project.js";
import "./helpers.js"; // file:// fetch for icebird

/**
 * Two processes commit `each` appends of 100 rows to one table at once through the SQL catalog
 * on PostgreSQL: every snapshot is kept, every row read back once by icebird.
 */
export async function concurrentAppends(databaseUrl: string, each: number): Promise<{ retries: number }> {
  const warehouse = mkdtempSync(join(tmpdir(), "floe-appends-"));
  const db = new Kysely<IcebergCatalogTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl, max: 2 }) }) });
  try {
    await icebergCatalogMigration.up(db as unknown as Kysely<unknown>);
    const script = join(repoRoot, "test", "iceberg", "append-process.ts");
    const outputs = await Promise.all(
      [1, 2].map(
        (w) =>
          new Promise<string>((resolve, reject) => {
            const child = spawn(process.execPath, ["--import", "tsx", script, databaseUrl, warehouse, String(w), String(each)], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
            let out = "";
            let err = "";
            child.stdout.on("data", (d: Buffer) => (out += d.toString()));
            child.stderr.on("data", (d: Buffer) => (err += d.toString()));
            child.on("error", reject);
            child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`writer ${w} exited ${code}: ${err}`))));
          }),
      ),
    );
    const retries = outputs.reduce((a, o) => a + (JSON.parse(o) as { retries: number }).retries, 0);
    const storage = localStorage({ root: warehouse });
    const t = await loadTable({ catalog: new SqlCatalog(db, "floe"), storage, table: { namespace: ["race"], name: "appends" } });
    expect(t!.metadata.snapshots).toHaveLength(2 * each);
    // a single line of history: each snapshot's parent is the one before, sequence numbers 1..n
    const snaps = t!.metadata.snapshots;
    snaps.forEach((s, i) => {
      expect(s["sequence-number"]).toBe(BigInt(i + 1));
      if (i > 0) expect(s["parent-snapshot-id"]).toBe(snaps[i - 1]!["snapshot-id"]);
    });
    expect(snaps.at(-1)!.summary["total-records"]).toBe(String(2 * each * 100));
    const rows = await icebergRead({ tableUrl: storage.uriOf("race/appends") });
    const ids = rows.map((r) => Number(r.id));
    expect(ids).toHaveLength(2 * each * 100);
    expect(new Set(ids).size).toBe(ids.length);
    return { retries };
  } finally {
    await db.destroy();
    rmSync(warehouse, { recursive: true, force: true });
  }
}
