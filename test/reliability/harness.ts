// Shared trial code for the reliability suite of issue 20 ("Exactly once, for real"): real `floe`
// processes on a fresh PostgreSQL database each, a temp project whose landing folder is modelled
// here (which ids each file holds), and checks read back with icebird (through the catalog's
// pointer) and from the state store. Used small by test/reliability/reliability.test.ts and at
// full scale by test/soak/reliability.soak.test.ts.
//
// Every trial runs floe with default settings: no claimTimeoutMs, no maxAttempts, no
// FLOE_HEARTBEAT_MS (every FLOE_* variable of the test process is removed from the children).
//
// The rule every trial enforces: a floe command that exits 0 has landed, in the Iceberg table,
// every row of the files of the partitions it was asked to land (as they were when it started),
// and no id is ever in the table twice.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { DuckDBInstance } from "@duckdb/node-api";
import { icebergRead } from "icebird";
import pg from "pg";
import { rng } from "../../bench/lib.js";
import { baseUrl, testDatabase } from "../helpers/pg.js";
import { repoRoot, tempProject } from "../helpers/project.js";
import "../iceberg/helpers.js"; // file:// fetch for icebird

export { rng };

/** Rows per landed file unless a trial says otherwise. */
export const ROWS = 50;
/** The asset selection every trial materializes. */
export const SELECT = "+lake.orders";

export type Format = "csv" | "ndjson" | "json" | "parquet";

/**
 * Resolves after `ms`.
 *
 * @example
 * await sleep(100);
 */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A project like test/cli/crash-trial.ts's crashProject, with default rawFiles options:
 * `in/{partition}/*.<ext>` daily → duckdbTable `orders` with `checks.unique("id")` → Iceberg
 * `lake.orders` (append).
 *
 * @example
 * const project = reliabilityProject("csv"); // … project.remove()
 */
export function reliabilityProject(format: Format = "csv"): { dir: string; remove(): void } {
  return tempProject({
    "pipelines/ingest.ts": `import { z } from "zod";
import { checks, duckdbTable, icebergTable, partitions, pipeline, rawFiles } from "floe";
const daily = partitions.daily({ start: "2025-01-01" });
const raw = rawFiles("raw", { storage: { type: "local", root: "landing" }, glob: "in/{partition}/*.${format}", format: "${format}", partitions: daily });
const orders = duckdbTable("orders", { deps: [raw], partitions: daily, sql: ({ ref }) => \`select id from \${ref(raw)}\`,
  columns: z.object({ id: z.number().int() }), checks: [checks.unique("id")] });
const lake = icebergTable("lake.orders", { from: orders, mode: "append" });
export default pipeline("ingest", { assets: [raw, orders, lake] });
`,
  });
}

// ─── the landing folder, modelled ─────────────────────────────────────────────────────────────

let duck: Promise<DuckDBInstance> | undefined;
/** One in-memory DuckDB for the test process (writes Parquet sources, reads staged tables). */
function duckdb(): Promise<DuckDBInstance> {
  duck ??= DuckDBInstance.create(":memory:", { threads: "1" });
  return duck;
}

/** The ids `[from, from + n)`. */
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

/**
 * The landing folder of a trial and what it should yield: each file's partition and the ids it
 * holds (none for a corrupt file until it is fixed). Ids are unique across the whole trial.
 *
 * @example
 * const landing = new Landing(project.dir, "csv");
 * await landing.add("2025-01-01", 40);
 * landing.ids(["2025-01-01"]).length; // 2000
 */
export class Landing {
  private readonly files = new Map<string, { partition: string; ids: number[] }>();
  private nextId = 1;

  constructor(readonly dir: string, readonly format: Format) {}

  /** The storage key of a file of a partition. */
  key(partition: string, name: string): string {
    return `in/${partition}/${name}`;
  }

  private path(key: string): string {
    return join(this.dir, "landing", ...key.split("/"));
  }

  /** Lands `count` new files of `rows` rows each in `partition`; returns their keys. */
  async add(partition: string, count: number, rows = ROWS): Promise<string[]> {
    const keys: string[] = [];
    for (let f = 0; f < count; f++) {
      const ids = range(this.nextId, rows);
      this.nextId += rows;
      const key = this.key(partition, `f${String(ids[0] ?? this.nextId).padStart(8, "0")}.${this.format}`);
      await this.put(key, partition, await encode(this.format, ids), ids);
      keys.push(key);
    }
    return keys;
  }

  /** Writes a file with the given bytes, expected to yield `ids` (none for a corrupt file). */
  async put(key: string, partition: string, bytes: Buffer | string, ids: readonly number[]): Promise<void> {
    mkdirSync(dirname(this.path(key)), { recursive: true });
    writeFileSync(this.path(key), bytes);
    this.files.set(key, { partition, ids: [...ids] });
  }

  /** Rewrites a file with `rows` fresh rows (a fixed corrupt file, a changed file); returns its ids. */
  async rewrite(key: string, rows = ROWS): Promise<number[]> {
    const known = this.files.get(key);
    if (!known) throw new Error(`rewrite: ${key} was never landed`);
    const ids = range(this.nextId, rows);
    this.nextId += rows;
    rmSync(this.path(key), { recursive: true, force: true });
    await this.put(key, known.partition, await encode(this.format, ids), ids);
    return ids;
  }

  /** Encodes ids in this landing's format (for a file a trial writes itself). */
  encode(ids: readonly number[]): Promise<Buffer | string> {
    return encode(this.format, ids);
  }

  /** Fresh ids nobody holds yet. */
  allocate(n: number): number[] {
    const ids = range(this.nextId, n);
    this.nextId += n;
    return ids;
  }

  /** Removes a file from the landing (and from what the trial expects). */
  remove(key: string): void {
    rmSync(this.path(key), { recursive: true, force: true });
    this.files.delete(key);
  }

  /** The ids of a file. */
  idsOf(key: string): number[] {
    return [...(this.files.get(key)?.ids ?? [])];
  }

  /** The ids the files of `partitions` hold now (all partitions when omitted). */
  ids(partitions?: readonly string[]): number[] {
    const only = partitions === undefined ? undefined : new Set(partitions);
    const out: number[] = [];
    for (const f of this.files.values()) if (!only || only.has(f.partition)) out.push(...f.ids);
    return out;
  }

  /** Keys of the files landed (every partition, or one), sorted. */
  keys(partition?: string): string[] {
    return [...this.files.entries()].filter(([, f]) => partition === undefined || f.partition === partition).map(([k]) => k).sort();
  }

  /** Partitions with files, sorted. */
  partitions(): string[] {
    return [...new Set([...this.files.values()].map((f) => f.partition))].sort();
  }
}

/** A file holding `ids` (with a `note` text column) in `format`. */
async function encode(format: Format, ids: readonly number[]): Promise<Buffer | string> {
  switch (format) {
    case "csv":
      return `id,note\n${ids.map((i) => `${i},n${i}\n`).join("")}`;
    case "ndjson":
      return ids.map((i) => `${JSON.stringify({ id: i, note: `n${i}` })}\n`).join("");
    case "json":
      return JSON.stringify(ids.map((i) => ({ id: i, note: `n${i}` })));
    case "parquet": {
      const con = await (await duckdb()).connect();
      const tmp = join(repoRoot, "test", ".tmp", `src-${process.pid}-${ids[0] ?? 0}-${ids.length}.parquet`);
      try {
        mkdirSync(dirname(tmp), { recursive: true });
        const first = ids[0] ?? 0;
        // ids are contiguous: a range is enough
        await con.run(`COPY (SELECT i::BIGINT AS id, 'n' || i AS note FROM range(${first}, ${first + ids.length}) t(i)) TO '${tmp}' (FORMAT parquet)`);
        return readFileSync(tmp);
      } finally {
        con.closeSync();
        rmSync(tmp, { force: true });
      }
    }
  }
}

