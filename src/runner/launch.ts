import { UserError } from "../errors.js";
import type { AssetGraph } from "../dag/graph.js";
import { linkSteps, plan, stepId, type PartitionSelection, type StepKey } from "../dag/plan.js";
import { keyAtOrdinal } from "../dag/partitions.js";
import { assetStatuses, type PartitionStatus } from "../dag/staleness.js";
import { partitionIslands } from "../state/partition-ranges.js";
import type { NewRun, RunRecord, StateStore, StepRecord, StepStatus } from "../state/index.js";
import { queueEager } from "./automation.js";
import { processOwner } from "./liveness.js";
import { executeRun, type Resources, type RunOutcome, type RunnerOptions } from "./runner.js";

/**
 * Status of every partition of `assets` from the state store (one query each for
 * materializations and latest steps).
 *
 * @example
 * const rows = await statusOf(store, graph, graph.keys());
 */
export async function statusOf(store: StateStore, graph: AssetGraph, assets: readonly string[], now = new Date()): Promise<PartitionStatus[]> {
  const needed = new Set(assets);
  for (const a of assets) for (const u of graph.upstream(a)) needed.add(u);
  const keys = [...needed];
  const [mats, steps] = await Promise.all([store.latestMaterializations(keys), store.latestStepStates(keys)]);
  return assetStatuses(graph, assets, mats, steps, now);
}

/** A run of consecutive partitions of one asset in one status (`floe status`). */
export interface StatusRange {
  from: string;
  to: string;
  status: PartitionStatus["status"];
  count: number;
}

/** Definitions with more keys than this get their status as ranges from SQL, never key by key. */
export const RANGE_STATUS_THRESHOLD = 10_000;

/**
 * Status of a time-partitioned asset as ranges (`2025-01-01…2025-03-31 materialized`), counted
 * in SQL and from ordinals, so no key list is built however large the definition. Staleness
 * here covers code versions and identity-mapped upstreams; `statusOf` checks every mapping.
 * Undefined for a static or multi definition (use `statusOf`).
 *
 * @example
 * const r = await statusRanges(store, graph, "events"); // { ranges: [{ from: "2015-01-01T00", to: …, status: "missing", count: 87648 }] }
 */
export async function statusRanges(store: StateStore, graph: AssetGraph, asset: string, now = new Date()): Promise<{ ranges: StatusRange[]; lastMaterializedAt: Date | null } | undefined> {
  const def = graph.asset(asset);
  const p = def.partitions;
  if (!p?.bounds || (p.type !== "daily" && p.type !== "hourly" && p.type !== "monthly")) return undefined;
  const unit = p.type;
  const { first, last } = p.bounds(now);
  const identityParents = graph.parents(asset).filter((u) => {
    const m = def.mappings[u];
    return graph.asset(u).partitions?.id === p.id && (m === undefined || m.name === "identity");
  });
  const { islands, lastMaterializedAt } = await partitionIslands(store, {
    asset, unit, lo: first, hi: last, identityParents, ...(def.codeVersion === undefined ? {} : { codeVersion: def.codeVersion }),
  });
  const ranges: StatusRange[] = [];
  const missing = (a: number, b: number): void => {
    if (b >= a) ranges.push({ from: keyAtOrdinal(unit, a), to: keyAtOrdinal(unit, b), status: "missing", count: b - a + 1 });
  };
  let next = first;
  for (const i of islands) {
    missing(next, i.first - 1);
    ranges.push({ from: keyAtOrdinal(unit, i.first), to: keyAtOrdinal(unit, i.last), status: i.status, count: i.count });
    next = i.last + 1;
  }
  missing(next, last);
  return { ranges, lastMaterializedAt };
}

export interface MaterializeRequest {
  assets: ReadonlySet<string>;
  selection: string;
  partitions?: PartitionSelection;
  /** Only steps that are stale, missing or failed, plus their downstream within the selection. */
  staleOnly?: boolean;
  trigger?: string;
  tags?: Record<string, string>;
}

/** The outcome of a materialization; `runId` is null when `staleOnly` found nothing to do. */
export type MaterializeOutcome = RunOutcome | { runId: null; status: "success"; steps: [] };

