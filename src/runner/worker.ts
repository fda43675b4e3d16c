import { hostname } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import type { StateStore } from "../state/index.js";
import { executeRun, type RunOutcome, type RunnerOptions } from "./runner.js";

export interface WorkerOptions extends Omit<RunnerOptions, "worker" | "signal"> {
  /** Default `<hostname>:<pid>`. */
  workerId?: string;
  /** Runs executed at once (default 1). */
  runs?: number;
  /** How long to wait before looking for work again when the queue is empty (default 1 s). */
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
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      await store.failStaleRuns(heartbeatMs * (options.missedHeartbeats ?? 3));
      const run = await store.claimRun(workerId, options.backfillId === undefined ? {} : { backfillId: options.backfillId });
      if (!run) {
        if (options.untilEmpty) return;
        await sleep(options.pollMs ?? 1_000, signal, options.wake);
        continue;
      }
      const outcome = await executeRun(store, graph, run.id, { ...options, worker: workerId, heartbeatMs, signal });
      executed++;
      options.onRun?.(outcome);
    }
  };
  await Promise.all(Array.from({ length: slots }, loop));
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