// ─── processes ────────────────────────────────────────────────────────────────────────────────

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A floe process started by a trial. */
export interface FloeProc {
  args: readonly string[];
  child: ChildProcess;
  pid: number;
  /** `<hostname>:<pid>`, as floe names its processes in `runs.worker` and `processed_files.claimed_by`. */
  owner: string;
  out(): string;
  err(): string;
  alive(): boolean;
  /** Resolves when the process exited (after the trial's landing check for an exit 0). */
  done: Promise<CliResult>;
}

/** The environment of a floe child: no FLOE_* of the test process (defaults), plus `extra`. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FLOE_") && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

// ─── a trial ──────────────────────────────────────────────────────────────────────────────────

type Row = Record<string, unknown>;

/**
 * One trial: a fresh database, a fresh project, its landing model, the floe processes it
 * started and a store connection for probes. Every floe command goes through `spawn`/`floe`,
 * which enforce the rule: exit 0 ⇒ the rows asked for are in the Iceberg table, none twice.
 *
 * @example
 * const suite = new Suite(); afterAll(() => suite.cleanup());
 * const t = await suite.trial();
 * await t.landing.add("2025-01-01", 40);
 * const r = await t.floe(["materialize", "--select", SELECT, "--partition", "2025-01-01"], ["2025-01-01"]);
 */
export class Trial {
  readonly procs: FloeProc[] = [];
  /** Every command and how it ended, for reports. */
  readonly history: Array<{ args: string; code: number | null; signal: NodeJS.Signals | null; ms: number }> = [];
  private client: pg.Client | undefined;

  constructor(
    readonly dir: string,
    readonly url: string,
    readonly landing: Landing,
    private readonly drop: () => Promise<void>,
    private readonly removeProject: () => void,
  ) {}

  /** The database's name (for outages). */
  get dbName(): string {
    return new URL(this.url).pathname.slice(1);
  }

