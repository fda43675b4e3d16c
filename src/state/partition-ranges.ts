import { sql, type RawBuilder } from "kysely";
import type { StateStore } from "./store.js";

/** A run of consecutive time partitions of one asset in one status. */
export interface PartitionIsland {
  status: "materialized" | "stale" | "failed" | "running";
  count: number;
  /** Ordinals of the first and last key (see `keyOrdinal` in src/dag/partitions.ts). */
  first: number;
  last: number;
}

export interface IslandQuery {
  asset: string;
  unit: "daily" | "hourly" | "monthly";
  /** Only keys whose ordinal is in [lo, hi]. */
  lo: number;
  hi: number;
  /** When set, a materialization of another code version is stale. */
  codeVersion?: string;
  /** Upstream assets read partition for partition (identity): a newer one makes a key stale. */
  identityParents?: readonly string[];
}

/** SQL for a key's ordinal; the same axis as `keyOrdinal`. */
function ordinalSql(unit: IslandQuery["unit"], col: RawBuilder<string>): RawBuilder<number> {
  // a key of another shape (left by an earlier definition) is not cast
  if (unit === "daily") return sql<number>`case when length(${col}) = 10 and substr(${col}, 5, 1) = '-' then ${col}::date - date '1970-01-01' end`;
  if (unit === "hourly") {
    return sql<number>`case when length(${col}) = 13 and substr(${col}, 11, 1) = 'T' then (substr(${col}, 1, 10)::date - date '1970-01-01') * 24 + substr(${col}, 12, 2)::int end`;
  }
  return sql<number>`case when length(${col}) = 7 and substr(${col}, 5, 1) = '-' then (split_part(${col}, '-', 1)::int - 1970) * 12 + split_part(${col}, '-', 2)::int - 1 end`;
}

/**
 * The status of an asset's time partitions as ranges, computed in SQL (gaps and islands over
 * the ordered keys): one row per run of consecutive keys in one status, however many keys there
 * are. Keys with neither a materialization nor a step are not returned: they are the gaps
 * (missing), which the caller counts from the ordinals.
 *
 * @example
 * const islands = await partitionIslands(store, { asset: "events", unit: "hourly", lo, hi });
 */
export async function partitionIslands(store: StateStore, q: IslandQuery): Promise<{ islands: PartitionIslands; lastMaterializedAt: Date | null }> {
  const parents = [...(q.identityParents ?? [])];
  const ord = ordinalSql(q.unit, sql<string>`partition`);
  const { rows } = await sql<{ status: PartitionIsland["status"]; n: number; first: string; last: string }>`
    with s as (
      select distinct on (partition) partition, status, coalesce(ended_at, started_at, created_at) as at
      from run_steps where asset = ${q.asset}
      order by partition, created_at desc, started_at desc nulls last, run_id desc
    ), m as (
      select partition, materialized_at, code_version from asset_partitions where asset = ${q.asset}
    ), p as (
      select partition, max(materialized_at) as materialized_at from asset_partitions
      where asset = any(${parents}::text[]) group by partition
    ), st as (
      select coalesce(m.partition, s.partition) as partition,
        case when s.status in ('running', 'pending') then 'running'
             when s.status = 'failed' and (m.partition is null or s.at > m.materialized_at) then 'failed'
             when m.partition is null then null
             when ${q.codeVersion !== undefined} and m.code_version is distinct from ${q.codeVersion ?? null}::text then 'stale'
             when p.materialized_at > m.materialized_at then 'stale'
             else 'materialized' end as status
      from m full join s on s.partition = m.partition left join p on p.partition = m.partition
    ), o as (
      select partition, status, ${ord} as ord from st where status is not null and partition <> ''
    ), g as (
      select status, ord, ord - row_number() over (partition by status order by ord) as grp
      from o where ord is not null and ord between ${q.lo} and ${q.hi}
    )
    select status, count(*)::int as n, min(ord)::int8 as first, max(ord)::int8 as last
    from g group by status, grp order by min(ord)`.execute(store.db);
  const last = await sql<{ at: Date | null }>`select max(materialized_at) as at from asset_partitions where asset = ${q.asset}`.execute(store.db);
  return {
    islands: rows.map((r) => ({ status: r.status, count: r.n, first: Number(r.first), last: Number(r.last) })),
    lastMaterializedAt: last.rows[0]?.at ?? null,
  };
}

export type PartitionIslands = PartitionIsland[];
