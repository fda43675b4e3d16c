import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Kysely, PostgresDialect, sql, type RawBuilder, type Selectable } from "kysely";
import pg from "pg";
import { UserError } from "../errors.js";
import { acquireLock, type StateLock } from "./lock.js";
import { coreMigrations, migrate, type Migration } from "./migrations.js";
import { deliveryMigrations } from "./deliveries.js";
import { processMigrations } from "./processes.js";
import { schedulerMigrations } from "./ticks.js";
import { backoffMs } from "./transient.js";
import { PGliteDialect } from "./pglite-dialect.js";
import type { AssetPartitionsTable, Database, EventsTable, RunStepsTable, RunsTable } from "./schema.js";

export type RunStatus = "queued" | "running" | "success" | "failed" | "canceled";
export type StepStatus = "pending" | "running" | "success" | "failed" | "skipped" | "upstream_failed";
export type EventLevel = "debug" | "info" | "warn" | "error";

export interface BackfillRecord {
  id: string;
  selection: string;
  from: string;
  to: string;
  policy: string;
  status: string;
  createdAt: Date;
  /** Its runs' counts by status. */
  runs: Record<string, number>;
}

export interface StoreSummary {
  runs: Array<{ status: string; trigger: string; count: number }>;
  steps: Array<{ asset: string; status: string; count: number }>;
  queueDepth: number;
  stalestHeartbeatSeconds: number;
}

export interface RunRecord {
  id: string;
  status: RunStatus;
  trigger: string;
  selection: string | null;
  partitionRange: string | null;
  parentRunId: string | null;
  /** The backfill the run belongs to. */
  backfillId: string | null;
  /** Queue priority: higher runs are claimed first (manual 0, backfills -1 unless given). */
  priority: number;
  tags: Record<string, string>;
  error: string | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

export interface StepRecord {
  runId: string;
  asset: string;
  partition: string | null;
  status: StepStatus;
  attempts: number;
  startedAt: Date | null;
  endedAt: Date | null;
  error: string | null;
  metadata: Record<string, unknown>;
}

export interface EventRecord {
  id: number;
  runId: string | null;
  asset: string | null;
  partition: string | null;
  type: string;
  level: EventLevel;
  message: string;
  data: Record<string, unknown> | null;
  createdAt: Date;
}

export interface MaterializationRecord {
  asset: string;
  partition: string | null;
  runId: string;
  materializedAt: Date;
  codeVersion: string | null;
  dataVersion: string | null;
  metadata: Record<string, unknown>;
}

/** The latest step of one asset partition: of the newest run, then the latest started. */
export interface StepStateRecord {
  asset: string;
  partition: string | null;
  runId: string;
  status: StepStatus;
  /** When it ended, else started, else when its run was created. */
  at: Date;
}

export interface NewRun {
  /** Default: a random UUID. */
  id?: string;
  trigger: string;
  selection?: string | null;
  partitionRange?: string | null;
  parentRunId?: string | null;
  tags?: Record<string, string>;
  /** Default `queued`. */
  status?: RunStatus;
  /** Higher runs first in the queue (default 0; backfills use -1). */
  priority?: number;
  /**
   * The process that executes the run now (`<host>:<pid>`): the run is recorded `running`, claimed
   * by it and heartbeating from its creation, so no worker can claim it too. Without it the run is
   * recorded with `status` (default `queued`) for a worker to claim.
   */
  worker?: string;
  /** The backfill this run belongs to. */
  backfillId?: string | null;
  /** In plan (dependency) order; `getSteps` returns them in this order. */
  steps: Array<{ asset: string; partition: string | null; status?: StepStatus; metadata?: Record<string, unknown>; attempts?: number }>;
}

/** A step transition; fields left undefined keep their stored value (`error: null` clears it). */
export interface StepUpdate {
  runId: string;
  asset: string;
  partition: string | null;
  status: StepStatus;
  attempts?: number;
  startedAt?: Date;
  endedAt?: Date;
  error?: string | null;
  metadata?: Record<string, unknown>;
}

/** A run transition; fields left undefined keep their stored value (`error: null` clears it). */
export interface RunUpdate {
  id: string;
  status?: RunStatus;
  startedAt?: Date;
  endedAt?: Date;
  error?: string | null;
}

export interface NewEvent {
  runId: string | null;
  asset?: string | null;
  partition?: string | null;
  type: string;
  /** Default `info`. */
  level?: EventLevel;
  message: string;
  data?: Record<string, unknown> | null;
  /** Default: the database's now(). */
  at?: Date;
}

export interface NewMaterialization {
  asset: string;
  partition: string | null;
  runId: string;
  materializedAt: Date;
  codeVersion: string | null;
  dataVersion: string | null;
  metadata: Record<string, unknown>;
}

export interface WriteBatch {
  runs?: readonly RunUpdate[];
  steps?: readonly StepUpdate[];
  events?: readonly NewEvent[];
  materializations?: readonly NewMaterialization[];
}

export interface OpenOptions {
  /** A `postgres://` URL (FLOE_DATABASE_URL); without it, embedded PGlite in `<home>/pglite`. */
  url?: string | undefined;
  /** The floe home folder (FLOE_HOME); holds the embedded store and its lock file. */
  home: string;
  /** Migrations of other parts of floe, run after the core ones. */
  extraMigrations?: readonly Migration[];
  /** Who holds the embedded store, shown to a second process that finds it in use. */
  owner?: string;
}

const json = (v: unknown): string => JSON.stringify(v);
/** Advisory lock key that serialises capped run claims. */
const CLAIM_LOCK = 7_300_517;
/** The queue priority of backfill runs unless one is given: below manual and scheduled runs (0). */
export const BACKFILL_PRIORITY = -1;

/** A new run and its steps as the JSON rows the batched inserts unpack (defaults filled in). */
function runRow(r: NewRun) {
  return {
    id: r.id ?? randomUUID(),
    status: r.worker === undefined ? (r.status ?? "queued") : "running",
    worker: r.worker ?? null,
    trigger: r.trigger,
    selection: r.selection ?? null,
    partition_range: r.partitionRange ?? null,
    parent_run_id: r.parentRunId ?? null,
    tags: r.tags ?? {},
    priority: r.priority ?? 0,
    backfill_id: r.backfillId ?? null,
    steps: r.steps.map((x, i) => ({ asset: x.asset, partition: x.partition ?? "", seq: i + 1, status: x.status ?? "pending", attempts: x.attempts ?? 0, metadata: x.metadata ?? {} })),
  };
}

/** Every migration a store runs at open: the core tables (with the file ledger), schedule ticks, backfills, pool slots, process heartbeats and notification delivery counts. */
export const defaultMigrations: readonly Migration[] = [...coreMigrations, ...schedulerMigrations, ...processMigrations, ...deliveryMigrations];
/** Shared buffers of the embedded store (PGlite's default, 128MB, is resident in every process). */
const EMBEDDED_SHARED_BUFFERS = "32MB";
/** '' in the database means "unpartitioned". */
const partitionOf = (p: string | null): string | null => (p === null || p === "" ? null : p);
const stepKey = (s: { runId: string; asset: string; partition: string | null }): string => `${s.runId}\u0000${s.asset}\u0000${s.partition ?? ""}`;

/**
 * The state store: runs, steps, events and materializations, on PostgreSQL (`url`) or on an
 * embedded PGlite owned by one process. The only code in floe that writes SQL. Both engines
 * return the same types: int8 as decimal strings (converted here), timestamptz as Date.
 *
 * @example
 * const store = await StateStore.open({ url: process.env.FLOE_DATABASE_URL, home: ".floe", owner: "floe dev" });
 * try {
 *   const run = await store.createRun({ trigger: "manual", steps: [{ asset: "orders", partition: null }] });
 *   await store.writeBatch({ runs: [{ id: run.id, status: "running", startedAt: new Date() }] });
 * } finally {
 *   await store.close();
 * }
 */
export class StateStore {
  #closed = false;