  /**
   * Starts `floe <args>` in the project. `lands`: partitions whose rows the command is asked to
   * land, snapshotted now; if the process exits 0, `done` checks they are all in the table.
   */
  spawn(args: readonly string[], lands: readonly string[] | null = null, env: Record<string, string> = {}): FloeProc {
    const expected = lands === null ? [] : this.landing.ids(lands);
    const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), ...args], {
      cwd: this.dir,
      env: childEnv({ FLOE_DATABASE_URL: this.url, ...env }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let gone = false;
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const label = `floe ${args.join(" ")}`;
    const t0 = Date.now();
    const exited = new Promise<CliResult>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code, signal) => {
        gone = true;
        resolve({ code, signal, stdout: out, stderr: err });
      });
    });
    const done = exited.then(async (r) => {
      this.history.push({ args: args.join(" "), code: r.code, signal: r.signal, ms: Date.now() - t0 });
      if (r.code === 0 && lands !== null) await this.assertLanded(expected, `${label} exited 0`);
      return r;
    });
    const proc: FloeProc = { args, child, pid: child.pid ?? -1, owner: `${hostname()}:${child.pid ?? -1}`, out: () => out, err: () => err, alive: () => !gone, done };
    this.procs.push(proc);
    return proc;
  }

  /** Runs `floe <args>` to the end (see `spawn` for `lands`). */
  floe(args: readonly string[], lands: readonly string[] | null = null, env: Record<string, string> = {}): Promise<CliResult> {
    return this.spawn(args, lands, env).done;
  }

  /** `floe materialize --select +lake.orders` over `partitions` (one, or a --from/--to range of them), --json. */
  materialize(partitions: readonly string[], extra: readonly string[] = []): FloeProc {
    const sorted = [...partitions].sort();
    const which = sorted.length === 1 ? ["--partition", sorted[0]!] : ["--from", sorted[0]!, "--to", sorted[sorted.length - 1]!];
    return this.spawn(["materialize", "--select", SELECT, ...which, "--json", ...extra], extra.includes("--queue") ? null : sorted);
  }

  /** Sends `signal` to a process of this trial (by its pid) and waits for it to end. */
  async stop(p: FloeProc, signal: NodeJS.Signals): Promise<CliResult> {
    if (p.alive()) p.child.kill(signal);
    return p.done;
  }

  // ─── the store ───

  /** One query on the trial's database over a connection kept open (reopened after an outage). */
  async query<T extends Row = Row>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    if (!this.client) {
      const c = new pg.Client({ connectionString: this.url });
      c.on("error", () => undefined);
      await c.connect();
      this.client = c;
    }
    try {
      return (await this.client.query<T>(text, [...params])).rows;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "42P01") return []; // the schema is not migrated yet
      if (code === undefined || code.startsWith("08") || code.startsWith("57")) {
        const c = this.client;
        this.client = undefined;
        await c.end().catch(() => undefined);
      }
      throw e;
    }
  }

  /** Files of the ledger by status (of one partition, or all). */
  async ledger(partition?: string): Promise<Record<string, number>> {
    const rows = await this.query<{ status: string; n: number }>(
      `select status, count(*)::int as n from processed_files ${partition === undefined ? "" : "where partition = $1"} group by status order by status`,
      partition === undefined ? [] : [partition],
    );
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /** The catalog's metadata location of lake.orders, or null before its first commit. */
  async pointer(): Promise<string | null> {
    const rows = await this.query<{ m: string }>(`select metadata_location as m from iceberg_tables where table_namespace = 'lake' and table_name = 'orders'`);
    return rows[0]?.m ?? null;
  }

  private get tableDir(): string {
    return join(this.dir, ".floe", "warehouse", "iceberg", "lake", "orders");
  }

  /** The ids of lake.orders, read by icebird at the catalog's current metadata (what a catalog reader sees). */
  async lake(): Promise<number[]> {
    const pointer = await this.pointer();
    if (pointer === null) return [];
    return readIds(pathToFileURL(this.tableDir).href, basename(pointer));
  }

  /** The ids of lake.orders read by icebird through `metadata/version-hint.text` (what a path reader sees). */
  async lakeByHint(): Promise<number[]> {
    if (!existsSync(join(this.tableDir, "metadata", "version-hint.text"))) return [];
    return readIds(pathToFileURL(this.tableDir).href, undefined);
  }

  /** The ids of the duckdbTable `orders` in its latest materialization of `partition`, read by DuckDB. */
  async ordersTable(partition: string): Promise<number[]> {
    const rows = await this.query<{ location: string | null }>(`select metadata->>'location' as location from asset_partitions where asset = 'orders' and partition = $1`, [partition]);
    const location = rows[0]?.location;
    if (!location) return [];
    const con = await (await duckdb()).connect();
    try {
      const glob = join(this.dir, ".floe", "warehouse", ...location.split("/"), "*.parquet");
      const r = await con.runAndReadAll(`SELECT id::BIGINT AS id FROM read_parquet('${glob.replaceAll("'", "''")}')`);
      return r.getRowObjectsJS().map((x) => Number(x.id));
    } finally {
      con.closeSync();
    }
  }

  // ─── assertions (each failure says what the store held) ───

  /** Fails unless every id of `expected` is in lake.orders and no id is there twice. */
  async assertLanded(expected: readonly number[], what: string): Promise<void> {
    const ids = await this.lake();
    const have = new Set(ids);
    const missing = expected.filter((i) => !have.has(i));
    const dups = ids.length - have.size;
    if (missing.length > 0 || dups > 0) {
      throw new Error(`${what} but lake.orders misses ${missing.length} of the ${expected.length} rows it was asked to land` +
        ` and holds ${dups} duplicate row(s)\n${await this.diagnose()}`);
    }
  }

  /** Fails unless lake.orders holds exactly the rows of the landing, each once (through the catalog, and through the version hint). */
  async assertExact(what: string): Promise<void> {
    const ids = await this.lake();
    const want = this.landing.ids();
    const diff = compare(ids, want);
    if (diff) throw new Error(`${what}: lake.orders (catalog) ${diff}\n${await this.diagnose()}`);
    const byHint = compare(await this.lakeByHint(), want);
    if (byHint) throw new Error(`${what}: lake.orders read through version-hint.text ${byHint}\n${await this.diagnose()}`);
  }

  /**
   * Fails unless the store is settled: no file PROCESSING, every landed file SUCCESS (and only
   * those in the ledger as SUCCESS), no run queued or running, no run started twice
   * (`run_started` events), and every run that succeeded started exactly once.
   */
  async assertStore(what: string, opts: { allowFailedFiles?: boolean; startedOnce?: boolean } = {}): Promise<void> {
    const problems: string[] = [];
    const files = await this.query<{ path: string; status: string }>(`select path, status from processed_files order by path`);
    const processing = files.filter((f) => f.status === "PROCESSING");
    if (processing.length > 0) problems.push(`${processing.length} file(s) left PROCESSING (e.g. ${processing[0]!.path})`);
    const success = new Set(files.filter((f) => f.status === "SUCCESS").map((f) => f.path));
    const landed = this.landing.keys();
    const notDone = landed.filter((k) => !success.has(k));
    if (notDone.length > 0) problems.push(`${notDone.length} landed file(s) not SUCCESS in the ledger (e.g. ${notDone[0]}: ${files.find((f) => f.path === notDone[0])?.status ?? "absent"})`);
    const gone = [...success].filter((p) => !landed.includes(p));
    if (gone.length > 0) problems.push(`${gone.length} file(s) SUCCESS in the ledger but no longer landed (e.g. ${gone[0]})`);
    if (!opts.allowFailedFiles) {
      const failed = files.filter((f) => f.status === "FAILED");
      if (failed.length > 0) problems.push(`${failed.length} file(s) FAILED (e.g. ${failed[0]!.path})`);
    }
    const open = await this.query<{ id: string; status: string; worker: string | null }>(`select id, status, worker from runs where status in ('queued', 'running')`);
    if (open.length > 0) problems.push(`${open.length} run(s) still queued/running: ${open.map((r) => `${r.id.slice(0, 8)} ${r.status} on ${r.worker ?? "-"}`).join(", ")}`);
    if (opts.startedOnce !== false) {
      const starts = await this.query<{ id: string; status: string; n: number }>(
        `select r.id, r.status, count(e.id)::int as n from runs r left join events e on e.run_id = r.id and e.type = 'run_started' group by r.id, r.status`,
      );
      const twice = starts.filter((s) => s.n > 1);
      if (twice.length > 0) problems.push(`run(s) started more than once: ${twice.map((s) => `${s.id.slice(0, 8)} ×${s.n}`).join(", ")}`);
      const never = starts.filter((s) => s.status === "success" && s.n !== 1);
      if (never.length > 0) problems.push(`successful run(s) without exactly one run_started event: ${never.map((s) => s.id.slice(0, 8)).join(", ")}`);
    }
    if (problems.length > 0) throw new Error(`${what}: ${problems.join("; ")}\n${await this.diagnose()}`);
  }

  /** Checks every run that ended `success`: the rows of its lake.orders partitions are in the table (files do not change while workers run). */
  async assertSuccessfulRunsLanded(what: string): Promise<void> {
    const steps = await this.query<{ run_id: string; partition: string }>(
      `select s.run_id, s.partition from run_steps s join runs r on r.id = s.run_id where r.status = 'success' and s.asset = 'lake.orders'`,
    );
    const byRun = new Map<string, string[]>();
    for (const s of steps) byRun.set(s.run_id, [...(byRun.get(s.run_id) ?? []), s.partition]);
    for (const [run, parts] of byRun) await this.assertLanded(this.landing.ids(parts), `${what}: run ${run.slice(0, 8)} ended success`);
  }

  /** The runs, one line each (short id, status, parent, tags), for reports. */
  async runSummary(): Promise<string> {
    const runs = await this.query<{ id: string; status: string; parent_run_id: string | null; tags: Record<string, string> }>(`select id, status, parent_run_id, tags from runs order by created_at`);
    return runs.map((r) => `${r.id.slice(0, 8)} ${r.status}${r.parent_run_id ? ` (from ${r.parent_run_id.slice(0, 8)})` : ""}${Object.keys(r.tags).length ? ` ${JSON.stringify(r.tags)}` : ""}`).join("; ");
  }

  /** What the store holds now, for failure messages: ledger, runs, failures, the table, the commands. */
  async diagnose(): Promise<string> {
    const lines: string[] = [];
    try {
      lines.push(`ledger: ${JSON.stringify(await this.ledger())}`);
      const held = await this.query<{ claimed_by: string | null; run_id: string | null; n: number; ingested: number }>(
        `select claimed_by, run_id, count(*)::int as n, count(rows)::int as ingested from processed_files where status = 'PROCESSING' group by 1, 2`,
      );
      for (const h of held) lines.push(`  PROCESSING ×${h.n} (${h.ingested} with rows) claimed by ${h.claimed_by ?? "-"} in run ${h.run_id?.slice(0, 8) ?? "-"}`);
      const failed = await this.query<{ path: string; attempts: number; error: string | null }>(`select path, attempts, error from processed_files where status = 'FAILED' order by path limit 5`);
      for (const f of failed) lines.push(`  FAILED ${f.path} (attempts ${f.attempts}): ${f.error ?? ""}`);
      const runs = await this.query<{ id: string; status: string; worker: string | null; error: string | null; parent_run_id: string | null; tags: Record<string, string> }>(
        `select id, status, worker, error, parent_run_id, tags from runs order by created_at`,
      );
      for (const r of runs) {
        lines.push(`run ${r.id.slice(0, 8)} ${r.status} on ${r.worker ?? "-"}${r.parent_run_id ? ` parent ${r.parent_run_id.slice(0, 8)}` : ""}${Object.keys(r.tags).length ? ` ${JSON.stringify(r.tags)}` : ""}${r.error ? `: ${r.error}` : ""}`);
      }
      const steps = await this.query<{ run_id: string; asset: string; partition: string; status: string; error: string | null; files: string | null; rows: string | null }>(
        `select run_id, asset, partition, status, error, metadata->>'files' as files, metadata->>'rows' as rows from run_steps where status <> 'success' or asset = 'raw' order by created_at, seq`,
      );
      for (const s of steps.slice(-20)) lines.push(`  step ${s.run_id.slice(0, 8)} ${s.asset} ${s.partition} ${s.status}${s.files !== null ? ` files=${s.files}` : ""}${s.rows !== null ? ` rows=${s.rows}` : ""}${s.error ? `: ${s.error.slice(0, 300)}` : ""}`);
      const [attempt] = await this.query<{ stack: string | null }>(`select data->>'stack' as stack from events where type = 'step_attempt_failed' and data ? 'stack' order by id desc limit 1`);
      // floe's own frames (not node_modules or node internals), else the first ones
      const frames = attempt?.stack?.split("\n").slice(1).map((l) => l.trim()) ?? [];
      const own = frames.filter((l) => !l.includes("node_modules") && !l.includes("node:"));
      if (frames.length > 0) lines.push(`  last step error at: ${(own.length > 0 ? own : frames).slice(0, 4).join(" < ")}`);
      const ids = await this.lake();
      lines.push(`lake.orders: ${ids.length} rows, ${new Set(ids).size} distinct; landing: ${this.landing.ids().length} rows in ${this.landing.keys().length} files`);
    } catch (e) {
      lines.push(`(diagnosis failed: ${e instanceof Error ? e.message : String(e)})`);
    }
    lines.push(`commands: ${this.history.map((h) => `[${h.args} → ${h.code ?? h.signal} in ${h.ms} ms]`).join(" ")}`);
    const last = this.procs[this.procs.length - 1];
    if (last && last.err().trim()) lines.push(`last stderr: ${last.err().trim().split("\n").slice(-5).join(" | ").slice(0, 1500)}`);
    return lines.join("\n");
  }

  /** Kills what is still running (by pid), closes the probe, drops the database, removes the project. */
  async close(): Promise<void> {
    for (const p of this.procs) if (p.alive()) p.child.kill("SIGKILL");
    await Promise.all(this.procs.map((p) => p.done.catch(() => undefined)));
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
    this.removeProject();
    await this.drop();
  }
}

