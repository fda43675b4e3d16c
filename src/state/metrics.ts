import { sql } from "kysely";
import { deliveryTotals, type DeliveryCount } from "./deliveries.js";
import type { StateStore } from "./store.js";

/** Upper bounds (seconds) of the step duration histogram's buckets. */
export const STEP_DURATION_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600] as const;

/** What `/metrics` reads from the state store at each scrape, so it covers every process sharing it. */
export interface StoreMetrics {
  /** Finished steps (success or failed) per asset and status: count, total seconds, and cumulative counts per {@link STEP_DURATION_BUCKETS}. */
  stepDurations: Array<{ asset: string; status: string; count: number; sum: number; buckets: number[] }>;
  /** Per asset, the sums over successful steps of metadata `rows` and `icebergCommitRetries`. */
  written: Array<{ asset: string; rows: number; icebergCommitRetries: number }>;
  /** Raw files in the ledger per source asset and status. */
  files: Array<{ asset: string; status: string; count: number }>;
  /** Backfill partitions by the state of the run that decides them (a rerun supersedes its parent). */
  backfillPartitions: Array<{ state: string; count: number }>;
  /** Per schedule, its latest tick's delay: run start (or now, while queued) minus tick time. */
  tickDelays: Array<{ schedule: string; seconds: number }>;
  /** Notification delivery outcomes counted by every process. */
  deliveries: DeliveryCount[];
}

/**
 * Reads the metrics that live in the state store: set-based aggregates, one statement each,
 * none with an unbounded label (assets, statuses and schedule names only).
 *
 * @example
 * const { written } = await readStoreMetrics(store); // [{ asset: "orders", rows: 1200, icebergCommitRetries: 0 }]
 */
export async function readStoreMetrics(store: StateStore): Promise<StoreMetrics> {
  const db = store.db;
  const buckets = sql.raw(STEP_DURATION_BUCKETS.map((b) => `count(*) filter (where d <= ${b})::int`).join(", "));
  const [durations, written, files, backfills, ticks, deliveries] = await Promise.all([
    sql<{ asset: string; status: string; n: number; s: number; b: number[] }>`
      select asset, status, count(*)::int as n, coalesce(sum(d), 0)::float8 as s, array[${buckets}] as b
      from (select asset, status, extract(epoch from ended_at - started_at)::float8 as d from run_steps
            where status in ('success', 'failed') and started_at is not null and ended_at is not null) x
      group by asset, status order by asset, status`.execute(db),
    sql<{ asset: string; rows: number; retries: number }>`
      select asset,
        coalesce(sum(case when jsonb_typeof(metadata->'rows') = 'number' then (metadata->>'rows')::float8 end), 0)::float8 as rows,
        coalesce(sum(case when jsonb_typeof(metadata->'icebergCommitRetries') = 'number' then (metadata->>'icebergCommitRetries')::float8 end), 0)::float8 as retries
      from run_steps where status = 'success' group by asset order by asset`.execute(db),
    sql<{ asset: string; status: string; n: number }>`
      select source as asset, status, count(*)::int as n from processed_files group by source, status order by source, status`.execute(db),
    sql<{ state: string; n: number }>`
      select r.status as state, count(distinct (r.backfill_id, s.partition))::int as n
      from runs r join run_steps s on s.run_id = r.id
      where r.backfill_id is not null
        and not exists (select 1 from runs c where c.parent_run_id = r.id and c.backfill_id = r.backfill_id)
      group by r.status order by r.status`.execute(db),
    sql<{ schedule: string; seconds: number | null }>`
      select distinct on (t.schedule) t.schedule,
        extract(epoch from coalesce(r.started_at, case when r.status = 'queued' then now() end) - t.tick_time)::float8 as seconds
      from schedule_ticks t left join runs r on r.id = t.run_id
      where t.schedule not like 'sensor:%'
      order by t.schedule, t.tick_time desc`.execute(db),
    deliveryTotals(store),
  ]);
  return {
    stepDurations: durations.rows.map((r) => ({ asset: r.asset, status: r.status, count: r.n, sum: r.s, buckets: r.b.map(Number) })),
    written: written.rows.map((r) => ({ asset: r.asset, rows: r.rows, icebergCommitRetries: r.retries })),
    files: files.rows.map((r) => ({ asset: r.asset, status: r.status, count: r.n })),
    backfillPartitions: backfills.rows.map((r) => ({ state: r.state, count: r.n })),
    tickDelays: ticks.rows.filter((r) => r.seconds !== null).map((r) => ({ schedule: r.schedule, seconds: Math.max(0, r.seconds!) })),
    deliveries,
  };
}

/**
 * Raw files that a run left FAILED in the ledger, per source asset and partition, among
 * `assets`: what a step that failed on its files no longer reports in its metadata.
 *
 * @example
 * await failedFilesOfRun(store, run.id, ["raw_orders"]); // [{ asset: "raw_orders", partition: "2025-01-01", count: 2 }]
 */
export async function failedFilesOfRun(store: StateStore, runId: string, assets: readonly string[]): Promise<Array<{ asset: string; partition: string | null; count: number }>> {
  if (assets.length === 0) return [];
  const { rows } = await sql<{ asset: string; partition: string; n: number }>`
    select source as asset, partition, count(*)::int as n from processed_files
    where source in (${sql.join(assets)}) and run_id = ${runId} and status = 'FAILED'
    group by source, partition order by source, partition`.execute(store.db);
  return rows.map((r) => ({ asset: r.asset, partition: r.partition === "" ? null : r.partition, count: r.n }));
}
