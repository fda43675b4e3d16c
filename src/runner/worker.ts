import { hostname } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import type { NewRun, RunRecord, StateStore } from "../state/index.js";
import { sleep } from "../timers.js";
import { keepBeating } from "../state/processes.js";
import { queueEager } from "./automation.js";
import { rerunOf } from "./launch.js";
import { executeRun, type RunOutcome, type RunnerOptions } from "./runner.js";

export interface WorkerOptions extends Omit<RunnerOptions, "worker" | "signal"> {
  /** Default `<hostname>:<pid>`. */
  workerId?: string;
  /** Runs executed at once (default 1). */
  runs?: number;
  /**
   * How long to wait before looking for work again when the queue is empty (default 1 s, at most
   * one heartbeat). An idle worker also wakes when the oldest heartbeat of a running run turns
   * stale, so a dead worker's run is failed within `missedHeartbeats` heartbeats plus
   * {@link STALE_WAKE_SLACK_MS}.
   */
  pollMs?: number;
  /** A running run whose worker missed this many heartbeats is failed (default 3). */
  missedHeartbeats?: number;
  /** Stop claiming when aborted; running runs finish. */
  signal?: AbortSignal;
  /** Return when the queue is empty instead of waiting for more. */
  untilEmpty?: boolean;
  onRun?: (outcome: RunOutcome) => void;
  /** Fires when this worker finished the last run of a backfill and settled it (once per backfill, across every process). */
  onBackfillSettled?: (backfillId: string, status: "success" | "failed") => void;
  /** Claim only the runs of this backfill. */
  backfillId?: string;
  /** At most this many runs running at once across every worker (config maxConcurrentRuns). */
  maxRunning?: number;
  /**
   * A run failed because its worker died is requeued from failure up to this many times (default
   * 1; 0 never). A run's tag `floe/run_retries` overrides it for that run (and its reruns).
   */
  recoveries?: number;
  /**
   * Slots of this worker that backfill runs may take at once (default `max(1, runs - 1)`): the
   * others are kept for manual and scheduled runs. Not applied with `backfillId` (a backfill's
   * own driver).
   */
  backfillSlots?: number;
  /** Fires when a run was queued in this process (e.g. by the scheduler): the worker looks at once. */
  wake?: EventTarget;
}

/** How long after a heartbeat turns stale an idle worker wakes to fail its run. */
export const STALE_WAKE_SLACK_MS = 50;

/** The run tag that sets how many times a run whose worker died is requeued. */
export const RUN_RETRIES_TAG = "floe/run_retries";

/**
 * A worker: claims queued runs from the state store and executes them, heartbeating while it
 * does; on each pass it also fails runs whose worker stopped heartbeating.
 *
 * @example
 * const controller = new AbortController();
 * await runWorker(store, graph, { runs: 2, signal: controller.signal });
 */
export async function runWorker(store: StateStore, graph: AssetGraph, options: WorkerOptions = {}): Promise<number> {
  const workerId = options.workerId ?? `${hostname()}:${process.pid}`;
  const heartbeatMs = options.heartbeatMs ?? 5_000;
  const signal = options.signal ?? new AbortController().signal;
  const slots = Math.max(1, options.runs ?? 1);
  const staleMs = heartbeatMs * (options.missedHeartbeats ?? 3);
  // the backfill lane: at most this many slots hold backfill runs, the rest wait for other runs
  const backfillLane = options.backfillId === undefined ? Math.max(1, options.backfillSlots ?? slots - 1) : slots;
  let backfillBusy = 0;
  let executed = 0;
  // Wake at once when a run is queued, here or (on PostgreSQL) by any process; poll as a fallback.
  const wake = options.wake ?? new EventTarget();
  const stopWatching = options.untilEmpty ? async () => undefined : await store.watchQueue(() => wake.dispatchEvent(new Event("run")));
  const stopBeating = keepBeating(store, "worker", workerId, heartbeatMs); // idle workers too, for /health
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      await recoverDeadRuns(store, graph, await store.failStaleRuns(staleMs), options.recoveries ?? 1);
      // take a lane place before claiming, so that slots claiming at once cannot overfill it
      const mayBackfill = backfillBusy < backfillLane;
      if (mayBackfill) backfillBusy++;
      let run: RunRecord | undefined;
      try {
        run = await store.claimRun(workerId, {
          ...(options.backfillId === undefined ? {} : { backfillId: options.backfillId }),
          ...(options.maxRunning === undefined ? {} : { maxRunning: options.maxRunning }),
          ...(mayBackfill ? {} : { backfills: false }),
        });
      } finally {
        if (mayBackfill && (run === undefined || run.backfillId === null)) backfillBusy--;
      }
      if (!run) {
        // untilEmpty means the queue, not a cap or a lane that is full for now
        if (options.untilEmpty && !((options.maxRunning !== undefined || !mayBackfill) && (await store.hasQueued(options.backfillId)))) return;
        const stale = await store.msUntilStale(staleMs);
        await sleep(Math.min(options.pollMs ?? 1_000, heartbeatMs, stale === undefined ? Infinity : stale + STALE_WAKE_SLACK_MS), signal, wake);
        continue;
      }
      try {
        const outcome = await executeRun(store, graph, run.id, { ...options, worker: workerId, heartbeatMs, signal });
        await queueEager(store, graph, outcome);
        executed++;
        options.onRun?.(outcome);
        if (run.backfillId !== null) {
          // the worker that ends a backfill's last run settles it, so it ends even with no driver left
          const settled = await store.settleBackfill(run.backfillId);
          if (settled) options.onBackfillSettled?.(run.backfillId, settled);
        }
      } finally {
        if (run.backfillId !== null) backfillBusy--;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: slots }, loop));
  } finally {
    await stopWatching();
    await stopBeating();
  }
  return executed;
}

/**
 * Requeues runs failed because their worker died, from failure, in one statement (their steps
 * read in one query): each up to its retry policy, `floe/run_retries` on the run or `limit`.
 * Runs of a canceled backfill, and runs naming assets no longer loaded, stay failed.
 * Returns how many were requeued.
 *
 * @example
 * await recoverDeadRuns(store, graph, await store.failStaleRuns(15_000), 1);
 */
export async function recoverDeadRuns(store: StateStore, graph: AssetGraph, dead: readonly RunRecord[], limit: number): Promise<number> {
  const attemptOf = (r: RunRecord): number => Number(r.tags["floe/recovery"] ?? 0) + 1;
  const retriesOf = (r: RunRecord): number => {
    const n = Number(r.tags[RUN_RETRIES_TAG]);
    return r.tags[RUN_RETRIES_TAG] !== undefined && Number.isInteger(n) && n >= 0 ? n : limit;
  };
  let due = dead.filter((r) => attemptOf(r) <= retriesOf(r));
  if (due.length === 0) return 0;
  const canceled = await store.canceledBackfills(due.map((r) => r.backfillId).filter((b): b is string => b !== null));
  due = due.filter((r) => r.backfillId === null || !canceled.has(r.backfillId));
  const steps = await store.getStepsOfRuns(due.map((r) => r.id));
  const reruns: NewRun[] = [];
  for (const r of due) {
    try {
      const next = rerunOf(graph, r, steps.get(r.id) ?? [], { fromFailure: true }, { tags: { "floe/recovery": String(attemptOf(r)) }, ...(r.backfillId ? { backfillId: r.backfillId } : {}) });
      if (next) reruns.push(next);
    } catch {
      // a step of an asset no loaded pipeline declares: the run stays failed, with its reason
    }
  }
  await store.createRuns(reruns);
  return reruns.length;
}