/** Describes how `ids` differ from `want` as multisets, or undefined when they are equal. */
function compare(ids: readonly number[], want: readonly number[]): string | undefined {
  const have = new Set(ids);
  const wanted = new Set(want);
  const missing = want.filter((i) => !have.has(i)).length;
  const extra = ids.filter((i) => !wanted.has(i)).length;
  const dups = ids.length - have.size;
  if (missing === 0 && extra === 0 && dups === 0 && ids.length === want.length) return undefined;
  return `holds ${ids.length} rows (${have.size} distinct) for ${want.length} landed: ${missing} missing, ${extra} not landed, ${dups} duplicate(s)`;
}

async function readIds(tableUrl: string, metadataFileName: string | undefined): Promise<number[]> {
  try {
    const rows = (await icebergRead({ tableUrl, ...(metadataFileName ? { metadataFileName } : {}) })) as Array<{ id: unknown }>;
    return rows.map((r) => Number(r.id));
  } catch (e) {
    // a table whose current snapshot holds no file (or none yet)
    if (e instanceof Error && /No data manifest files found|current snapshot/.test(e.message)) return [];
    throw e;
  }
}

/**
 * Trials of one test file: each `trial()` gets a fresh database and project; `cleanup()` (in
 * afterAll) closes whatever is left.
 *
 * @example
 * const suite = new Suite(); afterAll(() => suite.cleanup());
 * const t = await suite.trial("parquet");
 */
export class Suite {
  private readonly open = new Set<Trial>();

  async trial(format: Format = "csv"): Promise<Trial> {
    const db = await testDatabase();
    if (!db) throw new Error("the reliability trials need PostgreSQL (FLOE_TEST_DATABASE_URL or 127.0.0.1:5432)");
    const project = reliabilityProject(format);
    const t = new Trial(project.dir, db.url, new Landing(project.dir, format), () => db.drop(), () => project.remove());
    this.open.add(t);
    return t;
  }

  /** Ends a trial now (its processes, database and project). */
  /** Runs `fn` on a fresh trial (database + project), ended afterwards whatever happens. */
  async run<T>(fn: (t: Trial) => Promise<T>, format: Format = "csv"): Promise<T> {
    const t = await this.trial(format);
    try {
      return await fn(t);
    } finally {
      await this.end(t);
    }
  }

  async end(t: Trial): Promise<void> {
    this.open.delete(t);
    await t.close();
  }

  async cleanup(): Promise<void> {
    for (const t of [...this.open]) await this.end(t);
    const d = await duck;
    d?.closeSync();
    duck = undefined;
  }
}

/**
 * Polls `check` every `everyMs` until true; throws naming `what` (and the store) after `timeoutMs`.
 *
 * @example
 * await waitFor(t, "the run to end", async () => (await t.query("select 1 from runs where status = 'running'")).length === 0);
 */
