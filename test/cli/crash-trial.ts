import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { expect } from "vitest";
import { icebergRead } from "icebird";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import "../iceberg/helpers.js"; // file:// fetch for icebird

export const FILES = 40;
export const ROWS = 50;

/** A project ingesting `in/<day>/*.csv` into a validated table with a uniqueness check, then into Iceberg. */
export function crashProject() {
  return tempProject({
    "pipelines/ingest.ts": `import { z } from "zod";
import { checks, duckdbTable, icebergTable, partitions, pipeline, rawFiles } from "floe";
const daily = partitions.daily({ start: "2025-01-01" });
const raw = rawFiles("raw", { storage: { type: "local", root: "landing" }, glob: "in/{partition}/*.csv", format: "csv", partitions: daily, claimTimeoutMs: 1000, batchSize: 5, parallelism: 2 });
const orders = duckdbTable("orders", { deps: [raw], partitions: daily, sql: ({ ref }) => \`select id from \${ref(raw)}\`,
  columns: z.object({ id: z.number().int() }), checks: [checks.unique("id")] });
const lake = icebergTable("lake.orders", { from: orders });
export default pipeline("ingest", { assets: [raw, orders, lake] });
`,
  });
}

/**
 * One trial: land files for `day`, kill -9 a materialization after `killAfterMs`, start again,
 * and check that every source row is in the table once and no file is left PROCESSING.
 */
export async function crashTrial(dir: string, databaseUrl: string, day: string, killAfterMs: number, when: "start" | "claim" | "commit" = "start"): Promise<{ atKill: Record<string, number>; committedAtKill?: boolean }> {
  for (let f = 0; f < FILES; f++) {
    const lines = ["id"];
    for (let r = 0; r < ROWS; r++) lines.push(String(Number(day.replaceAll("-", "")) * 10_000 + f * ROWS + r));
    mkdirSync(join(dir, "landing", "in", day), { recursive: true });
    writeFileSync(join(dir, "landing", "in", day, `f${String(f).padStart(3, "0")}.csv`), `${lines.join("\n")}\n`);
  }
  const env = { ...process.env, FLOE_DATABASE_URL: databaseUrl, FLOE_HEARTBEAT_MS: "200" };
  const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "materialize", "--select", "+lake.orders", "--partition", day], { cwd: dir, env, stdio: "ignore" });
  let gone = false;
  const exited = new Promise((r) => child.once("exit", (c) => ((gone = true), r(c))));
  if (when === "claim") {
    // wait until files are claimed, then kill within `killAfterMs`
    for (let i = 0; i < 400 && !gone && !((await ledgerState(databaseUrl, day)).PROCESSING ?? 0); i++) await new Promise((r) => setTimeout(r, 10));
  }
  let committedAtKill: boolean | undefined;
  if (when === "commit") {
    // wait for this day's Iceberg commit to land in the catalog, then kill at once: the step's
    // materialization is not recorded yet (or only just)
    const before = await catalogPointer(databaseUrl);
    for (let i = 0; i < 2000 && !gone && (await catalogPointer(databaseUrl)) === before; i++) await new Promise((r) => setTimeout(r, 2));
    committedAtKill = !gone;
  }
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill("SIGKILL");
  await exited;
  const atKill = await ledgerState(databaseUrl, day);
  await new Promise((r) => setTimeout(r, 1_200)); // past the claim timeout and three heartbeats
  const again = await floe(["materialize", "--select", "+lake.orders", "--partition", day, "--json"], { cwd: dir, env: { FLOE_DATABASE_URL: databaseUrl, FLOE_HEARTBEAT_MS: "200" } });
  expect(again.code, again.stderr).toBe(0);
  const out = JSON.parse(again.stdout) as { steps: Array<{ asset: string; metadata: { rows?: number; checks?: Array<{ passed: boolean }> } }> };
  const orders = out.steps.find((s) => s.asset === "orders")!;
  expect(orders.metadata.rows, `kill after ${killAfterMs} ms`).toBe(FILES * ROWS);
  expect(orders.metadata.checks?.every((c) => c.passed)).toBe(true); // no duplicate ids
  // Iceberg, read by an independent reader: this day's rows once each, and every earlier day's still once.
  const lake = (await icebergRead({ tableUrl: pathToFileURL(join(dir, ".floe", "warehouse", "iceberg", "lake", "orders")).href })) as Array<{ id: bigint | number }>;
  const ids = lake.map((r) => Number(r.id));
  expect(new Set(ids).size, `duplicate ids in Iceberg after a kill at ${killAfterMs} ms`).toBe(ids.length);
  const prefix = Number(day.replaceAll("-", "")) * 10_000;
  expect(ids.filter((id) => id >= prefix && id < prefix + 10_000).length, `kill after ${killAfterMs} ms`).toBe(FILES * ROWS);
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
  return { atKill, ...(committedAtKill !== undefined ? { committedAtKill } : {}) };
}

/** The catalog's metadata location of lake.orders, or null. */
async function catalogPointer(databaseUrl: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const exists = await client.query(`select to_regclass('iceberg_tables') as t`);
    if (!exists.rows[0]?.t) return null;
    const { rows } = await client.query<{ m: string }>(`select metadata_location as m from iceberg_tables where table_namespace = 'lake' and table_name = 'orders'`);
    return rows[0]?.m ?? null;
  } finally {
    await client.end();
  }
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