/**
 * Plans a selection, records the run and executes it in this process.
 *
 * @example
 * const outcome = await materialize(store, graph, { assets: select(graph, "+orders"), selection: "+orders" });
 */
export async function materialize(
  store: StateStore,
  graph: AssetGraph,
  request: MaterializeRequest,
  options: RunnerOptions = {},
): Promise<MaterializeOutcome> {
  let steps: StepKey[] = plan(graph, request.assets, request.partitions).steps;
  if (request.staleOnly) steps = await staleSteps(store, graph, steps);
  if (steps.length === 0) return { runId: null, status: "success", steps: [] };
  const range = partitionRangeOf(request.partitions);
  const run = await store.createRun({
    trigger: request.trigger ?? "manual",
    selection: request.selection,
    partitionRange: range,
    tags: request.tags ?? {},
    // claimed by this process as it is created: a worker woken by the insert cannot take it too
    worker: options.worker ?? processOwner(),
    steps: steps.map((s) => ({ asset: s.asset, partition: s.partition })),
  });
  const outcome = await executeRun(store, graph, run.id, options);
  await queueEager(store, graph, outcome);
  return outcome;
}

/**
 * How a run records the partitions it was asked for: a key, `from…to`, or null (all, or none).
 *
 * @example
 * partitionRangeOf({ from: "2025-01-01", to: "2025-01-07" }); // "2025-01-01…2025-01-07"
 */
export function partitionRangeOf(partitions: PartitionSelection | undefined): string | null {
  if (partitions === undefined || "all" in partitions) return null;
  return "key" in partitions ? partitions.key : `${partitions.from}…${partitions.to}`;
}

/** The steps among `steps` that are not fresh, plus every step downstream of those. */
async function staleSteps(store: StateStore, graph: AssetGraph, steps: readonly StepKey[]): Promise<StepKey[]> {
  const assets = [...new Set(steps.map((s) => s.asset))];
  const statuses = new Map((await statusOf(store, graph, assets)).map((r) => [stepId(r.asset, r.partition), r.status]));
  const chosen = new Set<string>();
  const chosenByAsset = new Map<string, Set<string | null>>();
  // Steps come in topological order: a step is chosen when it is not fresh or a step it reads was chosen.
  for (const s of steps) {
    const id = stepId(s.asset, s.partition);
    const upstreamChosen = graph.parents(s.asset).some((p) => {
      const partitions = chosenByAsset.get(p);
      if (!partitions) return false;
      return graph.asset(p).partitions !== undefined && s.partition !== null ? partitions.has(s.partition) : true;
    });
    if (statuses.get(id) !== "materialized" || upstreamChosen) {
      chosen.add(id);
      const set = chosenByAsset.get(s.asset) ?? new Set<string | null>();
      set.add(s.partition);
      chosenByAsset.set(s.asset, set);
    }
  }
  return steps.filter((s) => chosen.has(stepId(s.asset, s.partition)));
}

/**
 * Re-executes a run as a new run. With `fromFailure`, only its failed, upstream-failed and
 * skipped steps run; its successful steps are reused. Returns null when nothing failed.
 *
 * @example
 * const outcome = await rerun(store, graph, "3f2a9c1e", { fromFailure: true });
 */
export async function rerun(
  store: StateStore,
  graph: AssetGraph,
  idOrPrefix: string,
  opts: { fromFailure: boolean },
  options: RunnerOptions = {},
  launch: { enqueueOnly?: boolean; backfillId?: string; tags?: Record<string, string> } = {},
): Promise<RunOutcome | null> {
  const parent = await store.getRun(idOrPrefix);
  const steps = await store.getSteps(parent.id);
  const pending = opts.fromFailure && options.resources ? await stepsWithPendingWork(graph, steps, options.resources) : new Set<string>();
  const newRun = rerunOf(graph, parent, steps, opts, launch, pending);
  if (!newRun) return null;
  if (launch.enqueueOnly) {
    await store.createRun(newRun);
    return null;
  }
  const run = await store.createRun({ ...newRun, worker: options.worker ?? processOwner() });
  return executeRun(store, graph, run.id, options);
}

