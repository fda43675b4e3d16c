import type { PartitionMapping } from "./mappings.js";
import type { PartitionsDefinition } from "./partitions.js";
import type { AssetBackfillPolicy } from "./ranges.js";

/** Brands that mark floe definitions; `Symbol.for` so two copies of floe in one process agree. */
export const ASSET_BRAND = Symbol.for("floe.asset");
export const PIPELINE_BRAND = Symbol.for("floe.pipeline");

/** What a step's `materialize` returns: metadata recorded with the materialization (rows, bytes, ids…). */
export interface MaterializeResult {
  metadata?: Record<string, unknown>;
  /** Optional data version; when the same as the last one, downstream assets do not become stale. */
  dataVersion?: string;
  /**
   * A ranged call (`backfillPolicy`) may report per partition: its own metadata (merged over
   * `metadata`) and data version, or an `error` that fails that partition alone.
   */
  partitions?: Record<string, { metadata?: Record<string, unknown>; dataVersion?: string; error?: string }>;
}

/** Retry policy of a step: `maxAttempts` in all (1 = no retry), exponential backoff between attempts. */
export interface RetryPolicy {
  maxAttempts: number;
  /** First delay in ms (default 500). */
  delayMs?: number;
  /** Factor per attempt (default 2). */
  backoff?: number;
  /** Upper bound of one delay in ms (default 30 000). */
  maxDelayMs?: number;
}

/** One materialization of an upstream asset, as a step sees it. */
export interface UpstreamMaterialization {
  asset: string;
  partition: string | null;
  runId: string;
  materializedAt: Date;
  metadata: Record<string, unknown>;
}

/** A logger whose lines become events of the run (and appear in `floe run <id>`). */
export interface StepLogger {
  debug(message: string, data?: Record<string, unknown>): void;
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/** What `materialize(ctx)` receives. */
export interface StepContext {
  readonly runId: string;
  readonly asset: AssetDefinition;
  readonly assetKey: string;
  /** The partition key of this step, or null for an unpartitioned asset; in a ranged call, the first of `partitionKeys`. */
  readonly partitionKey: string | null;
  /**
   * Every partition this call materializes: one key, none for an unpartitioned asset, or the
   * range a `backfillPolicy` asset takes at once (in partition order).
   */
  readonly partitionKeys: readonly string[];
  /** 1 on the first attempt, 2 on the first retry… */
  readonly attempt: number;
  readonly log: StepLogger;
  /**
   * The upstream materialization this step reads, per upstream key: the same partition of a
   * partitioned upstream, the only materialization of an unpartitioned one, or the latest
   * partition of a partitioned upstream read whole. Undefined when it was never materialized.
   */
  readonly upstream: Readonly<Record<string, UpstreamMaterialization | undefined>>;
  /** Every upstream partition this step reads of `key` (one element for identity mappings). */
  upstreamPartitions(key: string | AssetDefinition): UpstreamMaterialization[];
  /** Aborted when the run is canceled or the process shuts down. */
  readonly signal: AbortSignal;
  /** A resource registered by a plugin or the project config (e.g. `duckdb`). */
  resource<T>(name: string): Promise<T>;
  /**
   * Runs `fn` once this step's materialization is durably recorded in the state store (never if
   * the step fails). For work that must follow the commit, e.g. marking ingested files done.
   */
  afterCommit(fn: () => Promise<void>): void;
  /**
   * Runs `fn` if the runner abandons this step: it was still running when the shutdown grace
   * period ran out, and is recorded failed without waiting for it. For giving back what the step
   * holds (file claims, locks) now, rather than when a timeout frees them. The step's own code
   * may still be running when `fn` runs; what it does afterwards is not recorded.
   *
   * @example
   * ctx.onInterrupt(() => ledger.release(workerId, batchId));
   */
  onInterrupt(fn: () => Promise<unknown> | unknown): void;
}

/** What a sensor may use: the same resources a step gets. */
export interface SensorContext {
  readonly assetKey: string;
  resource<T>(name: string): Promise<T>;
}

/** Looks for reasons to materialize an asset (new files, …); the scheduler polls it. */
export interface SensorDefinition {
  /** How often to look (ms). */
  intervalMs: number;
  /** The partitions (null: the unpartitioned asset) that have something new. */
  poll(ctx: SensorContext): Promise<Array<string | null>>;
}

/** A named, persistent piece of data plus the code that produces it. */
export interface AssetDefinition {
  readonly [ASSET_BRAND]: true;
  readonly key: string;
  /** The kind that produced the definition (`asset`, `raw_files`, `duckdb`, `iceberg`, or a plugin's). */
  readonly kind: string;
  /** Every kind label, `kind` first; `kind:NAME` selects by any of them. */
  readonly kinds: readonly string[];
  /** Keys of the assets this one reads. */
  readonly deps: readonly string[];
  readonly partitions?: PartitionsDefinition;
  /** How a partition reads each partitioned upstream, by upstream key (default: identity). */
  readonly mappings: Readonly<Record<string, PartitionMapping>>;
  readonly tags: Readonly<Record<string, string>>;
  readonly codeVersion?: string;
  readonly retry?: RetryPolicy;
  readonly pool?: string;
  readonly description?: string;
  /** Polled by the scheduler: queues a run for the partitions it returns. */
  readonly sensor?: SensorDefinition;
  /** `eager`: materialized (queued) as soon as an upstream partition it reads is materialized. */
  readonly automation?: "eager";
  /** `single-run` or `{ maxPartitionsPerRun }`: a run's partitions of this asset go to one `materialize` call (`ctx.partitionKeys`). */
  readonly backfillPolicy?: AssetBackfillPolicy;
  /**
   * Which of these materialized partitions (null: the unpartitioned asset) still have work
   * waiting, such as a rawFiles partition with files not ingested yet; asked once for all of a
   * run's partitions of the asset. A rerun from failure runs such a step again instead of reusing
   * it, so a run cut short (SIGTERM, a dead worker) never ends "success" with data left behind.
   *
   * @example
   * pendingWork: async (ctx, partitions) => [...(await ledgerOf(ctx).pendingFilesOf(key, partitions)).keys()],
   */
  pendingWork?(ctx: SensorContext, partitions: ReadonlyArray<string | null>): Promise<ReadonlyArray<string | null>>;
  materialize(ctx: StepContext): Promise<MaterializeResult | void> | MaterializeResult | void;
}

export interface ScheduleDefinition {
  /** 5-field cron, or 6 fields with seconds first. */
  cron: string;
  /** IANA timezone the cron is read in (default UTC). */
  timezone?: string;
  /** Selection to run on each tick (default: every asset of the pipeline). */
  selection?: string;
  /** Partition a tick targets; default: the last partition closed at the tick. */
  partition?: (tickTime: Date) => string;
  /** Ticks missed while no scheduler ran: run the latest (default), all of them, or none. */
  catchUp?: "latest" | "all" | "none";
  /** Queue priority of the tick's runs: higher runs are claimed first (default 0, like manual runs; backfills -1). */
  priority?: number;
}

/** A named group of assets in one module, with an optional schedule. */
export interface PipelineDefinition {
  readonly [PIPELINE_BRAND]: true;
  readonly name: string;
  readonly assets: readonly AssetDefinition[];
  readonly schedule?: ScheduleDefinition;
  readonly description?: string;
}

export function isAssetDefinition(v: unknown): v is AssetDefinition {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[ASSET_BRAND] === true;
}

export function isPipelineDefinition(v: unknown): v is PipelineDefinition {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[PIPELINE_BRAND] === true;
}