export async function waitFor(t: Trial, what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${await t.diagnose()}`);
    await sleep(everyMs);
  }
}

// ─── kills at chosen moments ─────────────────────────────────────────────────────────────────

export type Moment = "random" | "claim" | "recorded" | "commit";

/** What a kill found. */
export interface KillResult {
  moment: Moment;
  delayMs: number;
  /** Whether the awaited moment (first claim, catalog commit) came before the process ended. */
  reached: boolean;
  /** Whether the process was still alive when the signal was sent. */
  killed: boolean;
  /** The partition's files by ledger status just before the signal was sent. */
  atSignal: Record<string, number>;
  /** The partition's files by ledger status once the process had ended. */
  atKill: Record<string, number>;
}

/**
 * Sends `signal` to `proc` at a moment: `random` (`delayMs` after now), `claim` (`delayMs` after
 * the partition's first file goes PROCESSING), `recorded` (`delayMs` after a claimed file's rows
 * are recorded, its batch not yet committed) or `commit` (`delayMs` after the catalog pointer of
 * lake.orders moves). Waits for the process to end (its landing check included).
 *
 * @example
 * const k = await signalAt(t, t.materialize(["2025-03-01"]), "2025-03-01", "claim", 20); // kill -9 20 ms after the first claim
 */
export async function signalAt(t: Trial, proc: FloeProc, partition: string, moment: Moment, delayMs: number, signal: NodeJS.Signals = "SIGKILL"): Promise<KillResult> {
  let reached = true;
  if (moment === "claim" || moment === "recorded") {
    reached = false;
    const recorded = moment === "recorded" ? "and rows is not null" : "";
    while (proc.alive() && !reached) {
      reached = (await t.query(`select 1 from processed_files where partition = $1 and status = 'PROCESSING' ${recorded} limit 1`, [partition])).length > 0;
      if (!reached) await sleep(3);
    }
  } else if (moment === "commit") {
    reached = false;
    const before = await t.pointer();
    while (proc.alive() && !reached) {
      reached = (await t.pointer()) !== before;
      if (!reached) await sleep(2);
    }
  }
  if (delayMs > 0) await sleep(delayMs);
  const atSignal = signal === "SIGKILL" ? {} : await t.ledger(partition);
  const killed = proc.alive();
  if (killed) proc.child.kill(signal);
  await proc.done;
  const atKill = await t.ledger(partition);
  return { moment, delayMs, reached, killed, atSignal: signal === "SIGKILL" ? atKill : atSignal, atKill };
}

/**
 * A kill that left the partition's ingestion part-way (files claimed, or some done and some not).
 *
 * @example
 * partWay({ ...k, atKill: { PROCESSING: 40 } }, 40); // true
 */
export function partWay(k: KillResult, files: number): boolean {
  const s = k.atKill;
  return (s.PROCESSING ?? 0) > 0 || ((s.SUCCESS ?? 0) > 0 && (s.SUCCESS ?? 0) < files) || ((s.DISCOVERED ?? 0) > 0 && (s.DISCOVERED ?? 0) < files);
}

// ─── scenario 1: kill -9 of floe materialize ─────────────────────────────────────────────────

export const KILL_FILES = 40;

/**
 * Lands `files` files (default KILL_FILES, one claim batch) in a day, kill -9s `floe materialize`
 * of it at `moment` (+ `delayMs`), then runs `floe materialize` again: it must exit 0 with every
 * row once, nothing PROCESSING, no run left running.
 *
 * @example
 * const k = await killTrial(t, "commit", 0); // k.reached: the commit landed before the kill
 */
export async function killTrial(t: Trial, moment: Moment, delayMs: number, files = KILL_FILES, rows = ROWS, day = "2025-03-01"): Promise<KillResult> {
  await t.landing.add(day, files, rows);
  const proc = t.materialize([day]);
  const k = await signalAt(t, proc, day, moment, delayMs);
  const again = await t.materialize([day]).done;
  if (again.code !== 0) throw new Error(`after a kill -9 at ${moment}+${delayMs} ms (ledger at kill ${JSON.stringify(k.atKill)}), floe materialize exited ${again.code}: ${again.stderr.trim().slice(-800)}\n${await t.diagnose()}`);
  await t.assertExact(`kill -9 at ${moment}+${delayMs} ms, then materialize`);
  await t.assertStore(`kill -9 at ${moment}+${delayMs} ms, then materialize`);
  return k;
}

// ─── scenario 2: a growing landing with kills between runs ───────────────────────────────────

/**
 * `rounds` rounds on one project: each lands 1-8 new files in a new or an earlier day, runs
 * `floe materialize` of that day and, with probability `killRate`, kill -9s it (at a random
 * moment or at its first claim). A run that is not killed must exit 0 (and land its day). At the
 * end, one clean run over every day: exit 0, every row once.
 *
 * @example
 * const { kills } = await growingTrial(t, 20, 1); // 20 rounds, about 40% of them killed
 */
export async function growingTrial(t: Trial, rounds: number, seed: number, killRate = 0.4): Promise<{ kills: KillResult[]; slowest: string }> {
  const rand = rng(seed);
  const days: string[] = [];
  const kills: KillResult[] = [];
  for (let r = 0; r < rounds; r++) {
    const fresh = days.length === 0 || rand() < 0.5;
    const day = fresh ? `2025-05-${String(days.length + 1).padStart(2, "0")}` : days[Math.floor(rand() * days.length)]!;
    if (fresh) days.push(day);
    await t.landing.add(day, 1 + Math.floor(rand() * 8));
    const proc = t.materialize([day]);
    if (rand() < killRate) {
      const moment: Moment = rand() < 0.5 ? "random" : "claim";
      const delay = moment === "random" ? 300 + Math.floor(rand() * 3000) : Math.floor(rand() * 60);
      kills.push(await signalAt(t, proc, day, moment, delay));
    } else {
      const res = await proc.done;
      if (res.code !== 0) throw new Error(`round ${r + 1}: floe materialize --partition ${day} exited ${res.code}: ${res.stderr.trim().slice(-800)}\n${await t.diagnose()}`);
    }
  }
  const last = await t.materialize(days).done;
  if (last.code !== 0) throw new Error(`the clean run over ${days.length} days exited ${last.code}: ${last.stderr.trim().slice(-800)}\n${await t.diagnose()}`);
  await t.assertExact(`${rounds} rounds with ${kills.length} kill(s), then a clean run`);
  await t.assertStore(`${rounds} rounds with ${kills.length} kill(s), then a clean run`);
  const slow = [...t.history].sort((a, b) => b.ms - a.ms)[0];
  return { kills, slowest: slow ? `${slow.args} → ${slow.code ?? slow.signal} in ${slow.ms} ms` : "" };
}

// ─── scenario 3: three workers, one killed ───────────────────────────────────────────────────

/**
 * Queues one run per day (`days` days of KILL_FILES files), starts three `floe worker`s, kill -9s
 * one of them while it executes a run (`delayMs` after it took one), and waits for the survivors
 * to finish everything: the killed worker's run is failed and requeued once from failure, the
 * requeued run succeeds, every other run succeeds, every row once.
 *
 * @example
 * const { killedRun } = await workersTrial(t, 6, 100);
 */
export async function workersTrial(t: Trial, days: number, delayMs: number): Promise<{ killedRun: string; detectedMs: number }> {
  const keys = Array.from({ length: days }, (_, i) => `2025-06-${String(i + 1).padStart(2, "0")}`);
  for (const d of keys) await t.landing.add(d, KILL_FILES);
  for (const d of keys) {
    const q = await t.materialize([d], ["--queue"]).done;
    if (q.code !== 0) throw new Error(`floe materialize --queue exited ${q.code}: ${q.stderr}`);
  }
  const workers = [0, 1, 2].map(() => t.spawn(["worker"]));
  const victim = workers[0]!;
  // the victim's run, once it holds one
  let held: string | undefined;
  await waitFor(t, `worker ${victim.owner} to take a run`, async () => {
    held = (await t.query<{ id: string }>(`select id from runs where status = 'running' and worker = $1`, [victim.owner]))[0]?.id;
    return held !== undefined || !victim.alive();
  }, 60_000, 5);
  if (held === undefined) throw new Error(`worker ${victim.owner} exited before taking a run: ${victim.err()}`);
  await sleep(delayMs);
  // the run it holds right now (it may have moved on to another one meanwhile)
  const now = (await t.query<{ id: string }>(`select id from runs where status = 'running' and worker = $1`, [victim.owner]))[0]?.id;
  if (now === undefined) throw new Error(`worker ${victim.owner} holds no run ${delayMs} ms after taking one: pick a shorter delay\n${await t.diagnose()}`);
  held = now;
  victim.child.kill("SIGKILL");
  await victim.done;
  const killedAt = Date.now();
  const survivors = workers.slice(1);
  await waitFor(t, "the survivors to fail the killed worker's run, requeue it and drain the queue", async () => {
    const open = await t.query(`select 1 from runs where status in ('queued', 'running') limit 1`);
    const rerun = await t.query(`select 1 from runs where parent_run_id = $1 and status in ('success', 'failed', 'canceled')`, [held]);
    return open.length === 0 && rerun.length > 0 && survivors.every((w) => w.alive());
  }, 90_000, 100);
  const detectedMs = Date.now() - killedAt;
  for (const w of survivors) {
    if (!w.alive()) throw new Error(`a surviving worker exited: ${w.err()}\n${await t.diagnose()}`);
  }
  for (const w of survivors) {
    const r = await t.stop(w, "SIGTERM");
    if (r.code !== 0) throw new Error(`a surviving worker exited ${r.code} on SIGTERM: ${r.stderr.trim().slice(-500)}`);
  }
  const [killed] = await t.query<{ status: string; error: string | null }>(`select status, error from runs where id = $1`, [held]);
  if (killed?.status !== "failed") throw new Error(`the killed worker's run ${held!.slice(0, 8)} ended ${killed?.status ?? "absent"}, expected failed\n${await t.diagnose()}`);
  const reruns = await t.query<{ id: string; status: string; tags: Record<string, string> }>(`select id, status, tags from runs where parent_run_id = $1`, [held]);
  if (reruns.length !== 1 || reruns[0]!.status !== "success" || reruns[0]!.tags["floe/recovery"] !== "1") {
    throw new Error(`the killed worker's run ${held!.slice(0, 8)} should be requeued once from failure and succeed; its reruns: ${JSON.stringify(reruns)}\n${await t.diagnose()}`);
  }
  const others = await t.query<{ id: string; status: string }>(`select id, status from runs where id <> $1 and status <> 'success'`, [held]);
  if (others.length > 0) throw new Error(`runs other than the killed one did not succeed: ${JSON.stringify(others)}\n${await t.diagnose()}`);
  await t.assertSuccessfulRunsLanded("three workers, one killed");
  await t.assertExact("three workers, one killed");
  await t.assertStore("three workers, one killed");
  return { killedRun: held!, detectedMs };
}

// ─── scenario 4: materialize and rerun beside an idle worker ─────────────────────────────────

/**
 * An idle `floe worker`; `floe materialize` of a day, then `floe rerun <its run>`: each exits 0
 * with the day's rows; every run started exactly once (one `run_started` event), executed by the
 * command that created it (its `runs.worker`), never by the worker (which prints a line per run).
 *
 * @example
 * await besideWorkerTrial(t);
 */
