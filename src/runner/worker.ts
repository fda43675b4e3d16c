import { hostname } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import type { StateStore } from "../state/index.js";
import { keepBeating } from "../state/processes.js";
import { queueEager } from "./automation.js";
import { rerun } from "./launch.js";
import { executeRun, type RunOutcome, type RunnerOptions } from "./runner.js";

export interface WorkerOptions extends Omit<RunnerOptions, "worker" | "signal"> {
  /** Default `<hostname>:<pid>`. */
  workerId?: string;
  /** Runs executed at once (default 1). */
  runs?: number;
  /** How long to wait before looking for work again when the queue is empty (default 1 s, at most one heartbeat, so a dead worker's run is found within about three). */
  pollMs?: number;
  /** A running run whose worker missed this many heartbeats is failed (default 3). */
  missedHeartbeats?: number;
  /** Stop claiming when aborted; running runs finish. */
  signal?: AbortSignal;
  /** Return when the queue is empty instead of waiting for more. */
  untilEmpty?: boolean;
  onRun?: (outcome: RunOutcome) => void;
  /** Claim only the runs of this backfill. */
  backfillId?: string;
  /** At most this many runs running at once across every worker (config maxConcurrentRuns). */
  maxRunning?: number;
  /** A run failed because its worker died is requeued from failure up to this many times (default 1). */
  recoveries?: number;
  /** Fires when a run was queued in this process (e.g. by the scheduler): the worker looks at once. */
  wake?: EventTarget;
}

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
  let executed = 0;
  // Wake at once when a run is queued, here or (on PostgreSQL) by any process; poll as a fallback.
  const wake = options.wake ?? new EventTarget();
  const stopWatching = options.untilEmpty ? async () => undefined : await store.watchQueue(() => wake.dispatchEvent(new Event("run")));
  const stopBeating = keepBeating(store, "worker", workerId, heartbeatMs); // idle workers too, for /health
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      const dead = await store.failStaleRuns(heartbeatMs * (options.missedHeartbeats ?? 3));
      for (const run of dead) {
        const attempt = Number(run.tags["floe/recovery"] ?? 0) + 1;
        if (attempt > (options.recoveries ?? 1)) continue;
        await rerun(store, graph, run.id, { fromFailure: true }, {}, { enqueueOnly: true, tags: { "floe/recovery": String(attempt) }, ...(run.backfillId ? { backfillId: run.backfillId } : {}) });
      }
      const run = await store.claimRun(workerId, {
        ...(options.backfillId === undefined ? {} : { backfillId: options.backfillId }),
        ...(options.maxRunning === undefined ? {} : { maxRunning: options.maxRunning }),
      });
      if (!run) {
        // untilEmpty means the queue, not a cap that is full for now
        if (options.untilEmpty && !(options.maxRunning !== undefined && (await store.hasQueued(options.backfillId)))) return;
        await sleep(Math.min(options.pollMs ?? 1_000, heartbeatMs), signal, wake);
        continue;
      }
      const outcome = await executeRun(store, graph, run.id, { ...options, worker: workerId, heartbeatMs, signal });
      await queueEager(store, graph, outcome);
      executed++;
      options.onRun?.(outcome);
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

function sleep(ms: number, signal: AbortSignal, wake?: EventTarget): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      wake?.removeEventListener("run", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    wake?.addEventListener("run", done, { once: true });
  });
}
