import { UserError } from "../errors.js";
import { withDuckdb, type AssetContext } from "./asset-context.js";
import { withScratch } from "./data.js";
import type { PartitionMapping } from "../dag/mappings.js";
import { isPartitionsDefinition, type PartitionsDefinition } from "../dag/partitions.js";
import { invalidBackfillPolicy, type AssetBackfillPolicy } from "../dag/ranges.js";
import {
  ASSET_BRAND,
  PIPELINE_BRAND,
  isAssetDefinition,
  type AssetDefinition,
  type MaterializeResult,
  type PipelineDefinition,
  type RetryPolicy,
  type ScheduleDefinition,
  type SensorDefinition,
  type StepContext,
} from "../dag/types.js";

/** A dependency: an asset definition, or the key of an asset declared in another module. */
export type AssetDep = AssetDefinition | string;

export interface AssetOptions {
  deps?: readonly AssetDep[];
  partitions?: PartitionsDefinition;
  /** How each partition reads a partitioned upstream, by upstream key: `{ orders: partitionMappings.lastN(7) }`. */
  mappings?: Readonly<Record<string, PartitionMapping>>;
  /** `["pii"]` or `{ team: "data" }`; select with `tag:pii` / `tag:team=data`. */
  tags?: readonly string[] | Readonly<Record<string, string>>;
  /** Extra kind labels (the defining kind comes first), selectable with `kind:NAME`. */
  kinds?: readonly string[];
  /** Bump it when the code changes meaning: materializations of another version become stale. */
  codeVersion?: string;
  retry?: RetryPolicy;
  pool?: string;
  description?: string;
  /** `eager`: queued as soon as an upstream partition it reads is materialized. */
  automation?: "eager";
  /**
   * How a run's partitions of this asset are materialized: `"per-partition"` (default), one call
   * each; `"single-run"`, one call for all of them; `{ maxPartitionsPerRun: N }`, N at a time.
   * A ranged call reads `ctx.partitionKeys`; each partition is still recorded as its own step.
   */
  backfillPolicy?: AssetBackfillPolicy;
  materialize(ctx: StepContext): Promise<MaterializeResult | void> | MaterializeResult | void;
}

/** What an asset kind plugin passes to {@link defineAsset}: the options plus its kind name. */
export interface KindAssetOptions extends AssetOptions {
  kind: string;
  sensor?: SensorDefinition;
  /** See {@link AssetDefinition.pendingWork}. */
  pendingWork?: AssetDefinition["pendingWork"];
}

function normaliseTags(tags: AssetOptions["tags"]): Record<string, string> {
  if (tags === undefined) return {};
  if (Array.isArray(tags)) return Object.fromEntries(tags.map((t: string) => [t, ""]));
  return { ...(tags as Record<string, string>) };
}

/**
 * Builds an asset definition of any kind. Asset kind plugins (rawFiles, duckdbTable, …) are
 * functions that call it with their own `kind` and `materialize`; so can yours.
 *
 * @example
 * export const csvExport = (key: string, from: AssetDefinition) =>
 *   defineAsset(key, { kind: "csv_export", deps: [from], async materialize(ctx) { … } });
 */