export async function besideWorkerTrial(t: Trial, day = "2025-07-01"): Promise<void> {
  await t.landing.add(day, 10);
  const worker = t.spawn(["worker"]);
  await waitFor(t, "the worker to wait for runs", () => worker.err().includes("waiting for queued runs") || !worker.alive(), 60_000);
  if (!worker.alive()) throw new Error(`the worker exited: ${worker.err()}`);
  const m = t.materialize([day]);
  const mr = await m.done;
  if (mr.code !== 0) throw new Error(`floe materialize exited ${mr.code}: ${mr.stderr.trim().slice(-500)}\n${await t.diagnose()}`);
  const runId = (JSON.parse(mr.stdout) as { runId: string }).runId;
  const rr = t.spawn(["rerun", runId, "--json"], [day]);
  const rres = await rr.done;
  if (rres.code !== 0) throw new Error(`floe rerun exited ${rres.code}: ${rres.stderr.trim().slice(-500)}\n${await t.diagnose()}`);
  const rerunId = (JSON.parse(rres.stdout) as { runId: string }).runId;
  await sleep(300); // a worker that took either run would have started it by now
  if (!worker.alive()) throw new Error(`the worker exited: ${worker.err()}`);
  const ws = await t.stop(worker, "SIGTERM");
  const runs = await t.query<{ id: string; worker: string | null; status: string; n: number; steps: number }>(
    `select r.id, r.worker, r.status,
       (select count(*)::int from events e where e.run_id = r.id and e.type = 'run_started') as n,
       (select count(*)::int from events e where e.run_id = r.id and e.type = 'step_started') as steps
     from runs r order by created_at`,
  );
  const expectOwner = new Map([[runId, m.owner], [rerunId, rr.owner]]);
  const problems: string[] = [];
  for (const r of runs) {
    const owner = expectOwner.get(r.id);
    if (owner === undefined) problems.push(`an unexpected run ${r.id.slice(0, 8)} (${r.status})`);
    if (r.n !== 1) problems.push(`run ${r.id.slice(0, 8)} has ${r.n} run_started events`);
    if (r.steps !== 3) problems.push(`run ${r.id.slice(0, 8)} has ${r.steps} step_started events for 3 steps`);
    if (owner !== undefined && r.worker !== owner) problems.push(`run ${r.id.slice(0, 8)} is recorded on ${r.worker ?? "-"}, not on the command that ran it (${owner})`);
    if (r.status !== "success") problems.push(`run ${r.id.slice(0, 8)} ended ${r.status}`);
  }
  if (runs.length !== 2) problems.push(`${runs.length} runs, expected 2`);
  const printed = ws.stdout.trim();
  if (printed !== "") problems.push(`the idle worker executed runs: ${printed}`);
  if (problems.length > 0) throw new Error(`beside an idle worker: ${problems.join("; ")}\n${await t.diagnose()}`);
  await t.assertExact("materialize and rerun beside an idle worker");
  await t.assertStore("materialize and rerun beside an idle worker");
}

// ─── scenario 5: corrupt input, then fixed ───────────────────────────────────────────────────

/** A kind of bad (or odd) input. `corrupt`: the command must fail naming the file; else it must land the rest. */
export interface BadInput {
  name: string;
  format: Format;
  corrupt: boolean;
  /** Writes the bad file (or folder) into `partition`; returns its key. */
  write(landing: Landing, partition: string): Promise<string>;
}

const writeBytes = async (landing: Landing, partition: string, file: string, bytes: Buffer | string): Promise<string> => {
  const key = landing.key(partition, file);
  await landing.put(key, partition, bytes, []);
  return key;
};

/** Every kind of bad input the suite knows, by name. */
export const BAD_INPUTS: readonly BadInput[] = [
  { name: "csv: unterminated quote", format: "csv", corrupt: true, write: (l, p) => writeBytes(l, p, "bad-quote.csv", `id,note\n1000001,a\n1000002,"b\n1000003,c\n`) },
  { name: "csv: a row with too many columns", format: "csv", corrupt: true, write: (l, p) => writeBytes(l, p, "bad-columns.csv", `id,note\n1000001,a\n1000002,b,extra\n1000003,c\n`) },
  { name: "csv: a non-UTF-8 byte sequence", format: "csv", corrupt: true, write: (l, p) => writeBytes(l, p, "bad-utf8.csv", Buffer.concat([Buffer.from("id,note\n1000001,a\n1000002,b"), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from("\n1000003,c\n")])) },
  { name: "csv: an empty file", format: "csv", corrupt: true, write: (l, p) => writeBytes(l, p, "bad-empty.csv", "") },
  { name: "csv: truncated mid-row", format: "csv", corrupt: true, write: (l, p) => writeBytes(l, p, "bad-truncated.csv", `id,note\n1000001,a\n1000002,b\n10000`) },
  { name: "csv: header only", format: "csv", corrupt: false, write: (l, p) => writeBytes(l, p, "header-only.csv", "id,note\n") },
  {
    name: "csv: a folder named like a file", format: "csv", corrupt: false,
    write: async (l, p) => {
      // a folder `dir.csv` holding a CSV: not a file of the glob, so it is never listed
      const dir = join(l.dir, "landing", "in", p, "dir.csv");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "inner.csv"), "id,note\n1000001,a\n");
      return l.key(p, "dir.csv");
    },
  },
  { name: "ndjson: invalid JSON", format: "ndjson", corrupt: true, write: (l, p) => writeBytes(l, p, "bad.ndjson", `{"id":1000001,"note":"a"}\n{"id":1000002,"note":\n{"id":1000003,"note":"c"}\n`) },
  { name: "json: truncated array", format: "json", corrupt: true, write: (l, p) => writeBytes(l, p, "bad.json", `[{"id":1000001,"note":"a"},{"id":1000002,"no`) },
  {
    name: "parquet: truncated file", format: "parquet", corrupt: true,
    write: async (l, p) => {
      const whole = (await l.encode(l.allocate(ROWS))) as Buffer;
      return writeBytes(l, p, "bad.parquet", whole.subarray(0, Math.floor(whole.length / 2)));
    },
  },
  {
    name: "parquet: not Parquet at all", format: "parquet", corrupt: true,
    write: (l, p) => writeBytes(l, p, "bad-text.parquet", "id,note\n1,a\n"),
  },
];

/**
 * Bad inputs of one format, each in its own day beside `good` good files: one `floe materialize`
 * over those days must exit 1 naming each corrupt file, leave nothing PROCESSING and the good
 * files not lost; after the corrupt files are rewritten whole, the next `floe materialize` exits
 * 0 with every row once (the odd-but-valid inputs land at the first run).
 *
 * @example
 * await corruptTrial(t, BAD_INPUTS.filter((b) => b.format === "csv"));
 */
