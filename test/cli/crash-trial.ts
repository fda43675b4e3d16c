import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { expect } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";

export const FILES = 40;
export const ROWS = 50;

/** A project ingesting `in/<day>/*.csv` into a validated table with a uniqueness check. */
export function crashProject() {
  return tempProject({
    "pipelines/ingest.ts": `import { z } from "zod";
import { checks, duckdbTable, partitions, pipeline, rawFiles } from "floe";
const daily = partitions.daily({ start: "2025-01-01" });
const raw = rawFiles("raw", { storage: { type: "local", root: "landing" }, glob: "in/{partition}/*.csv", format: "csv", partitions: daily, claimTimeoutMs: 1000, batchSize: 5, parallelism: 2 });
const orders = duckdbTable("orders", { deps: [raw], partitions: daily, sql: ({ ref }) => \`select id from \${ref(raw)}\`,
  columns: z.object({ id: z.number().int() }), checks: [checks.unique("id")] });
export default pipeline("ingest", { assets: [raw, orders] });
`,
  });
}

/**
 * One trial: land files for `day`, kill -9 a materialization after `killAfterMs`, start again,
 * and check that every source row is in the table once and no file is left PROCESSING.
 */
export async function crashTrial(dir: string, databaseUrl: string, day: string, killAfterMs: number, whenProcessing = false): Promise<{ atKill: Record<string, number> }> {
  for (let f = 0; f < FILES; f++) {
    const lines = ["id"];
    for (let r = 0; r < ROWS; r++) lines.push(String(Number(day.replaceAll("-", "")) * 10_000 + f * ROWS + r));
    mkdirSync(join(dir, "landing", "in", day), { recursive: true });
    writeFileSync(join(dir, "landing", "in", day, `f${String(f).padStart(3, "0")}.csv`), `${lines.join("\n")}\n`);
  }
  const env = { ...process.env, FLOE_DATABASE_URL: databaseUrl, FLOE_HEARTBEAT_MS: "200" };
  const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "materialize", "--select", "+orders", "--partition", day], { cwd: dir, env, stdio: "ignore" });
  let gone = false;
  const exited = new Promise((r) => child.once("exit", (c) => ((gone = true), r(c))));
  if (whenProcessing) {
    // wait until files are claimed, then kill within `killAfterMs`
    for (let i = 0; i < 400 && !gone && !((await ledgerState(databaseUrl, day)).PROCESSING ?? 0); i++) await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill("SIGKILL");
  await exited;
  const atKill = await ledgerState(databaseUrl, day);
  await new Promise((r) => setTimeout(r, 1_200)); // past the claim timeout and three heartbeats
  const again = await floe(["materialize", "--select", "+orders", "--partition", day, "--json"], { cwd: dir, env: { FLOE_DATABASE_URL: databaseUrl, FLOE_HEARTBEAT_MS: "200" } });
  expect(again.code, again.stderr).toBe(0);
  const out = JSON.parse(again.stdout) as { steps: Array<{ asset: string; metadata: { rows?: number; checks?: Array<{ passed: boolean }> } }> };
  const orders = out.steps.find((s) => s.asset === "orders")!;
  expect(orders.metadata.rows, `kill after ${killAfterMs} ms`).toBe(FILES * ROWS);
  expect(orders.metadata.checks?.every((c) => c.passed)).toBe(true); // no duplicate ids
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ status: string; n: number }>(`select status, count(*)::int as n from processed_files where partition = $1 group by status`, [day]);
    expect(Object.fromEntries(rows.map((r) => [r.status, r.n])), `kill after ${killAfterMs} ms`).toEqual({ SUCCESS: FILES });
    const stuck = await client.query(`select id from runs where status = 'running'`);
    expect(stuck.rowCount).toBe(0);
  } finally {
    await client.end();
  }
  return { atKill };
}

/** Files of a day by ledger status. */
async function ledgerState(databaseUrl: string, day: string): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const exists = await client.query(`select to_regclass('processed_files') as t`);
    if (!exists.rows[0]?.t) return {};
    const { rows } = await client.query<{ status: string; n: number }>(`select status, count(*)::int as n from processed_files where partition = $1 group by status`, [day]);
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  } finally {
    await client.end();
  }
}

/** A kill that left the ingestion part-way: files claimed or discovered but not all done. */
export function partWay(atKill: Record<string, number>): boolean {
  return (atKill.PROCESSING ?? 0) > 0 || (atKill.DISCOVERED ?? 0) > 0 || ((atKill.SUCCESS ?? 0) > 0 && (atKill.SUCCESS ?? 0) < FILES);
}
