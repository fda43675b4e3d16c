import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { icebergRead } from "icebird";
import pg from "pg";
import { expect } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import "../iceberg/helpers.js"; // file:// fetch for icebird

const ROWS = 20;

/**
 * `workers` real `floe worker` processes drain `workers` queued ingestion runs over `files` CSV
 * files on PostgreSQL (rawFiles → icebergTable append): each file is ingested by exactly one run,
 * and the Iceberg table holds every source row once.
 */
export async function ingestWithWorkers(databaseUrl: string, files: number, workers: number): Promise<{ filesByRun: number[]; commitRetries: number }> {
  const project = tempProject({
    "pipelines/ingest.ts": `import { icebergTable, pipeline, rawFiles } from "floe";
const raw = rawFiles("raw_events", { storage: { type: "local", root: "landing" }, glob: "in/*.csv", format: "csv", batchSize: 25, parallelism: 2 });
const lake = icebergTable("lake.events", { from: raw });
export default pipeline("ingest", { assets: [raw, lake] });
`,
  });
  try {
    mkdirSync(join(project.dir, "landing", "in"), { recursive: true });
    for (let f = 0; f < files; f++) {
      const lines = ["id,file"];
      for (let r = 0; r < ROWS; r++) lines.push(`${f * ROWS + r},f${f}`);
      writeFileSync(join(project.dir, "landing", "in", `f${String(f).padStart(5, "0")}.csv`), `${lines.join("\n")}\n`);
    }
    const env = { FLOE_DATABASE_URL: databaseUrl, FLOE_HEARTBEAT_MS: "500" };
    for (let i = 0; i < workers; i++) {
      const q = await floe(["materialize", "--select", "+lake.events", "--queue", "--json"], { cwd: project.dir, env });
      expect(q.code, q.stderr).toBe(0);
    }
    const done = await Promise.all(Array.from({ length: workers }, () => floe(["worker", "--until-empty"], { cwd: project.dir, env })));
    for (const w of done) expect(w.code, w.stderr).toBe(0);
    // Runs that overlapped may each have listed the partition's batches before the others'
    // settled: the next run lists every settled batch from the ledger, and the table appends
    // whatever is still pending.
    const last = await floe(["materialize", "--select", "+lake.events", "--json"], { cwd: project.dir, env });
    expect(last.code, last.stderr).toBe(0);

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    let filesByRun: number[];
    let commitRetries = 0;
    try {
      const ledger = await client.query<{ status: string; n: number; claims: number }>(
        `select status, count(*)::int as n, sum(attempts)::int as claims from processed_files group by status`,
      );
      expect(ledger.rows).toEqual([{ status: "SUCCESS", n: files, claims: files }]);
      const steps = await client.query<{ asset: string; metadata: { files?: number; rows?: number; icebergCommitRetries?: number } }>(
        `select asset, metadata from run_steps where status = 'success'`,
      );
      const raw = steps.rows.filter((s) => s.asset === "raw_events");
      filesByRun = raw.map((s) => s.metadata.files ?? 0);
      expect(filesByRun.reduce((a, b) => a + b, 0), "files ingested over all runs").toBe(files);
      expect(raw.reduce((a, s) => a + (s.metadata.rows ?? 0), 0)).toBe(files * ROWS);
      commitRetries = steps.rows.reduce((a, s) => a + (s.metadata.icebergCommitRetries ?? 0), 0);
    } finally {
      await client.end();
    }
    const rows = (await icebergRead({ tableUrl: pathToFileURL(join(project.dir, ".floe", "warehouse", "iceberg", "lake", "events")).href })) as Array<{ id: string }>;
    const ids = rows.map((r) => Number(r.id));
    expect(ids).toHaveLength(files * ROWS);
    expect(new Set(ids).size).toBe(files * ROWS);
    return { filesByRun, commitRetries };
  } finally {
    project.remove();
  }
}