export async function corruptTrial(t: Trial, kinds: readonly BadInput[], good = 4): Promise<{ messages: Record<string, string> }> {
  const days = kinds.map((_, i) => `2025-08-${String(i + 1).padStart(2, "0")}`);
  const bad = new Map<string, { kind: BadInput; key: string }>();
  for (const [i, kind] of kinds.entries()) {
    if (kind.format !== t.landing.format) throw new Error(`${kind.name} needs a ${kind.format} project`);
    const day = days[i]!;
    await t.landing.add(day, good);
    bad.set(day, { kind, key: await kind.write(t.landing, day) });
  }
  const first = await t.materialize(days).done;
  const text = `${first.stdout}\n${first.stderr}`;
  const corrupt = [...bad.values()].filter((b) => b.kind.corrupt);
  const messages: Record<string, string> = {};
  if (corrupt.length > 0) {
    if (first.code !== 1) throw new Error(`with ${corrupt.map((b) => b.kind.name).join(", ")}: floe materialize exited ${first.code}, expected 1\n${await t.diagnose()}`);
    const out = JSON.parse(first.stdout) as { steps: Array<{ asset: string; partition: string; status: string; error?: string }> };
    for (const [day, b] of bad) {
      if (!b.kind.corrupt) continue;
      const step = out.steps.find((s) => s.asset === "raw" && s.partition === day);
      messages[b.kind.name] = step?.error ?? "";
      if (step?.status !== "failed" || !step.error?.includes(basename(b.key))) {
        throw new Error(`${b.kind.name}: the raw step of ${day} should fail naming ${basename(b.key)}; it ended ${step?.status ?? "absent"}: ${step?.error ?? ""}\n${text.slice(0, 1500)}`);
      }
    }
    const held = await t.query<{ path: string }>(`select path from processed_files where status = 'PROCESSING'`);
    if (held.length > 0) throw new Error(`after the failed run, ${held.length} file(s) are left PROCESSING (e.g. ${held[0]!.path}): the good files of a failed step are held by a finished process\n${await t.diagnose()}`);
    // the corrupt files are fixed (rewritten whole, with new rows)
    for (const b of corrupt) await t.landing.rewrite(b.key);
  } else if (first.code !== 0) {
    throw new Error(`with only odd-but-valid inputs (${kinds.map((k) => k.name).join(", ")}), floe materialize exited ${first.code}\n${text.slice(0, 1500)}\n${await t.diagnose()}`);
  }
  const again = await t.materialize(days).done;
  if (again.code !== 0) throw new Error(`after the bad files were fixed, floe materialize exited ${again.code}: ${again.stdout.slice(0, 1500)}\n${await t.diagnose()}`);
  await t.assertExact(`${kinds.map((k) => k.name).join(", ")}, fixed`);
  await t.assertStore(`${kinds.map((k) => k.name).join(", ")}, fixed`);
  return { messages };
}

// ─── scenario 6: SIGTERM ─────────────────────────────────────────────────────────────────────

/** Files of a SIGTERM trial: enough that the ingestion is part-way when the signal comes. */
export const MANY_FILES = 600;

/**
 * A `floe worker` gets SIGTERM mid-ingestion of a queued run over `files` files (MANY_FILES: two claim batches); a new
 * worker is started: the interrupted run is resumed (requeued) and the table ends exact.
 *
 * @example
 * const { atSignal } = await sigtermWorkerTrial(t, 50); // atSignal.PROCESSING > 0: the signal came mid-ingestion
 */
export async function sigtermWorkerTrial(t: Trial, delayMs: number, files = MANY_FILES, moment: Moment = "claim", day = "2025-09-01"): Promise<{ atSignal: Record<string, number>; atExit: Record<string, number>; interrupted: string; exit: number | null; runs: string }> {
  await t.landing.add(day, files, 10);
  const q = await t.materialize([day], ["--queue"]).done;
  if (q.code !== 0) throw new Error(`floe materialize --queue exited ${q.code}: ${q.stderr}`);
  const runId = (JSON.parse(q.stdout) as { runId: string }).runId;
  const first = t.spawn(["worker"]);
  const k = await signalAt(t, first, day, moment, delayMs, "SIGTERM");
  if (!k.killed) throw new Error(`the worker ended before SIGTERM\n${await t.diagnose()}`);
  const exit = (await first.done).code;
  const second = t.spawn(["worker"]);
  await waitFor(t, "the restarted worker to resume the interrupted run and land every row", async () => {
    const open = await t.query(`select 1 from runs where status in ('queued', 'running') limit 1`);
    if (open.length > 0) return false;
    const ids = new Set(await t.lake());
    return t.landing.ids([day]).every((i) => ids.has(i));
  }, 90_000, 250).catch(async (e: unknown) => {
    throw new Error(`after SIGTERM (worker exit ${exit}; ledger at signal ${JSON.stringify(k.atKill)}): ${e instanceof Error ? e.message : String(e)}`);
  });
  await t.stop(second, "SIGTERM");
  // resumed: the interrupted run itself, or a run from it, succeeded
  const resumed = await t.query(`select 1 from runs where status = 'success' and (id = $1 or parent_run_id = $1)`, [runId]);
  if (resumed.length === 0) throw new Error(`the interrupted run ${runId.slice(0, 8)} was not resumed: no run from it succeeded\n${await t.diagnose()}`);
  await t.assertSuccessfulRunsLanded("SIGTERM of a worker, then a new worker");
  await t.assertExact("SIGTERM of a worker, then a new worker");
  await t.assertStore("SIGTERM of a worker, then a new worker", { startedOnce: false });
  return { atSignal: k.atSignal, atExit: k.atKill, interrupted: runId, exit, runs: await t.runSummary() };
}

/**
 * `floe materialize` of `files` files gets SIGTERM mid-ingestion; then `floe rerun <id>
 * --from-failure` must exit 0 with every row (and the interrupted command exits non-zero unless
 * it landed everything).
 *
 * @example
 * const { exit } = await sigtermMaterializeTrial(t, 50); // exit !== 0
 */
export async function sigtermMaterializeTrial(t: Trial, delayMs: number, files = MANY_FILES, moment: Moment = "claim", day = "2025-09-02"): Promise<{ atSignal: Record<string, number>; atExit: Record<string, number>; exit: number | null; status: string; runs: string }> {
  await t.landing.add(day, files, 10);
  const proc = t.materialize([day]);
  const k = await signalAt(t, proc, day, moment, delayMs, "SIGTERM");
  const r = await proc.done; // an exit 0 was already checked to have landed every row
  const runs = await t.query<{ id: string; status: string }>(`select id, status from runs order by created_at`);
  const run = runs[0];
  if (!run) throw new Error(`no run recorded\n${await t.diagnose()}`);
  const again = t.spawn(["rerun", run.id, "--from-failure", "--json"], [day]);
  const ar = await again.done;
  if (ar.code !== 0) throw new Error(`after SIGTERM (exit ${r.code}, run ${run.status}, ledger at signal ${JSON.stringify(k.atKill)}), floe rerun --from-failure exited ${ar.code}: ${ar.stdout.slice(0, 800)} ${ar.stderr.trim().slice(-500)}\n${await t.diagnose()}`);
  await t.assertExact("SIGTERM of floe materialize, then rerun --from-failure");
  await t.assertStore("SIGTERM of floe materialize, then rerun --from-failure");
  return { atSignal: k.atSignal, atExit: k.atKill, exit: r.code, status: run.status, runs: await t.runSummary() };
}

// ─── scenario 7: the database refuses connections ────────────────────────────────────────────

/**
 * The trial's database refuses connections for `ms`: ALLOW_CONNECTIONS false and its backends
 * terminated, from an admin connection; connections are always allowed again afterwards.
 *
 * @example
 * await outage(t, 10_000); // connections refused for 10 s, then allowed again
 */
