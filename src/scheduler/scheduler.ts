import type { AssetGraph } from "../dag/graph.js";
import type { RunRecord, StateStore } from "../state/index.js";
import { schedulesOf, tickPlan, type Schedule } from "./schedules.js";

export interface SchedulerOptions {
  signal?: AbortSignal;
  /** Called for each run a tick created (not for ticks another scheduler already took). */
  onRun?: (schedule: string, tickTime: Date, run: RunRecord) => void;
  /** A tick that could not be recorded (the state store failed); the scheduler goes on. */
  onError?: (schedule: string, tickTime: Date, error: unknown) => void;
  /** Events older than this many days are deleted, at start and hourly (default 30; 0 keeps all). */
  eventRetentionDays?: number;
  /** At most this many missed ticks are run per schedule with `catchUp: "all"` (default 1,000). */
  maxCatchUp?: number;
}

/**
 * Fires every pipeline schedule and turns each tick into a queued run. A tick is recorded with
 * its run in one statement keyed by (schedule, tick time), so any number of schedulers on one
 * database run a tick once. On start, ticks missed while no scheduler ran are caught up per
 * the schedule's `catchUp`.
 *
 * @example
 * await runScheduler(store, graph, { signal: controller.signal });
 */
export async function runScheduler(store: StateStore, graph: AssetGraph, options: SchedulerOptions = {}): Promise<void> {
  const signal = options.signal ?? new AbortController().signal;
  const schedules = schedulesOf(graph);
  const tick = async (s: Schedule, tickTime: Date): Promise<void> => {
    const planned = tickPlan(graph, s, tickTime);
    if (!planned) return;
    const run = await store.createScheduledRun(
      {
        trigger: "schedule",
        selection: s.selection,
        partitionRange: planned.partition,
        tags: { "floe/schedule": s.name, "floe/tick": tickTime.toISOString() },
        status: "queued",
        steps: planned.plan.steps.map((x) => ({ asset: x.asset, partition: x.partition })),
      },
      { schedule: s.name, tickTime },
    );
    if (run) options.onRun?.(s.name, tickTime, run);
  };

  const retention = options.eventRetentionDays ?? 30;
  const prune = (): void => void (retention > 0 ? store.pruneEvents(retention).catch(() => undefined) : undefined);
  prune();
  const pruner = setInterval(prune, 3_600_000);

  const last = await store.lastTicks();
  const now = new Date();
  for (const s of schedules) {
    const previous = last.get(s.name);
    const mode = s.definition.catchUp ?? "latest";
    if (!previous || mode === "none") continue;
    const missed = s.cron.nextRuns(options.maxCatchUp ?? 1_000, previous).filter((t) => t <= now);
    for (const t of mode === "all" ? missed : missed.slice(-1)) await tick(s, t);
  }

  const crons = schedules.map((s) => {
    s.cron.schedule((self: { currentRun(): Date | null }) => {
      const tickTime = self.currentRun() ?? new Date();
      tick(s, tickTime).catch((e: unknown) => options.onError?.(s.name, tickTime, e));
    });
    s.cron.resume();
    return s.cron;
  });
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  for (const c of crons) c.stop();
  clearInterval(pruner);
}
