/**
 * floe: an asset-based data orchestrator for Node.js.
 *
 * @example
 * import { asset, pipeline, partitions } from "floe";
 * export const raw = asset("raw_orders", { partitions: partitions.daily({ start: "2025-01-01" }), materialize: () => ({ metadata: { rows: 3 } }) });
 * export default pipeline("orders", { assets: [raw] });
 *
 * The root export holds what pipeline modules need and loads fast; the state store, runner
 * and CLI live under `floe/engine`.
 */
export { asset, defineAsset, pipeline } from "./assets/asset.js";
export { duckdbTable } from "./assets/duckdb-table.js";
export type { DuckdbTableOptions } from "./assets/duckdb-table.js";
export { rawFiles } from "./assets/raw-files.js";
export type { RawFilesOptions, StorageConfig } from "./assets/raw-files.js";
export { checks } from "./duckdb/checks.js";
export { secret, resolveSecret } from "./secrets.js";
export { webhook, slack } from "./notify/webhook-notifier.js";
export { email } from "./notify/smtp-notifier.js";
export type { EmailOptions } from "./notify/smtp-notifier.js";
export { amqp } from "./notify/amqp-notifier.js";
export type { AmqpOptions } from "./notify/amqp-notifier.js";
export { nats } from "./notify/nats-notifier.js";
export type { NatsOptions } from "./notify/nats-notifier.js";
export { NOTIFIER_BRAND } from "./notify/notifier.js";
export type { Notifier, Notification, NotificationEvent } from "./notify/notifier.js";
export type { SecretRef } from "./secrets.js";
export type { CheckDefinition, CheckResult, CheckSeverity } from "./duckdb/checks.js";
export type { AssetDep, AssetOptions, KindAssetOptions, PipelineOptions, PlainAssetOptions } from "./assets/asset.js";
export type { AssetContext, StepDuckdb } from "./assets/asset-context.js";
export { partitions, isPartitionsDefinition, MULTI_SEPARATOR } from "./dag/partitions.js";
export { partitionMappings } from "./dag/mappings.js";
export type { PartitionMapping } from "./dag/mappings.js";
export type { PartitionsDefinition, TimeWindowOptions } from "./dag/partitions.js";
export type {
  AssetDefinition,
  MaterializeResult,
  PipelineDefinition,
  RetryPolicy,
  ScheduleDefinition,
  StepContext,
  StepLogger,
  UpstreamMaterialization,
} from "./dag/types.js";
export { isAssetDefinition, isPipelineDefinition } from "./dag/types.js";
export { AssetGraph } from "./dag/graph.js";
export { select, parseSelection } from "./dag/selection.js";
export { plan, linkSteps, stepId } from "./dag/plan.js";
export type { Plan, PlannedStep, StepKey, PartitionSelection } from "./dag/plan.js";
export { assetStatuses } from "./dag/staleness.js";
export type { AssetStatus, PartitionStatus } from "./dag/staleness.js";
export { defineConfig } from "./project/config.js";
export type { FloeConfig } from "./project/config.js";
export type { Resources, RunOutcome, StepOutcome, RunnerOptions, ProgressEvent } from "./runner/runner.js";
export { UserError } from "./errors.js";
export { icebergTable } from "./assets/iceberg-table.js";
export type { IcebergTableOptions } from "./assets/iceberg-table.js";