  /** Runs queued by this process (PostgreSQL also tells other processes, with NOTIFY floe_runs). */
  private readonly queued = new EventTarget();

  private constructor(
    readonly engine: "postgres" | "pglite",
    readonly db: Kysely<Database>,
    private readonly lock: StateLock | undefined,
    private readonly url?: string,
  ) {}

  /** Runs and steps changed state in this process (PostgreSQL also tells others, with NOTIFY floe_state). */
  private readonly changed = new EventTarget();

  /**
   * Calls `onQueued` when a run is queued: by this process, or on PostgreSQL by any process
   * (LISTEN floe_runs on a connection of its own). Returns the function that stops watching.
   *
   * @example
   * const stop = await store.watchQueue(() => wake());
   */
  watchQueue(onQueued: () => void): Promise<() => Promise<void>> {
    return this.listen("floe_runs", this.queued, "run", onQueued);
  }

  /**
   * Calls `onChange` when runs or steps change state (a run queued, a step started or finished):
   * in this process, or on PostgreSQL in any process (LISTEN floe_state). For live views.
   *
   * @example
   * const stop = await store.watchState(() => void refresh());
   */
  watchState(onChange: () => void): Promise<() => Promise<void>> {
    return this.listen(["floe_state", "floe_runs"], this.changed, "change", onChange, this.queued);
  }

  /**
   * Listens on `local` (this process) and, on PostgreSQL, with LISTEN on a connection of its own.
   * A lost listening connection (a restart, an outage) is opened again with backoff (250 ms
   * doubling to 5 s); once it is back, `fn` fires once, since something may have happened
   * unheard meanwhile. Until then, only latency is lost: readers also poll.
   */
  private async listen(channels: string | readonly string[], local: EventTarget, type: string, fn: () => void, also?: EventTarget): Promise<() => Promise<void>> {
    const handler = (): void => fn();
    local.addEventListener(type, handler);
    also?.addEventListener("run", handler);
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    let failures = 0;
    const url = this.url;
    const open = async (again: boolean): Promise<void> => {
      if (stopped || url === undefined) return;
      const c = new pg.Client({ connectionString: url, application_name: "floe listen", connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: PG_KEEPALIVE_DELAY_MS });
      let lost = false;
      const lose = (): void => {
        if (lost) return;
        lost = true;
        if (client === c) client = undefined;
        void c.end().catch(() => undefined);
        if (stopped) return;
        failures++;
        retry = setTimeout(() => void open(true), backoffMs(failures));
        retry.unref(); // a forgotten watcher does not hold the process
      };
      c.on("notification", () => fn());
      c.on("error", lose);
      c.on("end", lose);
      try {
        await c.connect();
        for (const ch of typeof channels === "string" ? [channels] : channels) await c.query(`LISTEN ${ch}`);
      } catch {
        lose();
        return;
      }
      if (lost) return;
      if (stopped) {
        lost = true;
        await c.end().catch(() => undefined);
        return;
      }
      client = c;
      failures = 0;
      if (again) fn();
    };
    if (this.engine === "postgres") await open(false);
    return async () => {
      stopped = true;
      clearTimeout(retry);
      local.removeEventListener(type, handler);
      also?.removeEventListener("run", handler);
      await client?.end().catch(() => undefined);
    };
  }