/**
 * The run that re-executes `parent` (pure): with `fromFailure`, its successful steps are carried
 * over as successes and only the rest run. Null when `fromFailure` finds nothing that failed.
 *
 * @example
 * const next = rerunOf(graph, run, steps, { fromFailure: true }, { backfillId: run.backfillId });
 */
export function rerunOf(
  graph: AssetGraph,
  parent: RunRecord,
  steps: readonly StepRecord[],
  opts: { fromFailure: boolean },
  launch: { backfillId?: string; tags?: Record<string, string> } = {},
  pendingWork: ReadonlySet<string> = new Set(),
): NewRun | null {
  if (parent.status === "queued" || parent.status === "running") {
    throw new UserError(`run ${parent.id.slice(0, 8)} is still ${parent.status}; wait for it to finish before rerunning it`);
  }
  for (const s of steps) {
    if (!graph.has(s.asset)) {
      throw new UserError(`run ${parent.id.slice(0, 8)} has a step of asset \`${s.asset}\`, which no loaded pipeline declares now`);
    }
  }
  const redo: ReadonlySet<StepStatus> = new Set(["failed", "upstream_failed", "skipped", "pending", "running"]);
  // Steps run again: those that did not succeed, those whose partition still has work waiting
  // (a raw partition with files left), and every step of the run downstream of either.
  const again = new Set(steps.filter((s) => redo.has(s.status) || pendingWork.has(stepId(s.asset, s.partition))).map((s) => stepId(s.asset, s.partition)));
  for (const s of linkSteps(graph, steps).steps) if (s.deps.some((d) => again.has(d))) again.add(s.id);
  if (opts.fromFailure && again.size === 0) return null;
  return {
    trigger: "rerun",
    selection: parent.selection,
    partitionRange: parent.partitionRange,
    parentRunId: parent.id,
    tags: { ...parent.tags, ...(opts.fromFailure ? { "floe/from_failure": "true" } : {}), ...launch.tags },
    status: "queued",
    priority: parent.priority, // a rerun keeps its place in the queue (a backfill's stays in its lane)
    ...(launch.backfillId ? { backfillId: launch.backfillId } : {}),
    steps: steps.map((s) =>
      opts.fromFailure && !again.has(stepId(s.asset, s.partition))
        ? { asset: s.asset, partition: s.partition, status: "success" as const, metadata: s.metadata, attempts: 0 }
        : { asset: s.asset, partition: s.partition },
    ),
  };
}

/**
 * The successful steps whose asset says its partition still has work waiting
 * (`AssetDefinition.pendingWork`, e.g. a rawFiles partition with files not ingested), by step id.
 * One call per asset, for all of its partitions in the run.
 *
 * @example
 * const pending = await stepsWithPendingWork(graph, await store.getSteps(run.id), resources);
 */
export async function stepsWithPendingWork(graph: AssetGraph, steps: readonly StepRecord[], resources: Resources): Promise<Set<string>> {
  const byAsset = new Map<string, Array<string | null>>();
  for (const s of steps) {
    if (s.status !== "success" || !graph.has(s.asset) || graph.asset(s.asset).pendingWork === undefined) continue;
    const list = byAsset.get(s.asset);
    if (list) list.push(s.partition);
    else byAsset.set(s.asset, [s.partition]);
  }
  const out = new Set<string>();
  for (const [asset, partitions] of byAsset) {
    const waiting = await graph.asset(asset).pendingWork!({ assetKey: asset, resource: (name) => resources.get(name) }, partitions);
    for (const p of waiting) out.add(stepId(asset, p));
  }
  return out;
}

/** The largest queue priority a run may have, either way (the column is a 32-bit int). */
export const MAX_PRIORITY = 1_000_000;

/**
 * Reads a `--priority` value: a whole number from -MAX_PRIORITY to MAX_PRIORITY (higher runs are
 * claimed first). Anything else is a one-line UserError naming the flag.
 *
 * @example
 * parsePriority("5"); // 5
 * parsePriority("-2"); // -2
 */
export function parsePriority(text: string, flag = "--priority"): number {
  const n = /^[+-]?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || Math.abs(n) > MAX_PRIORITY) {
    throw new UserError(`${flag} must be a whole number from -${MAX_PRIORITY} to ${MAX_PRIORITY}, got \`${text}\``);
  }
  return n;
}
