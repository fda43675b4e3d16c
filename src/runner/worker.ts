import { hostname } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import type { NewRun, RunRecord, StateStore } from "../state/index.js";
import { sleep } from "../timers.js";
import { keepBeating } from "../state/processes.js";
import { outageGuard, type OutageEvent } from "../state/transient.js";
import { queueEager } from "./automation.js";
import { rerunOf, stepsWithPendingWork } from "./launch.js";
import { failDeadRuns } from "./liveness.js";
import { executeRun, type Resources, type RunOutcome, type RunnerOptions } from "./runner.js";

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
  /**
   * The state store became unreachable, or is back. The worker rides out an outage (a transient
   * error: refused or dropped connections, a restart): it waits with backoff and goes on; it
   * does not exit. Runs in flight keep running (their writes are retried).
   */
  onOutage?: (e: OutageEvent) => void;
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
  // a transient store error ends a slot's pass; the slot waits until the store answers, then goes on
  const guard = outageGuard(() => store.ping(), { signal, ...(options.onOutage ? { onOutage: options.onOutage } : {}) });
  // A run is dead when its worker had `staleMs` of reachable store to heartbeat and did not. Right
  // after an outage, heartbeats are old because nobody could write them: for `staleMs` after it,
  // the outage (and the poll that noticed it late) counts on top.
  const deadAfterMs = (): number => {
    const outage = guard.heartbeatGraceMs(staleMs);
    return outage > 0 ? staleMs + outage + heartbeatMs : staleMs;
  };
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      await recoverDeadRuns(store, graph, await failDeadRuns(store, deadAfterMs()), options.recoveries ?? 1, options.resources);
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
        const stale = await store.msUntilStale(deadAfterMs());
        await sleep(Math.min(options.pollMs ?? 1_000, heartbeatMs, stale === undefined ? Infinity : stale + STALE_WAKE_SLACK_MS), signal, wake);
        continue;
      }
      try {
        const outcome = await executeRun(store, graph, run.id, { ...options, worker: workerId, heartbeatMs, signal });
        // Cut short by this worker's shutdown: queued again from failure, so the next worker resumes it.
        if (outcome.status === "canceled" && signal.aborted) await resumeLater(store, graph, run, options.resources);
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
    await Promise.all(Array.from({ length: slots }, () => guard.survive(loop)));
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
export async function recoverDeadRuns(store: StateStore, graph: AssetGraph, dead: readonly RunRecord[], limit: number, resources?: Resources): Promise<number> {
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
      const own = steps.get(r.id) ?? [];
      const pending = resources ? await stepsWithPendingWork(graph, own, resources) : new Set<string>();
      const next = rerunOf(graph, r, own, { fromFailure: true }, { tags: { "floe/recovery": String(attemptOf(r)) }, ...(r.backfillId ? { backfillId: r.backfillId } : {}) }, pending);
      if (next) reruns.push(next);
    } catch {
      // a step of an asset no loaded pipeline declares: the run stays failed, with its reason
    }
  }
  await store.createRuns(reruns);
  return reruns.length;
}

/**
 * Queues a run that this worker's shutdown cut short again, from failure (what succeeded is
 * reused; a raw partition with files left runs again), unless its backfill was canceled. The new
 * run keeps the old one's priority and tags, and `floe/resumed_from` names it.
 *
 * @example
 * if (outcome.status === "canceled" && signal.aborted) await resumeLater(store, graph, run, resources);
 */
export async function resumeLater(store: StateStore, graph: AssetGraph, run: RunRecord, resources?: Resources): Promise<string | undefined> {
  if (run.backfillId !== null && (await store.canceledBackfills([run.backfillId])).has(run.backfillId)) return undefined;
  const ended = await store.getRun(run.id);
  const steps = await store.getSteps(run.id);
  const pending = resources ? await stepsWithPendingWork(graph, steps, resources) : new Set<string>();
  try {
    const next = rerunOf(graph, ended, steps, { fromFailure: true }, { tags: { "floe/resumed_from": run.id }, ...(run.backfillId ? { backfillId: run.backfillId } : {}) }, pending);
    return next ? (await store.createRun(next)).id : undefined;
  } catch {
    return undefined; // a step of an asset no loaded pipeline declares: nothing to resume
  }
}
