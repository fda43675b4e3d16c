import { Cron } from "croner";
import { UserError } from "../errors.js";
import type { AssetGraph } from "../dag/graph.js";
import { assertTimezone } from "../dag/partitions.js";
import { plan, type Plan } from "../dag/plan.js";
import { select } from "../dag/selection.js";
import type { ScheduleDefinition } from "../dag/types.js";
import { MAX_PRIORITY } from "../runner/launch.js";

/** A pipeline's schedule, checked and resolved against the graph. */
export interface Schedule {
  /** The pipeline's name; ticks are keyed by it. */
  name: string;
  definition: ScheduleDefinition;
  timezone: string;
  assets: ReadonlySet<string>;
  selection: string;
  cron: Cron;
}

/**
 * The schedules of every loaded pipeline, validated: a bad cron, timezone or selection is a
 * UserError naming the schedule.
 *
 * @example
 * const schedules = schedulesOf(graph); // [{ name: "orders", selection: "pipeline:orders", … }]
 */
export function schedulesOf(graph: AssetGraph): Schedule[] {
  const out: Schedule[] = [];
  for (const { pipeline, module } of graph.pipelines.values()) {
    const def = pipeline.schedule;
    if (!def) continue;
    const where = `${module}: schedule of pipeline \`${pipeline.name}\``;
    const timezone = def.timezone ?? "UTC";
    assertTimezone(timezone, where);
    let cron: Cron;
    try {
      cron = new Cron(def.cron, { timezone, paused: true });
    } catch (e) {
      throw new UserError(`${where}: invalid cron \`${def.cron}\` (${e instanceof Error ? e.message.replace(/^CronPattern: /, "") : String(e)})`);
    }
    if (def.catchUp !== undefined && !["latest", "all", "none"].includes(def.catchUp)) {
      throw new UserError(`${where}: catchUp must be "latest", "all" or "none", got \`${String(def.catchUp)}\``);
    }
    if (def.priority !== undefined && !(Number.isInteger(def.priority) && Math.abs(def.priority) <= MAX_PRIORITY)) {
      throw new UserError(`${where}: priority must be a whole number from -${MAX_PRIORITY} to ${MAX_PRIORITY}, got \`${String(def.priority)}\``);
    }
    const selection = def.selection ?? `pipeline:${pipeline.name}`;
    let assets: Set<string>;
    try {
      assets = select(graph, selection);
    } catch (e) {
      throw new UserError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
    out.push({ name: pipeline.name, definition: def, timezone, assets, selection, cron });
  }
  return out;
}

/**
 * The steps a tick runs: the schedule's selection, at the partition that closed last before the
 * tick (or the schedule's own `partition(tick)`). Undefined when no partition has closed yet.
 *
 * @example
 * tickPlan(graph, schedule, new Date("2025-01-05T02:00:00Z"))?.partition; // "2025-01-04" for daily assets
 */
export function tickPlan(graph: AssetGraph, schedule: Schedule, tickTime: Date): { plan: Plan; partition: string | null } | undefined {
  const partitioned = [...schedule.assets].map((k) => graph.asset(k).partitions).find((p) => p !== undefined);
  if (!partitioned) return { plan: plan(graph, schedule.assets, undefined, tickTime), partition: null };
  const key = schedule.definition.partition ? schedule.definition.partition(tickTime) : partitioned.keys(tickTime).at(-1);
  if (key === undefined) return undefined;
  return { plan: plan(graph, schedule.assets, { key }, tickTime), partition: key };
}
