import { hostname } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import { stepId } from "../dag/plan.js";
import type { Resources } from "../runner/runner.js";
import type { NewRun, RunRecord, StateStore } from "../state/index.js";
import { keepBeating } from "../state/processes.js";
import { outageGuard, type OutageEvent } from "../state/transient.js";
import { schedulesOf, tickPlan, type Schedule } from "./schedules.js";

export interface SchedulerOptions {
  signal?: AbortSignal;
  /** Resources for sensors (a rawFiles sensor lists its storage through them). */
  resources?: Resources;
  /** Called for each run a tick created (not for ticks another scheduler already took). */
  onRun?: (schedule: string, tickTime: Date, run: RunRecord) => void;
  /** A tick that could not be recorded (the state store failed for real, not for a while); the scheduler goes on. */
  onError?: (schedule: string, tickTime: Date, error: unknown) => void;
  /**
   * The state store became unreachable, or is back. A tick that fails for a transient reason
   * (refused or dropped connections, a restart) is recorded once the store answers again: its
   * key (schedule, tick time) is the same, so it is still recorded once.
   */
  onOutage?: (e: OutageEvent) => void;
  /** Events older than this many days are deleted, at start and hourly (default 30; 0 keeps all). */
  eventRetentionDays?: number;
  /** At most this many missed ticks are run per schedule with `catchUp: "all"` (default 1,000). */
  maxCatchUp?: number;
  /** How often the scheduler records that it is alive, for /health (default 5 000 ms). */
  heartbeatMs?: number;
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
  /** The tick's run and key, or undefined when no partition has closed yet at `tickTime`. */
  const tickRun = (s: Schedule, tickTime: Date): { run: NewRun; tick: { schedule: string; tickTime: Date } } | undefined => {
    const planned = tickPlan(graph, s, tickTime);
    if (!planned) return undefined;
    return {
      run: {
        trigger: "schedule",
        selection: s.selection,
        partitionRange: planned.partition,
        tags: { "floe/schedule": s.name, "floe/tick": tickTime.toISOString() },
        status: "queued",
        priority: s.definition.priority ?? 0,
        steps: planned.plan.steps.map((x) => ({ asset: x.asset, partition: x.partition })),
      },
      tick: { schedule: s.name, tickTime },
    };
  };
  /** Records ticks of a schedule with their runs, all in one statement. */
  const ticks = async (s: Schedule, times: readonly Date[]): Promise<void> => {
    const items = times.map((t) => tickRun(s, t)).filter((x) => x !== undefined);
    const created = await store.createScheduledRuns(items);
    for (const run of created) options.onRun?.(s.name, new Date(run.tags["floe/tick"]!), run);
  };

  // /health reports a scheduler whose heartbeat stopped
  const stopBeating = keepBeating(store, "scheduler", `scheduler:${hostname()}:${process.pid}`, options.heartbeatMs ?? 5_000);
  const retention = options.eventRetentionDays ?? 30;
  const prune = (): void => void (retention > 0 ? store.pruneEvents(retention).catch(() => undefined) : undefined);
  prune();
  const pruner = setInterval(prune, 3_600_000);

  // a transient store error is waited out (with backoff, reported once) and the work done again
  const guard = outageGuard(() => store.ping(), { signal, ...(options.onOutage ? { onOutage: options.onOutage } : {}) });
  const last = (await guard.survive(() => store.lastTicks())) ?? new Map<string, Date>();
  const now = new Date();
  for (const s of schedules) {
    const previous = last.get(s.name);
    const mode = s.definition.catchUp ?? "latest";
    if (!previous || mode === "none") continue;
    const missed = s.cron.nextRuns(options.maxCatchUp ?? 1_000, previous).filter((t) => t <= now);
    await guard.survive(() => ticks(s, mode === "all" ? missed : missed.slice(-1))); // one statement for all missed ticks
  }

  const crons = schedules.map((s) => {
    s.cron.schedule((self: { currentRun(): Date | null }) => {
      const tickTime = self.currentRun() ?? new Date();
      guard.survive(() => ticks(s, [tickTime])).catch((e: unknown) => options.onError?.(s.name, tickTime, e));
    });
    s.cron.resume();
    return s.cron;
  });
  // Sensors: each asset's poll says which partitions have something new; a run is queued for
  // them unless one is already pending, keyed by (sensor, interval) like a tick.
  const sensors = graph.keys().filter((k) => graph.asset(k).sensor !== undefined).map((key) => {
    const sensor = graph.asset(key).sensor!;
    const poll = async (): Promise<void> => {
      const partitions = await sensor.poll({ assetKey: key, resource: (n) => (options.resources ? options.resources.get(n) : Promise.reject(new Error("no resources"))) });
      if (partitions.length === 0) return;
      const polled = [...new Set(partitions)].map((p) => ({ asset: key, partition: p }));
      const busy = new Set((await store.latestStepStates([key], polled)).filter((x) => x.status === "pending" || x.status === "running").map((x) => stepId(x.asset, x.partition)));
      const tickTime = new Date(Math.floor(Date.now() / sensor.intervalMs) * sensor.intervalMs);
      // one statement for every new partition, each keyed by (sensor, partition, interval)
      const created = await store.createScheduledRuns(polled.filter(({ partition: p }) => !busy.has(stepId(key, p))).map(({ partition: p }) => ({
        run: { trigger: "sensor", selection: key, partitionRange: p, tags: { "floe/sensor": key }, status: "queued" as const, steps: [{ asset: key, partition: p }] },
        tick: { schedule: `sensor:${key}:${p ?? "_"}`, tickTime },
      })));
      for (const run of created) options.onRun?.(`sensor:${key}`, tickTime, run);
    };
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      poll().catch((e: unknown) => options.onError?.(`sensor:${key}`, new Date(), e)).finally(() => (running = false));
    }, sensor.intervalMs);
    return timer;
  });

  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  for (const c of crons) c.stop();
  for (const t of sensors) clearInterval(t);
  clearInterval(pruner);
  await stopBeating();
}