export async function outage(t: Trial, ms: number): Promise<void> {
  const admin = new pg.Client({ connectionString: baseUrl });
  admin.on("error", () => undefined);
  await admin.connect();
  try {
    await admin.query(`alter database ${t.dbName} allow_connections false`);
    await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`, [t.dbName]);
    await sleep(ms);
  } finally {
    await admin.query(`alter database ${t.dbName} allow_connections true`);
    await admin.end();
  }
}

/**
 * A `floe worker`, idle (`midRun` false: the outage comes before the run is queued) or executing
 * a run over `files` files (`midRun` true: it comes once files are claimed). After the outage
 * of `ms`, the worker is still alive, the run ends success and every row is in once.
 *
 * @example
 * await outageTrial(t, true, 10_000); // the outage hits while the worker ingests
 */
export async function outageTrial(t: Trial, midRun: boolean, ms: number, files = MANY_FILES, day = "2025-10-01"): Promise<{ runStatus: string }> {
  await t.landing.add(day, midRun ? files : 10, midRun ? 10 : ROWS);
  // migrate before the worker starts
  const init = await t.floe(["runs", "--json"]);
  if (init.code !== 0) throw new Error(`floe runs exited ${init.code}: ${init.stderr}`);
  const worker = t.spawn(["worker"]);
  await waitFor(t, "the worker to wait for runs", () => worker.err().includes("waiting for queued runs") || !worker.alive(), 60_000);
  if (midRun) {
    const q = await t.materialize([day], ["--queue"]).done;
    if (q.code !== 0) throw new Error(`floe materialize --queue exited ${q.code}: ${q.stderr}`);
    await waitFor(t, "the worker to claim files", async () => (await t.ledger(day)).PROCESSING !== undefined || !worker.alive(), 60_000, 5);
  } else {
    await sleep(500);
  }
  await outage(t, ms);
  if (!midRun) {
    const q = await t.materialize([day], ["--queue"]).done;
    if (q.code !== 0) throw new Error(`floe materialize --queue right after the outage exited ${q.code}: ${q.stderr}`);
  }
  await waitFor(t, "the run to end", async () => {
    if (!worker.alive()) return true;
    const rows = await t.query<{ n: number }>(`select count(*)::int as n from runs where status in ('queued', 'running')`).catch(() => [{ n: 1 }]);
    return rows[0]?.n === 0;
  }, 120_000, 250);
  if (!worker.alive()) {
    const r = await worker.done;
    throw new Error(`the worker exited ${r.code} after a ${ms} ms outage (${midRun ? "mid-run" : "idle"}): ${r.stderr.trim().slice(-800)}\n${await t.diagnose()}`);
  }
  const [run] = await t.query<{ id: string; status: string; error: string | null }>(`select id, status, error from runs order by created_at desc limit 1`);
  if (run?.status !== "success") throw new Error(`after a ${ms} ms outage (${midRun ? "mid-run" : "idle"}), the run ended ${run?.status ?? "absent"}: ${run?.error ?? ""}\n${await t.diagnose()}`);
  const w = await t.stop(worker, "SIGTERM");
  if (w.code !== 0) throw new Error(`the worker exited ${w.code} on SIGTERM: ${w.stderr.trim().slice(-500)}`);
  await t.assertSuccessfulRunsLanded(`a ${ms} ms outage`);
  await t.assertExact(`a ${ms} ms outage (${midRun ? "mid-run" : "idle"})`);
  await t.assertStore(`a ${ms} ms outage (${midRun ? "mid-run" : "idle"})`);
  return { runStatus: run.status };
}

// ─── scenario 8: a bad file deleted ──────────────────────────────────────────────────────────

/**
 * A file whose ids duplicate another file's makes `checks.unique("id")` fail (exit 1); the file
 * is deleted; the next `floe materialize` exits 0, and `orders` and lake.orders hold exactly the
 * remaining files' rows. `landedFirst`: the day was materialized cleanly before the duplicate
 * file came (its rows are already in the append table).
 *
 * @example
 * const { warnings } = await deletedFileTrial(t, true);
 */
export async function deletedFileTrial(t: Trial, landedFirst: boolean, day = "2025-11-01"): Promise<{ warnings: string[] }> {
  const keys = await t.landing.add(day, 4);
  if (landedFirst) {
    const r = await t.materialize([day]).done;
    if (r.code !== 0) throw new Error(`the first clean materialize exited ${r.code}\n${await t.diagnose()}`);
  }
  // a file repeating the ids of the second one
  const dup = t.landing.key(day, "zz-duplicate.csv");
  await t.landing.put(dup, day, await t.landing.encode(t.landing.idsOf(keys[1]!)), []);
  const bad = await t.materialize([day]).done;
  if (bad.code !== 1) throw new Error(`with a duplicate-id file, floe materialize exited ${bad.code}, expected 1 (checks.unique)\n${await t.diagnose()}`);
  const out = JSON.parse(bad.stdout) as { steps: Array<{ asset: string; status: string; metadata: { checks?: Array<{ name?: string; passed: boolean }> } }> };
  const orders = out.steps.find((s) => s.asset === "orders");
  if (orders?.status !== "failed") throw new Error(`the orders step should fail its unique check; it ended ${orders?.status ?? "absent"}`);
  t.landing.remove(dup);
  const fixed = t.materialize([day]);
  const fr = await fixed.done;
  if (fr.code !== 0) throw new Error(`after deleting the duplicate file, floe materialize exited ${fr.code}: ${fr.stdout.slice(0, 1200)}\n${await t.diagnose()}`);
  // README: "a file removed from the landing leaves the ledger on the partition's next run …
  // (`removedFiles` in the step's metadata, and one warning line)"
  const rawStep = (JSON.parse(fr.stdout) as { steps: Array<{ asset: string; metadata: { removedFiles?: number } }> }).steps.find((s) => s.asset === "raw");
  if (rawStep?.metadata.removedFiles !== 1) throw new Error(`the raw step after the deletion should count removedFiles: 1; its metadata: ${JSON.stringify(rawStep?.metadata)}`);
  const table = await t.ordersTable(day);
  const want = t.landing.ids([day]);
  const diff = compare(table, want);
  if (diff) throw new Error(`after deleting the duplicate file, the duckdbTable orders ${diff}\n${await t.diagnose()}`);
  await t.assertExact("a duplicate file deleted");
  // the deleted file's ledger row is gone or at least not SUCCESS (assertStore checks SUCCESS ⊆ landed)
  await t.assertStore("a duplicate file deleted");
  const warnings = await t.query<{ message: string }>(`select message from events where level = 'warn' and asset = 'raw' order by id`);
  return { warnings: warnings.map((w) => w.message) };
}

// ─── extra: a second process on the same partition ───────────────────────────────────────────

/**
 * Two `floe materialize` of the same day at once: the second starts `delayMs` after the first
 * claimed its files. Each that exits 0 must have landed every row of the day (the rule, checked
 * by `spawn`); then one more `floe materialize` exits 0 and the table is exact.
 *
 * @example
 * const { codes } = await concurrentTrial(t, 40, 0); // [0, 0]
 */
export async function concurrentTrial(t: Trial, files: number, delayMs: number, day = "2025-12-01"): Promise<{ codes: Array<number | null>; errors: string[] }> {
  await t.landing.add(day, files, 10);
  const init = await t.floe(["runs", "--json"]); // migrate first: two processes racing to create the schema is another matter
  if (init.code !== 0) throw new Error(`floe runs exited ${init.code}: ${init.stderr}`);
  const a = t.materialize([day]);
  await waitFor(t, "the first process to claim files", async () => !a.alive() || (await t.ledger(day)).PROCESSING !== undefined, 60_000, 3);
  if (delayMs > 0) await sleep(delayMs);
  const b = t.materialize([day]);
  const results = await Promise.all([a.done, b.done]);
  const errors = results.flatMap((r) => {
    if (r.code === 0) return [];
    try {
      const out = JSON.parse(r.stdout) as { steps: Array<{ asset: string; status: string; error?: string }> };
      return out.steps.filter((s) => s.error).map((s) => `${s.asset} ${s.status}: ${s.error}`);
    } catch {
      return [r.stderr.trim().split("\n").slice(-1)[0] ?? ""];
    }
  });
  const last = await t.materialize([day]).done;
  if (last.code !== 0) throw new Error(`after two concurrent runs (exits ${results.map((r) => r.code).join(", ")}), floe materialize exited ${last.code}\n${await t.diagnose()}`);
  await t.assertExact("two concurrent materializations, then one more");
  await t.assertStore("two concurrent materializations, then one more");
  return { codes: results.map((r) => r.code), errors };
}