export function defineAsset(key: string, options: KindAssetOptions): AssetDefinition {
  if (typeof key !== "string") throw new UserError(`an asset key must be a string, got ${shown(key)}`);
  if (typeof options !== "object" || options === null) throw new UserError(`asset \`${key}\`: options must be an object, got ${shown(options)}`);
  checkOptionTypes(key, options);
  if (typeof options?.materialize !== "function") {
    throw new UserError(`asset \`${key}\`: \`materialize(ctx)\` must be a function`);
  }
  const deps = (options.deps ?? []).map((d, i) => {
    if (typeof d === "string") return d;
    if (isAssetDefinition(d)) return d.key;
    throw new UserError(`asset \`${key}\`: deps[${i}] is neither an asset nor an asset key string (an import cycle between modules can leave it undefined)`);
  });
  const kinds = [options.kind, ...(options.kinds ?? []).filter((k) => k !== options.kind)];
  const definition: AssetDefinition = {
    [ASSET_BRAND]: true,
    key,
    kind: options.kind,
    kinds,
    deps: [...new Set(deps)],
    mappings: { ...options.mappings },
    tags: normaliseTags(options.tags),
    materialize: options.materialize,
    ...(options.partitions ? { partitions: options.partitions } : {}),
    ...(options.codeVersion !== undefined ? { codeVersion: options.codeVersion } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
    ...(options.pool !== undefined ? { pool: options.pool } : {}),
    ...(options.description !== undefined ? { description: options.description } : {}),
    ...(options.sensor ? { sensor: options.sensor } : {}),
    ...(options.pendingWork ? { pendingWork: options.pendingWork } : {}),
    ...(options.automation ? { automation: options.automation } : {}),
    ...(options.backfillPolicy !== undefined && options.backfillPolicy !== "per-partition" ? { backfillPolicy: options.backfillPolicy } : {}),
  };
  const badPolicy = invalidBackfillPolicy(options.backfillPolicy);
  if (badPolicy) throw new UserError(`asset \`${key}\`: ${badPolicy}`);
  if (options.backfillPolicy !== undefined && options.backfillPolicy !== "per-partition" && !options.partitions) {
    throw new UserError(`asset \`${key}\`: backfillPolicy needs partitions; the asset has none`);
  }
  if (options.automation !== undefined && options.automation !== "eager") {
    throw new UserError(`asset \`${key}\`: automation must be "eager", got \`${String(options.automation)}\``);
  }
  return Object.freeze(definition);
}

/** A value as an error shows it: its type, and the value itself when short (`number 2`, `array`). */
function shown(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return "array";
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return `${typeof v} ${String(v)}`;
  if (typeof v === "string") return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Pipeline modules are not type-checked when they load (tsx strips the types), so the options a
 * TypeScript type would have caught are checked here, each as one line naming the option.
 */
function checkOptionTypes(key: string, o: KindAssetOptions): void {
  const fail = (option: string, expected: string, got: unknown, hint = ""): never => {
    throw new UserError(`asset \`${key}\`: ${option} must be ${expected}, got ${shown(got)}${hint}`);
  };
  if (o.codeVersion !== undefined && typeof o.codeVersion !== "string") {
    fail("codeVersion", "a string", o.codeVersion, typeof o.codeVersion === "number" ? ` (write codeVersion: "${o.codeVersion}")` : "");
  }
  for (const name of ["pool", "description"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "string") fail(name, "a string", o[name]);
  }
  if (o.deps !== undefined && !Array.isArray(o.deps)) fail("deps", "an array of assets or asset keys", o.deps);
  if (o.kinds !== undefined && !(Array.isArray(o.kinds) && o.kinds.every((k) => typeof k === "string"))) fail("kinds", "an array of strings", o.kinds);
  if (o.tags !== undefined) {
    const ok = Array.isArray(o.tags) ? o.tags.every((t) => typeof t === "string") : isPlainObject(o.tags) && Object.values(o.tags).every((t) => typeof t === "string");
    if (!ok) fail("tags", 'an array of strings or an object of string values (["pii"] or { team: "data" })', o.tags);
  }
  if (o.partitions !== undefined && !isPartitionsDefinition(o.partitions)) {
    fail("partitions", 'a partitions definition (partitions.daily({ start: "2025-01-01" }), …)', o.partitions);
  }
  if (o.mappings !== undefined && !isPlainObject(o.mappings)) fail("mappings", "an object of partition mappings by upstream key", o.mappings);
  if (o.retry !== undefined) {
    if (!isPlainObject(o.retry)) fail("retry", "an object ({ maxAttempts: 3, delayMs: 500 })", o.retry);
    const r = o.retry as unknown as Record<string, unknown>;
    if (!(Number.isInteger(r.maxAttempts) && (r.maxAttempts as number) >= 1)) fail("retry.maxAttempts", "a whole number of at least 1", r.maxAttempts);
    for (const name of ["delayMs", "backoff", "maxDelayMs"] as const) {
      const v = r[name];
      if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 0)) fail(`retry.${name}`, "a number of at least 0", v);
    }
  }
}

/**
 * A plain TypeScript asset: your `materialize(ctx)` produces it and returns its metadata.
 *
 * @example
 * export const dailyRevenue = asset("daily_revenue", {
 *   deps: [lakeOrders],
 *   partitions: daily,
 *   async materialize(ctx) {
 *     const rows = await ctx.duckdb.all(`select sum(amount) as revenue from ${ctx.ref(lakeOrders)}`);
 *     return { metadata: { revenue: rows[0]?.revenue } };
 *   },
 * });
 */
export function asset(key: string, options: PlainAssetOptions): AssetDefinition {
  const materialize = options?.materialize;
  return defineAsset(key, {
    ...options,
    kind: "asset",
    materialize: typeof materialize === "function" ? (ctx) => withScratch(ctx, async () => materialize(withDuckdb(ctx))) : (materialize as never),
  });
}

/** A plain asset's options: its `materialize(ctx)` also gets `ctx.duckdb` and `ctx.ref`. */
export interface PlainAssetOptions extends Omit<AssetOptions, "materialize"> {
  materialize(ctx: AssetContext): Promise<MaterializeResult | void> | MaterializeResult | void;
}

export interface PipelineOptions {
  assets: readonly AssetDefinition[];
  schedule?: ScheduleDefinition;
  description?: string;
}

/**
 * A named group of assets; export it from a module under `pipelines/`.
 *
 * @example
 * export default pipeline("orders", { assets: [rawOrders, orders], schedule: { cron: "0 2 * * *" } });
 */
export function pipeline(name: string, options: PipelineOptions): PipelineDefinition {
  if (typeof name !== "string") throw new UserError(`a pipeline name must be a string, got ${shown(name)}`);
  if (options?.description !== undefined && typeof options.description !== "string") {
    throw new UserError(`pipeline \`${name}\`: description must be a string, got ${shown(options.description)}`);
  }
  if (options?.schedule !== undefined && !(isPlainObject(options.schedule) && typeof options.schedule.cron === "string")) {
    const got = isPlainObject(options.schedule) ? `cron ${shown(options.schedule.cron)}` : shown(options.schedule);
    throw new UserError(`pipeline \`${name}\`: schedule must be an object with a cron string ({ cron: "0 2 * * *" }), got ${got}`);
  }
  if (!options || !Array.isArray(options.assets)) {
    throw new UserError(`pipeline \`${name}\`: \`assets\` must be an array of assets`);
  }
  options.assets.forEach((a, i) => {
    if (!isAssetDefinition(a)) {
      throw new UserError(`pipeline \`${name}\`: assets[${i}] is not an asset (an import cycle between modules can leave it undefined)`);
    }
  });
  return Object.freeze({
    [PIPELINE_BRAND]: true as const,
    name,
    assets: [...options.assets],
    ...(options.schedule ? { schedule: options.schedule } : {}),
    ...(options.description !== undefined ? { description: options.description } : {}),
  });
}