  /**
   * Opens (and migrates) the store. PostgreSQL when `url` is set, else embedded PGlite under
   * `home`, guarded by `<home>/state.lock`. Wrong URLs, unreachable servers and a store in use
   * by another process are UserErrors with a one-line message (passwords shown as `***`).
   *
   * @example
   * const store = await StateStore.open({ home: ".floe" }); // embedded
   * const shared = await StateStore.open({ url: "postgres://floe@db:5432/floe", home: ".floe" });
   */
  static async open(opts: OpenOptions): Promise<StateStore> {
    const migrations = [...defaultMigrations, ...(opts.extraMigrations ?? [])];
    if (opts.url !== undefined && opts.url !== "") return new StateStore("postgres", await openPostgres(opts.url, migrations, opts.owner), undefined, opts.url);
    const lock = acquireLock(opts.home, opts.owner ?? "floe");
    try {
      const dataDir = join(opts.home, "pglite");
      mkdirSync(dataDir, { recursive: true });
      const { PGlite } = await import("@electric-sql/pglite");
      for (;;) {
        const client = await PGlite.create(dataDir, { parsers: { [INT8_OID]: (v: string) => v } });
        const db = new Kysely<Database>({ dialect: new PGliteDialect(client) });
        try {
          // PGlite starts with PostgreSQL's 128MB of shared buffers, all resident; one process's
          // store needs far less (measured: 309 → 210 MB RSS). A new store is set once, then reopened.
          const { rows } = await sql<{ shared_buffers: string }>`show shared_buffers`.execute(db);
          if (rows[0]?.shared_buffers !== EMBEDDED_SHARED_BUFFERS) {
            await sql.raw(`alter system set shared_buffers = '${EMBEDDED_SHARED_BUFFERS}'`).execute(db);
            await db.destroy();
            continue;
          }
          await migrate(db, migrations, `embedded, in ${opts.home}`);
        } catch (e) {
          await db.destroy();
          throw e;
        }
        return new StateStore("pglite", db, lock);
      }
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /**
   * Records a run and all its steps, plus a `run_created` event, atomically (one statement).
   *
   * @example
   * const run = await store.createRun({ trigger: "manual", selection: "+orders", steps: [{ asset: "orders", partition: "2025-01-01" }] });
   * run.status; // "queued"
   */
  async createRun(run: NewRun): Promise<RunRecord> {
    return toRun(first(await this.insertRuns([run])));
  }

  /**
   * Creates many runs with their steps in one statement (one round trip, one transaction).
   * Returns their ids in the order given.
   *
   * @example
   * const ids = await store.createRuns(failed.map((r) => rerunOf(r)));
   */
  async createRuns(runs: readonly NewRun[]): Promise<string[]> {
    return (await this.insertRuns(runs)).map((r) => r.id);
  }

  /** Inserts runs, their steps and `run_created` events in one statement; the rows in the order given. */
  private async insertRuns(runs: readonly NewRun[]): Promise<Array<Selectable<RunsTable>>> {
    if (runs.length === 0) return [];
    const rows = runs.map((r) => ({ ...runRow(r), data: { trigger: r.trigger, selection: r.selection ?? null, partitionRange: r.partitionRange ?? null, steps: r.steps.length } }));
    const { rows: created } = await sql<Selectable<RunsTable> & { o: string }>`
      with src as (
        select e, o from jsonb_array_elements(${json(rows)}::jsonb) with ordinality as t(e, o)
      ), r as (
        -- created_at a microsecond apart keeps the queue in the order given
        -- a run created with its worker is claimed in the same statement: no other process can take it
        insert into runs (id, status, trigger, selection, partition_range, parent_run_id, tags, priority, backfill_id, created_at, worker, heartbeat_at, started_at)
        select e->>'id', e->>'status', e->>'trigger', e->>'selection', e->>'partition_range', e->>'parent_run_id', e->'tags',
               (e->>'priority')::int, e->>'backfill_id', now() + o * interval '1 microsecond',
               e->>'worker', case when e->>'worker' is not null then now() end, case when e->>'worker' is not null then now() end
        from src
        returning *
      ), s as (
        insert into run_steps (run_id, asset, partition, seq, status, attempts, metadata, created_at)
        select r.id, x->>'asset', x->>'partition', (x->>'seq')::int, x->>'status', (x->>'attempts')::int, x->'metadata', r.created_at
        from src join r on r.id = src.e->>'id', jsonb_array_elements(src.e->'steps') as y(x)
      ), ev as (
        insert into events (run_id, type, level, message, data)
        select r.id, 'run_created', 'info', 'run created: ' || jsonb_array_length(src.e->'steps') || ' steps', src.e->'data'
        from r join src on src.e->>'id' = r.id
      )
      select r.*, src.o, case when r.status = 'queued' then pg_notify('floe_runs', r.id) end as notified
      from r join src on src.e->>'id' = r.id order by src.o`.execute(this.db);
    if (rows.some((r) => r.status === "queued")) this.queued.dispatchEvent(new Event("run"));
    return created;
  }

  /**
   * Records a schedule tick and creates its run in one statement, unless that tick was already
   * recorded (by this or another scheduler): then nothing is written and it returns undefined.
   *
   * @example
   * const run = await store.createScheduledRun({ trigger: "schedule", steps }, { schedule: "orders", tickTime });
   */
  async createScheduledRun(run: NewRun, tick: { schedule: string; tickTime: Date }): Promise<RunRecord | undefined> {
    return (await this.createScheduledRuns([{ run, tick }]))[0];
  }

  /**
   * Records many ticks with their runs in one statement (a multi-row insert into
   * `schedule_ticks` with ON CONFLICT DO NOTHING on the tick key): a tick already recorded, by
   * this or another scheduler, or given twice, creates no run. Returns the runs created, in the
   * order given.
   *
   * @example
   * const created = await store.createScheduledRuns(missed.map((t) => ({ run: runOf(t), tick: { schedule: "orders", tickTime: t } })));
   */
  async createScheduledRuns(items: ReadonlyArray<{ run: NewRun; tick: { schedule: string; tickTime: Date } }>): Promise<RunRecord[]> {
    if (items.length === 0) return [];
    const rows = items.map(({ run: r, tick }) => ({
      ...runRow(r),
      schedule: tick.schedule,
      tick_time: tick.tickTime.toISOString(),
      data: { trigger: r.trigger, selection: r.selection ?? null, partitionRange: r.partitionRange ?? null, steps: r.steps.length },
    }));
    const { rows: created } = await sql<Selectable<RunsTable> & { o: string }>`
      with src as (
        select e, o from jsonb_array_elements(${json(rows)}::jsonb) with ordinality as t(e, o)
      ), g as (
        -- the gate: only ticks not recorded yet let their run through
        insert into schedule_ticks (schedule, tick_time, run_id)
        select e->>'schedule', (e->>'tick_time')::timestamptz, e->>'id' from src order by o
        on conflict do nothing
        returning run_id
      ), r as (
        insert into runs (id, status, trigger, selection, partition_range, parent_run_id, tags, priority, backfill_id, created_at)
        select e->>'id', e->>'status', e->>'trigger', e->>'selection', e->>'partition_range', e->>'parent_run_id', e->'tags',
               (e->>'priority')::int, e->>'backfill_id', now() + o * interval '1 microsecond'
        from src join g on g.run_id = src.e->>'id'
        returning *
      ), s as (
        insert into run_steps (run_id, asset, partition, seq, status, attempts, metadata, created_at)
        select r.id, x->>'asset', x->>'partition', (x->>'seq')::int, x->>'status', (x->>'attempts')::int, x->'metadata', r.created_at
        from src join r on r.id = src.e->>'id', jsonb_array_elements(src.e->'steps') as y(x)
      ), ev as (
        insert into events (run_id, type, level, message, data)
        select r.id, 'run_created', 'info', 'run created: ' || jsonb_array_length(src.e->'steps') || ' steps', src.e->'data'
        from r join src on src.e->>'id' = r.id
      )
      select r.*, src.o::text as o, case when r.status = 'queued' then pg_notify('floe_runs', r.id) end as notified
      from r join src on src.e->>'id' = r.id order by src.o`.execute(this.db);
    if (created.some((r) => r.status === "queued")) this.queued.dispatchEvent(new Event("run"));
    return created.map(toRun);
  }

  /**
   * Records a backfill and all its runs (each with its steps) in one statement. Backfill runs
   * get priority -1 unless `priority` is given, and they have their own lane in {@link claimRun}:
   * they never take the last run slot, so they never hold back manual or scheduled runs.
   *
   * @example
   * const b = await store.createBackfill({ selection: "+orders", from: "2025-01-01", to: "2025-03-31", policy: "per-partition", runs });
   */
  async createBackfill(b: { id?: string; selection: string; from: string; to: string; policy: string; runs: readonly NewRun[]; priority?: number }): Promise<BackfillRecord> {
    const id = b.id ?? randomUUID();
    const runs = b.runs.map((r) => ({
      id: r.id ?? randomUUID(),
      trigger: r.trigger,
      selection: r.selection ?? null,
      partition_range: r.partitionRange ?? null,
      parent_run_id: r.parentRunId ?? null,
      tags: { ...(r.tags ?? {}), "floe/backfill": id },
      steps: r.steps.map((x, i) => ({ asset: x.asset, partition: x.partition ?? "", seq: i + 1, status: x.status ?? "pending", attempts: x.attempts ?? 0, metadata: x.metadata ?? {} })),
    }));
    await sql`
      with b as (
        insert into backfills (id, selection, range_from, range_to, policy, status)
        values (${id}, ${b.selection}, ${b.from}, ${b.to}, ${b.policy}, 'running') returning id
      ), src as (
        select e, o from jsonb_array_elements(${json(runs)}::jsonb) with ordinality as t(e, o)
      ), r as (
        -- created_at a microsecond apart keeps the queue in partition order
        insert into runs (id, status, trigger, selection, partition_range, parent_run_id, tags, priority, backfill_id, created_at)
        select e->>'id', 'queued', e->>'trigger', e->>'selection', e->>'partition_range', e->>'parent_run_id', e->'tags', ${b.priority ?? BACKFILL_PRIORITY}::int, b.id,
               now() + o * interval '1 microsecond'
        from src, b
        returning id, created_at
      ), s as (
        insert into run_steps (run_id, asset, partition, seq, status, attempts, metadata, created_at)
        select r.id, x->>'asset', x->>'partition', (x->>'seq')::int, x->>'status', (x->>'attempts')::int, x->'metadata', r.created_at
        from src join r on r.id = src.e->>'id', jsonb_array_elements(src.e->'steps') as y(x)
      )
      insert into events (run_id, type, level, message)
      select r.id, 'run_created', 'info', 'run created by backfill ' || ${id} from r, lateral (select pg_notify('floe_runs', r.id)) n`.execute(this.db);
    this.queued.dispatchEvent(new Event("run"));
    return this.getBackfill(id);
  }

  /**
   * A backfill by id or unique prefix (4+ characters), with its runs' counts by status.
   *
   * @example
   * const b = await store.getBackfill("9c1e"); // { status: "running", runs: { queued: 40, success: 50 } … }
   */
  async getBackfill(idOrPrefix: string): Promise<BackfillRecord> {
    const { rows } = await sql<{ id: string; selection: string; range_from: string; range_to: string; policy: string; status: string; created_at: Date; matches: number }>`
      select *, (count(*) over ())::int as matches from backfills
      where id = ${idOrPrefix} or (length(${idOrPrefix}) >= 4 and starts_with(id, ${idOrPrefix}))
      order by (id = ${idOrPrefix}) desc limit 1`.execute(this.db);
    const row = rows[0];
    if (!row) throw new UserError(`unknown backfill \`${idOrPrefix}\``);
    if (row.matches > 1 && row.id !== idOrPrefix) throw new UserError(`backfill prefix \`${idOrPrefix}\` is ambiguous: matches ${row.matches} backfills`);
    const counts = await sql<{ status: string; n: number }>`select status, count(*)::int as n from runs where backfill_id = ${row.id} group by status`.execute(this.db);
    return {
      id: row.id, selection: row.selection, from: row.range_from, to: row.range_to, policy: row.policy, status: row.status, createdAt: row.created_at,
      runs: Object.fromEntries(counts.rows.map((c) => [c.status, c.n])),
    };
  }

  /**
   * The newest backfills with their runs' counts by status and the partitions of their failed
   * runs, in one query.
   *
   * @example
   * const [latest] = await store.listBackfills(10); // { runs: { success: 80, failed: 2 }, failedPartitions: ["2025-01-03"] … }
   */
  async listBackfills(limit = 20): Promise<Array<BackfillRecord & { failedPartitions: string[] }>> {
    const { rows } = await sql<{ id: string; selection: string; range_from: string; range_to: string; policy: string; status: string; created_at: Date; runs: Record<string, number> | null; failed: string[] | null }>`
      select b.id, b.selection, b.range_from, b.range_to, b.policy, b.status, b.created_at,
        (select jsonb_object_agg(status, n) from (select status, count(*)::int as n from runs where backfill_id = b.id group by status) c) as runs,
        (select array_agg(distinct coalesce(partition_range, '')) from runs where backfill_id = b.id and status = 'failed'
           and not exists (select 1 from runs r2 where r2.parent_run_id = runs.id)) as failed
      from (select * from backfills order by created_at desc, id desc limit ${limit}) b
      order by b.created_at desc, b.id desc`.execute(this.db);
    return rows.map((r) => ({
      id: r.id, selection: r.selection, from: r.range_from, to: r.range_to, policy: r.policy, status: r.status, createdAt: r.created_at,
      runs: r.runs ?? {}, failedPartitions: (r.failed ?? []).filter((p) => p !== "").sort(),
    }));
  }

  /** The runs of a backfill, oldest first. */
  async backfillRuns(id: string): Promise<RunRecord[]> {
    const rows = await this.db.selectFrom("runs").selectAll().where(sql<boolean>`backfill_id = ${id}`).orderBy("created_at").orderBy("id").execute();
    return rows.map(toRun);
  }

  /**
   * Sets a backfill's status; `canceled` also cancels its queued runs, in one statement. With
   * `unlessCanceled` a canceled backfill keeps its status (a driver settling a backfill that a
   * `floe backfill cancel` canceled meanwhile). Returns the status it has now.
   *
   * @example
   * await store.setBackfillStatus(b.id, "failed", { unlessCanceled: true }); // "canceled" if it was
   */
  async setBackfillStatus(id: string, status: "running" | "success" | "failed" | "canceled", opts: { unlessCanceled?: boolean } = {}): Promise<string | undefined> {
    const { rows } = await sql<{ status: string }>`
      with b as (
        update backfills set status = ${status}
        where id = ${id} and (not ${opts.unlessCanceled === true} or status <> 'canceled') returning id
      ), q as (
        update runs set status = 'canceled', ended_at = now()
        where ${status} = 'canceled' and backfill_id in (select id from b) and status = 'queued'
      )
      select coalesce((select ${status}::text from b), (select status from backfills where id = ${id})) as status`.execute(this.db);
    return rows[0]?.status ?? undefined;
  }

  /**
   * Settles a backfill whose runs are all done, whoever ran them: `success` when the run deciding
   * each partition succeeded, else `failed`. One statement; of processes settling at once, only
   * one changes the status, and it alone gets the status back (undefined for the others, and
   * while runs are still queued or running). A canceled backfill stays canceled; a failed one
   * turns `success` once recovered reruns succeeded.
   *
   * @example
   * const settled = await store.settleBackfill(run.backfillId); // "success": announce it
   */
  async settleBackfill(id: string): Promise<"success" | "failed" | undefined> {
    const { rows } = await sql<{ status: "success" | "failed" }>`
      with cur as (
        select status from runs r
        where backfill_id = ${id} and not exists (select 1 from runs c where c.parent_run_id = r.id and c.backfill_id = ${id})
      ), verdict as (
        select case when count(*) = 0 or count(*) filter (where status in ('queued', 'running')) > 0 then null
                    when count(*) filter (where status = 'success') = count(*) then 'success' else 'failed' end as s
        from cur
      )
      update backfills set status = (select s from verdict)
      where id = ${id} and (select s from verdict) is not null
        and (status = 'running' or (status = 'failed' and (select s from verdict) = 'success'))
      returning status`.execute(this.db);
    return rows[0]?.status;
  }

  /**
   * Progress of a backfill from the store, whoever executes its runs: the runs that decide each
   * partition (a rerun replaces its parent) by status, and their total.
   *
   * @example
   * const { total, runs } = await store.backfillProgress(b.id); // { total: 10, runs: { success: 4, running: 2, queued: 4 } }
   */
  async backfillProgress(id: string): Promise<{ total: number; runs: Record<string, number> }> {
    const { rows } = await sql<{ status: string; n: number }>`
      select status, count(*)::int as n from runs r
      where backfill_id = ${id} and not exists (select 1 from runs c where c.parent_run_id = r.id and c.backfill_id = ${id})
      group by status`.execute(this.db);
    return { total: rows.reduce((a, r) => a + r.n, 0), runs: Object.fromEntries(rows.map((r) => [r.status, r.n])) };
  }

  /**
   * The backfills among `ids` that are canceled, in one query.
   *
   * @example
   * const canceled = await store.canceledBackfills(dead.map((r) => r.backfillId!));
   */
  async canceledBackfills(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const { rows } = await sql<{ id: string }>`select id from backfills where id = any(${[...new Set(ids)]}::text[]) and status = 'canceled'`.execute(this.db);
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Takes a free slot of `pool` (at most `limit` held at once, by any process) for a step; a slot
   * whose run is no longer running is free again. Returns the slot, or undefined when all are taken.
   *
   * @example
   * const slot = await store.acquirePoolSlot("warehouse", 2, run.id, "orders[2025-01-01]");
   */
  async acquirePoolSlot(pool: string, limit: number, runId: string, step: string): Promise<number | undefined> {
    const take = async (): Promise<number | undefined> => {
      const { rows } = await sql<{ slot: number }>`
        update pool_slots set run_id = ${runId}, step = ${step}, acquired_at = now()
        where (pool, slot) = (
          select pool, slot from pool_slots s
          where pool = ${pool} and slot < ${limit}
            and (run_id is null or not exists (select 1 from runs r where r.id = s.run_id and r.status = 'running'))
          order by slot limit 1 for update skip locked)
        returning slot`.execute(this.db);
      return rows[0]?.slot;
    };
    const slot = await take();
    if (slot !== undefined) return slot;
    // A pool's slots are rows created on first use (or when its limit grows).
    const { numAffectedRows } = await sql`insert into pool_slots (pool, slot) select ${pool}, g from generate_series(0, ${limit - 1}) g on conflict do nothing`.execute(this.db);
    return Number(numAffectedRows ?? 0) > 0 ? take() : undefined;
  }

  /** Frees a slot taken with {@link acquirePoolSlot}. */
  async releasePoolSlot(pool: string, slot: number): Promise<void> {
    await sql`update pool_slots set run_id = null, step = null, acquired_at = null where pool = ${pool} and slot = ${slot}`.execute(this.db);
  }

  /**
   * Deletes events older than `days` days (the event log's retention); returns how many.
   *
   * @example
   * await store.pruneEvents(30);
   */
  async pruneEvents(days: number): Promise<number> {
    const r = await sql`delete from events where created_at < now() - make_interval(days => ${days})`.execute(this.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /** The latest recorded tick of each schedule. */
  async lastTicks(): Promise<Map<string, Date>> {
    const { rows } = await sql<{ schedule: string; tick_time: Date }>`select schedule, max(tick_time) as tick_time from schedule_ticks group by schedule`.execute(this.db);
    return new Map(rows.map((r) => [r.schedule, r.tick_time]));
  }

  /**
   * Writes run and step transitions, events and materializations in one set-based statement
   * (one transaction, one round trip). Several updates of one step or run merge, later fields
   * winning; of two materializations of one asset partition the newer is kept, here and against
   * the stored one. With `retry` (the same batch again, after a try whose outcome was lost with
   * its connection) an event already stored as it is (run, step, type, level, message, data and
   * time) is not inserted twice; the other writes set values, so they apply twice the same.
   * Fenced: transitions and materializations of a run that has ended (failed by another process
   * that found it dead) are not applied, so a late executor cannot overwrite the outcome.
   *
   * @example
   * await store.writeBatch({
   *   steps: [{ runId, asset: "orders", partition: null, status: "success", endedAt: new Date() }],
   *   events: [{ runId, asset: "orders", type: "step_success", message: "orders: success" }],
   *   materializations: [{ asset: "orders", partition: null, runId, materializedAt: new Date(), codeVersion: null, dataVersion: null, metadata: { rows: 10 } }],
   * });
   */
  async writeBatch(batch: WriteBatch, opts: { retry?: boolean } = {}): Promise<void> {
    const runs = mergeBy(batch.runs ?? [], (r) => r.id);
    const steps = mergeBy(batch.steps ?? [], stepKey);
    const events = batch.events ?? [];
    const mats = new Map<string, NewMaterialization>();
    for (const m of batch.materializations ?? []) {
      const k = `${m.asset}\u0000${m.partition ?? ""}`;
      const prev = mats.get(k);
      if (!prev || prev.materializedAt <= m.materializedAt) mats.set(k, m);
    }
    const parts: RawBuilder<unknown>[] = [];
    if (runs.length > 0) {
      parts.push(sql`r as (
        update runs u set
          status = coalesce(e->>'status', u.status),
          started_at = coalesce((e->>'startedAt')::timestamptz, u.started_at),
          ended_at = coalesce((e->>'endedAt')::timestamptz, u.ended_at),
          error = case when e ? 'error' then e->>'error' else u.error end
        from jsonb_array_elements(${json(runs)}::jsonb) e
        -- fenced: a run that has ended (failed as dead by another process, say) keeps its outcome,
        -- whatever its former executor writes later
        where u.id = e->>'id' and u.id = any(${runs.map((r) => r.id)}::text[]) and u.status in ('queued', 'running'))`); // any(): lets the planner use the index
    }
    if (steps.length > 0) {
      parts.push(sql`s as (
        update run_steps u set
          status = e->>'status',
          attempts = coalesce((e->>'attempts')::int, u.attempts),
          started_at = coalesce((e->>'startedAt')::timestamptz, u.started_at),
          ended_at = coalesce((e->>'endedAt')::timestamptz, u.ended_at),
          error = case when e ? 'error' then e->>'error' else u.error end,
          metadata = case when jsonb_typeof(e->'metadata') = 'object' then e->'metadata' else u.metadata end
        from jsonb_array_elements(${json(steps)}::jsonb) e, runs r
        where u.run_id = e->>'runId' and u.asset = e->>'asset' and u.partition = coalesce(e->>'partition', '')
          and r.id = u.run_id and r.status in ('queued', 'running'))`);
    }
    if (events.length > 0) {
      parts.push(sql`ev as (
        insert into events (run_id, asset, partition, type, level, message, data, created_at)
        select e->>'runId', e->>'asset', e->>'partition', e->>'type', coalesce(e->>'level', 'info'), e->>'message',
               nullif(e->'data', 'null'::jsonb), coalesce((e->>'at')::timestamptz, now())
        from jsonb_array_elements(${json(events)}::jsonb) with ordinality as t(e, o)
        ${opts.retry ? sql`where e->>'at' is null or not exists (select 1 from events x where x.run_id = e->>'runId' and x.created_at = (e->>'at')::timestamptz
          and x.type = e->>'type' and x.message = e->>'message' and x.level = coalesce(e->>'level', 'info')
          and x.asset is not distinct from e->>'asset' and x.partition is not distinct from e->>'partition'
          and x.data is not distinct from nullif(e->'data', 'null'::jsonb))` : sql``}
        order by o)`);
    }
    if (mats.size > 0) {
      parts.push(sql`m as (
        insert into asset_partitions as a (asset, partition, last_run_id, materialized_at, code_version, data_version, metadata)
        select e->>'asset', coalesce(e->>'partition', ''), e->>'runId', (e->>'materializedAt')::timestamptz,
               e->>'codeVersion', e->>'dataVersion', coalesce(e->'metadata', '{}')
        from jsonb_array_elements(${json([...mats.values()])}::jsonb) e
        -- a run that has ended (failed as dead) records no materialization any more
        where exists (select 1 from runs r where r.id = e->>'runId' and r.status in ('queued', 'running'))
        on conflict (asset, partition) do update set
          last_run_id = excluded.last_run_id, materialized_at = excluded.materialized_at, code_version = excluded.code_version,
          data_version = excluded.data_version, metadata = excluded.metadata
        where a.materialized_at <= excluded.materialized_at)`);
    }
    if (parts.length === 0) return;
    // live views (the TUI) hear of state changes at once, in this process and through NOTIFY
    const tell = runs.length > 0 || steps.length > 0;
    await sql`with ${sql.join(parts)} select ${tell ? sql`pg_notify('floe_state', '')` : sql`1`}`.execute(this.db);
    if (tell) this.changed.dispatchEvent(new Event("change"));
  }

  /**
   * A run by exact id or by a unique prefix of at least 4 characters.
   *
   * @example
   * const run = await store.getRun("3f2a9c1e");
   */
  async getRun(idOrPrefix: string): Promise<RunRecord> {
    const exact = await this.db.selectFrom("runs").selectAll().where("id", "=", idOrPrefix).executeTakeFirst();
    if (exact) return toRun(exact);
    if (idOrPrefix.length >= 4) {
      const { rows } = await sql<Selectable<RunsTable> & { matches: number }>`
        select *, (count(*) over ())::int as matches from runs where starts_with(id, ${idOrPrefix}) limit 1`.execute(this.db);
      const row = rows[0];
      if (row && row.matches > 1) throw new UserError(`run prefix \`${idOrPrefix}\` is ambiguous: matches ${row.matches} runs`);
      if (row) return toRun(row);
    }
    throw new UserError(`unknown run \`${idOrPrefix}\`${idOrPrefix.length < 4 ? " (a run id prefix needs at least 4 characters)" : ""}`);
  }

  /**
   * Runs, newest first; all of them unless `limit` is given.
   *
   * @example
   * const active = await store.listRuns({ status: ["queued", "running"], limit: 20 });
   */
  async listRuns(opts: { limit?: number; status?: readonly RunStatus[] } = {}): Promise<RunRecord[]> {
    let q = this.db.selectFrom("runs").selectAll().orderBy("created_at", "desc").orderBy("id", "desc");
    if (opts.status) q = q.where("status", "=", anyOf(opts.status));
    if (opts.limit !== undefined) q = q.limit(opts.limit);
    return (await q.execute()).map(toRun);
  }

  /**
   * Claims the next queued run (highest priority, then oldest) for `worker`: one statement with
   * `FOR UPDATE SKIP LOCKED`, so any number of workers never claim a run twice.
   *
   * Backfill runs have their own lane: with `backfills: false` none is claimed (a worker whose
   * other slots hold backfill runs keeps its last slot for other runs), and under `maxRunning`
   * backfill runs take at most `max(1, maxRunning - 1)` of the cap, so a manual or scheduled run
   * always finds room.
   *
   * @example
   * const run = await store.claimRun("host:1234");
   * const manualOnly = await store.claimRun("host:1234", { backfills: false, maxRunning: 4 });
   */
  async claimRun(worker: string, opts: { backfillId?: string; maxRunning?: number; backfills?: boolean } = {}): Promise<RunRecord | undefined> {
    const only = opts.backfillId === undefined ? sql`true` : sql`backfill_id = ${opts.backfillId}`;
    const lane = opts.backfills === false
      ? sql`backfill_id is null`
      : opts.maxRunning === undefined
        ? sql`true`
        : sql`(backfill_id is null or (select count(*) from runs where status = 'running' and backfill_id is not null) < ${Math.max(1, opts.maxRunning - 1)})`;
    const claim = (db: Kysely<Database>) => sql<Selectable<RunsTable>>`
      update runs set status = 'running', worker = ${worker}, heartbeat_at = now(), started_at = coalesce(started_at, now())
      where id = (select id from runs where status = 'queued' and ${only} and ${lane} order by priority desc, created_at, id limit 1 for update skip locked)
        and ${opts.maxRunning === undefined ? sql`true` : sql`(select count(*) from runs where status = 'running') < ${opts.maxRunning}`}
      returning *`.execute(db);
    if (opts.maxRunning === undefined) {
      const { rows } = await claim(this.db);
      return rows[0] ? toRun(rows[0]) : undefined;
    }
    // With a cap, claims take turns: the lock comes first, so the count is read after it.
    return this.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${CLAIM_LOCK})`.execute(trx);
      const { rows } = await claim(trx);
      return rows[0] ? toRun(rows[0]) : undefined;
    });
  }

  /**
   * Takes a run for `worker` before executing it, atomically: a queued run becomes running with
   * this worker (heartbeating from now); a run already running with this worker (claimed from the
   * queue, or created with its worker) is confirmed. Returns false when the run is not this
   * worker's to execute: another process holds it, or it has ended.
   *
   * @example
   * if (!(await store.adoptRun(run.id, "host:1234"))) throw new Error("taken by another process");
   */
  async adoptRun(runId: string, worker: string): Promise<boolean> {
    const { rows } = await sql<{ id: string }>`update runs set status = 'running', worker = ${worker}, heartbeat_at = now(), started_at = coalesce(started_at, now())
      where id = ${runId} and (status = 'queued' or (status = 'running' and worker = ${worker}))
      returning id`.execute(this.db);
    return rows.length > 0;
  }

  /** Who holds a run and in which status, for saying why it cannot be executed. */
  async runOwner(runId: string): Promise<{ status: RunStatus; worker: string | null } | undefined> {
    const { rows } = await sql<{ status: RunStatus; worker: string | null }>`select status, worker from runs where id = ${runId}`.execute(this.db);
    return rows[0];
  }

  /** Whether any run (of a backfill, if given) waits in the queue. */
  async hasQueued(backfillId?: string): Promise<boolean> {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from (select 1 from runs where status = 'queued'
      and ${backfillId === undefined ? sql`true` : sql`backfill_id = ${backfillId}`} limit 1) q`.execute(this.db);
    return (rows[0]?.n ?? 0) > 0;
  }

  /**
   * Records that `worker` is alive and still executing `runIds`.
   *
   * @example
   * await store.heartbeat("host:1234", [run.id]);
   */
  async heartbeat(worker: string, runIds: readonly string[]): Promise<void> {
    if (runIds.length === 0) return;
    await this.db.updateTable("runs").set({ heartbeat_at: sql`now()` }).where("worker", "=", worker).where("id", "=", anyOf(runIds)).where("status", "=", "running").execute();
  }

  /**
   * Fails the running runs whose worker has not heartbeated for `timeoutMs`: their running steps
   * fail and their pending steps are skipped, in one statement. Returns the runs it failed.
   *
   * @example
   * const dead = await store.failStaleRuns(15_000);
   */
  async failStaleRuns(timeoutMs: number, deadWorkers: readonly string[] = []): Promise<RunRecord[]> {
    const { rows } = await sql<Selectable<RunsTable>>`
      with dead as (
        update runs set status = 'failed', ended_at = now(),
          error = 'worker ' || coalesce(worker, '?') || case when worker = any(${[...deadWorkers]}::text[]) then ' is gone (its process exited)' else ' stopped heartbeating' end
        where status = 'running' and (heartbeat_at < now() - make_interval(secs => ${timeoutMs / 1000}) or worker = any(${[...deadWorkers]}::text[]))
        returning *
      ), steps as (
        update run_steps set
          status = case when run_steps.status = 'running' then 'failed' else 'skipped' end,
          error = case when run_steps.status = 'running' then 'its worker stopped heartbeating' else run_steps.error end,
          ended_at = now()
        from dead where run_steps.run_id = dead.id and run_steps.status in ('running', 'pending')
        returning run_steps.run_id
      ), events as (
        insert into events (run_id, type, level, message)
        select id, 'run_failed', 'error', 'run failed: ' || error from dead
        returning run_id
      )
      select dead.* from dead`.execute(this.db);
    return rows.map(toRun);
  }

  /**
   * The workers (`<host>:<pid>`) of running runs whose id starts with `prefix` (this host's), for
   * finding the ones whose process is gone.
   *
   * @example
   * const mine = await store.runningWorkers(`${hostname()}:`);
   */
  async runningWorkers(prefix: string): Promise<string[]> {
    const { rows } = await sql<{ worker: string }>`select distinct worker from runs
      where status = 'running' and worker is not null and starts_with(worker, ${prefix})`.execute(this.db);
    return rows.map((r) => r.worker);
  }

  /**
   * Milliseconds until the running run with the oldest heartbeat goes stale under `timeoutMs`
   * (0 if it already is); undefined when nothing runs. An idle worker sleeps until then, so a dead
   * worker's run is failed within `timeoutMs` plus one short wake-up, not a whole poll later.
   *
   * @example
   * const ms = await store.msUntilStale(15_000); // e.g. 9_800
   */
  async msUntilStale(timeoutMs: number): Promise<number | undefined> {
    const { rows } = await sql<{ ms: number | null }>`
      select (extract(epoch from min(heartbeat_at) + make_interval(secs => ${timeoutMs / 1000}) - now()) * 1000)::float8 as ms
      from runs where status = 'running'`.execute(this.db);
    const ms = rows[0]?.ms;
    return ms === null || ms === undefined ? undefined : Math.max(0, Number(ms));
  }

  /**
   * Counts for metrics and health, in one round trip: runs by status and trigger, steps by
   * asset and status, the queue depth, and the age of the stalest heartbeat of a running run.
   *
   * @example
   * const { queueDepth } = await store.summary();
   */
  async summary(): Promise<StoreSummary> {
    const { rows } = await sql<{ kind: string; a: string | null; b: string | null; n: string }>`
      select 'run' as kind, status as a, trigger as b, count(*)::text as n from runs group by status, trigger
      union all select 'step', asset, status, count(*)::text from run_steps group by asset, status
      union all select 'heartbeat', null, null, coalesce(extract(epoch from now() - min(heartbeat_at)), 0)::text from runs where status = 'running'`.execute(this.db);
    const out: StoreSummary = { runs: [], steps: [], queueDepth: 0, stalestHeartbeatSeconds: 0 };
    for (const r of rows) {
      if (r.kind === "run") {
        out.runs.push({ status: r.a!, trigger: r.b!, count: Number(r.n) });
        if (r.a === "queued") out.queueDepth += Number(r.n);
      } else if (r.kind === "step") out.steps.push({ asset: r.a!, status: r.b!, count: Number(r.n) });
      else out.stalestHeartbeatSeconds = Number(r.n);
    }
    return out;
  }

  /** Round trip to the database; throws when it is unreachable. */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  /**
   * The steps of a run, in plan order.
   *
   * @example
   * const failed = (await store.getSteps(run.id)).filter((s) => s.status === "failed");
   */
  async getSteps(runId: string): Promise<StepRecord[]> {
    const rows = await this.db.selectFrom("run_steps").selectAll().where("run_id", "=", runId).orderBy("seq").orderBy("asset").orderBy("partition").execute();
    return rows.map(toStep);
  }

  /**
   * The steps of many runs in one query, by run id (each list in plan order).
   *
   * @example
   * const steps = await store.getStepsOfRuns(runs.map((r) => r.id));
   */
  async getStepsOfRuns(runIds: readonly string[]): Promise<Map<string, StepRecord[]>> {
    const out = new Map<string, StepRecord[]>(runIds.map((id) => [id, []]));
    if (runIds.length === 0) return out;
    const rows = await this.db.selectFrom("run_steps").selectAll().where("run_id", "=", anyOf(runIds)).orderBy("run_id").orderBy("seq").orderBy("asset").orderBy("partition").execute();
    for (const r of rows) out.get(r.run_id)?.push(toStep(r));
    return out;
  }

  /**
   * A run's events in the order they were written; `afterId` and `limit` page through them.
   *
   * @example
   * const next = await store.getEvents(run.id, { afterId: last.id, limit: 100 });
   */
  async getEvents(runId: string, opts: { limit?: number; afterId?: number } = {}): Promise<EventRecord[]> {
    let q = this.db.selectFrom("events").selectAll().where("run_id", "=", runId).orderBy("id");
    if (opts.afterId !== undefined) q = q.where("id", ">", String(opts.afterId));
    if (opts.limit !== undefined) q = q.limit(opts.limit);
    return (await q.execute()).map(toEvent);
  }

  /**
   * The latest materialization of each asset partition, of `assets` or of all assets.
   *
   * @example
   * const mats = await store.latestMaterializations(["orders", "lake.orders"]);
   */
  async latestMaterializations(assets?: readonly string[]): Promise<MaterializationRecord[]> {
    if (assets?.length === 0) return [];
    let q = this.db.selectFrom("asset_partitions").selectAll().orderBy("asset").orderBy("partition");
    if (assets) q = q.where("asset", "=", anyOf(assets));
    return (await q.execute()).map(toMaterialization);
  }

  /**
   * The latest step of each asset partition (of the newest run that has one), of `assets` or all;
   * with `keys`, only of those asset partitions (one query, on the (asset, partition) index).
   *
   * @example
   * const running = (await store.latestStepStates(["orders"])).filter((s) => s.status === "running");
   * const two = await store.latestStepStates(undefined, [{ asset: "orders", partition: "2025-01-01" }, { asset: "orders", partition: "2025-01-02" }]);
   */
  async latestStepStates(assets?: readonly string[], keys?: ReadonlyArray<{ asset: string; partition: string | null }>): Promise<StepStateRecord[]> {
    if (assets?.length === 0 || keys?.length === 0) return [];
    let q = this.db
      .selectFrom("run_steps")
      .distinctOn(["asset", "partition"])
      .select(["asset", "partition", "run_id", "status"])
      .select(sql<Date>`coalesce(ended_at, started_at, created_at)`.as("at"))
      .orderBy("asset")
      .orderBy("partition")
      .orderBy("created_at", "desc") // the run's creation time
      .orderBy(sql`started_at desc nulls last`)
      .orderBy("run_id", "desc");
    if (assets) q = q.where("asset", "=", anyOf(assets));
    if (keys) {
      q = q.where(sql<boolean>`(asset, partition) in (select * from unnest(${keys.map((k) => k.asset)}::text[], ${keys.map((k) => k.partition ?? "")}::text[]))`);
    }
    return (await q.execute()).map((r) => ({
      asset: r.asset,
      partition: partitionOf(r.partition),
      runId: r.run_id,
      status: r.status as StepStatus,
      at: r.at,
    }));
  }

  /**
   * Takes a named lock that every process sharing the store respects, and holds it until
   * `release()`: on PostgreSQL a session advisory lock on a connection of its own (so a process
   * that dies frees it with its connection), embedded a lock of this process (the only one using
   * the store). While the lock is busy it polls (100 ms doubling to 1 s); each time it asks
   * `giveUp()`, and when that answers true (its holder looks dead but its connection lingers, say)
   * it returns without the lock: `held` is false. An aborted `signal` stops the wait likewise.
   *
   * @example
   * const lock = await store.holdLock("raw_orders/2025-01-01", { giveUp: async () => false });
   * try { … } finally { await lock.release(); }
   */
  async holdLock(name: string, opts: { signal?: AbortSignal; giveUp?: () => Promise<boolean> } = {}): Promise<{ held: boolean; release(): Promise<void> }> {
    const waitMs = (n: number): number => Math.min(1_000, 100 * 2 ** Math.min(n, 4));
    const stop = async (): Promise<boolean> => opts.signal?.aborted === true || ((await opts.giveUp?.()) ?? false);
    if (this.engine !== "postgres" || this.url === undefined) {
      for (let n = 0; this.localLocks.has(name); n++) {
        if (await stop()) return { held: false, release: async () => undefined };
        await sleepMs(waitMs(n));
      }
      this.localLocks.add(name);
      return { held: true, release: async () => void this.localLocks.delete(name) };
    }
    const client = new pg.Client({ connectionString: this.url, application_name: "floe lock", connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: PG_KEEPALIVE_DELAY_MS });
    client.on("error", () => undefined); // a lost lock connection frees the lock; the holder's work stays exactly-once
    await client.connect();
    try {
      for (let n = 0; ; n++) {
        const { rows } = await client.query<{ ok: boolean }>("select pg_try_advisory_lock(hashtextextended($1, 0)) as ok", [name]);
        if (rows[0]?.ok === true) break;
        if (await stop()) {
          await client.end().catch(() => undefined);
          return { held: false, release: async () => undefined };
        }
        await sleepMs(waitMs(n));
      }
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    return { held: true, release: () => client.end().catch(() => undefined) };
  }

  /** Locks of {@link holdLock} held in this process on an embedded store. */
  private readonly localLocks = new Set<string>();

  /**
   * Closes the connections (and, embedded, PGlite and its lock). Idempotent.
   *
   * @example
   * await store.close();
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.db.destroy();
    } finally {
      this.lock?.release();
    }
  }
}

const INT8_OID = 20;

/** `= any($1::text[])`: one array parameter instead of one parameter per value. */
const anyOf = (values: readonly string[]): RawBuilder<string> => sql<string>`any(${[...values]}::text[])`;

function first<T>(rows: readonly T[]): T {
  const row = rows[0];
  if (row === undefined) throw new Error("expected a row");
  return row;
}

/** Merges updates with the same key, later defined fields winning, keeping first-seen order. */
function mergeBy<T extends object>(items: readonly T[], key: (t: T) => string): T[] {
  const out = new Map<string, T>();
  for (const item of items) {
    const k = key(item);
    const prev = out.get(k);
    const defined = Object.fromEntries(Object.entries(item).filter(([, v]) => v !== undefined)) as Partial<T>;
    out.set(k, prev ? { ...prev, ...defined } : item);
  }
  return [...out.values()];
}

function toRun(r: Selectable<RunsTable>): RunRecord {
  return {
    id: r.id,
    status: r.status as RunStatus,
    trigger: r.trigger,
    selection: r.selection,
    partitionRange: r.partition_range,
    parentRunId: r.parent_run_id,
    backfillId: (r as { backfill_id?: string | null }).backfill_id ?? null,
    priority: r.priority,
    tags: r.tags,
    error: r.error,
    createdAt: r.created_at,
    startedAt: r.started_at,
    endedAt: r.ended_at,
  };
}

function toStep(r: Selectable<RunStepsTable>): StepRecord {
  return {
    runId: r.run_id,
    asset: r.asset,
    partition: partitionOf(r.partition),
    status: r.status as StepStatus,
    attempts: r.attempts,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    error: r.error,
    metadata: r.metadata,
  };
}

function toEvent(r: Selectable<EventsTable>): EventRecord {
  return {
    id: Number(r.id),
    runId: r.run_id,
    asset: r.asset,
    partition: partitionOf(r.partition),
    type: r.type,
    level: r.level as EventLevel,
    message: r.message,
    data: r.data,
    createdAt: r.created_at,
  };
}

function toMaterialization(r: Selectable<AssetPartitionsTable>): MaterializationRecord {
  return {
    asset: r.asset,
    partition: partitionOf(r.partition),
    runId: r.last_run_id,
    materializedAt: r.materialized_at,
    codeVersion: r.code_version,
    dataVersion: r.data_version,
    metadata: r.metadata,
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

interface PgTarget {
  host: string;
  port: string;
  database: string;
  user: string;
}

/**
 * `url` with any password replaced by `***`, also when it does not parse as a URL.
 *
 * @example
 * redactUrl("postgres://floe:s3cret@db:5432/floe"); // "postgres://floe:***@db:5432/floe"
 */
export function redactUrl(url: string): string {
  let out = url.replace(/([?&](?:password|sslpassword)=)[^&]*/gi, "$1***");
  const at = out.lastIndexOf("@");
  if (at < 0) return out;
  const slashes = out.indexOf("//");
  const colon = out.indexOf(":", slashes >= 0 && slashes < at ? slashes + 2 : 0);
  if (colon >= 0 && colon < at) out = `${out.slice(0, colon + 1)}***${out.slice(at)}`;
  return out;
}

/** How long opening a PostgreSQL connection may take before it fails (and is retried by its caller). */
const PG_CONNECT_TIMEOUT_MS = 5_000;
const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Idle time of a PostgreSQL connection before TCP keepalive probes start. */
const PG_KEEPALIVE_DELAY_MS = 10_000;

function parsePgUrl(url: string): PgTarget {
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== "postgres:" && u.protocol !== "postgresql:")) {
    throw new UserError(`FLOE_DATABASE_URL is not a postgres:// URL: ${redactUrl(url)}`);
  }
  return {
    host: u.searchParams.get("host") ?? (u.hostname || "localhost"),
    port: u.port || "5432",
    database: decodeURIComponent(u.pathname.replace(/^\//, "")) || decodeURIComponent(u.username) || "postgres",
    user: decodeURIComponent(u.username) || "postgres",
  };
}

async function openPostgres(url: string, migrations: readonly Migration[], owner = "floe"): Promise<Kysely<Database>> {
  const target = parsePgUrl(url);
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8_OID, (v: string) => v); // the default, whatever another library set globally
  // keepAlive: a connection to a server that vanished without a word (a network cut) errors out
  // instead of waiting forever; a refused or slow connect fails after 5 s and is retried by callers.
  const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: PG_KEEPALIVE_DELAY_MS, application_name: owner, types });
  pool.on("error", () => {}); // an idle client lost its connection: the pool drops it, the next query reconnects
  // A client in use whose connection drops between two queries (or after the failed one) emits
  // "error" with no listener of the pool's: without this one, that would crash the process.
  // The query in flight fails on its own, and the pool discards the client when it comes back.
  pool.on("connect", (client) => client.on("error", () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db, migrations, `PostgreSQL at ${target.host}:${target.port}/${target.database}`);
  } catch (e) {
    await db.destroy().catch(() => {});
    throw connectionError(e, target) ?? e;
  }
  return db;
}

/** A one-line UserError for a failure to connect, or undefined for any other error. */
function connectionError(e: unknown, t: PgTarget): UserError | undefined {
  if (!(e instanceof Error)) return undefined;
  const at = `${t.host}:${t.port}`;
  const inner = e instanceof AggregateError ? e.errors.find((x): x is Error => x instanceof Error) : undefined;
  const code = errorCode(e) ?? errorCode(inner);
  const network = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET", "ENOENT"];
  if (code !== undefined && network.includes(code)) {
    return new UserError(`cannot reach PostgreSQL at ${at} (${code}); is it running? check FLOE_DATABASE_URL`);
  }
  if (/connection timeout|timeout expired/i.test(e.message)) {
    return new UserError(`cannot reach PostgreSQL at ${at} (timed out after ${PG_CONNECT_TIMEOUT_MS / 1000} s); is it running? check FLOE_DATABASE_URL`);
  }
  if (/^Connection terminated unexpectedly/.test(e.message)) {
    return new UserError(`cannot reach PostgreSQL at ${at} (the connection was closed); is it running? check FLOE_DATABASE_URL`);
  }
  if (code === "3D000") {
    return new UserError(`PostgreSQL at ${at} has no database \`${t.database}\`; create it (createdb ${t.database}) or check FLOE_DATABASE_URL`);
  }
  if (code === "28P01" || code === "28000" || /^SASL|password/i.test(e.message)) {
    return new UserError(`PostgreSQL at ${at} rejected user \`${t.user}\` (${oneLine(e.message)}); check FLOE_DATABASE_URL`);
  }
  return undefined;
}

function errorCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

const oneLine = (s: string): string => s.split("\n")[0]!.trim();
