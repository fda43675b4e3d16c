import { UserError } from "../errors.js";
import type { AssetGraph } from "../dag/graph.js";
import { select } from "../dag/selection.js";
import type { ProjectSettings } from "../project/config.js";
import type { RunOutcome } from "../runner/runner.js";
import { Dispatcher, type DeliveryOptions, type Notification } from "./notifier.js";

/**
 * The dispatcher of a project's configured notification routes (selections resolved now, so a
 * bad one is a config error).
 *
 * @example
 * const dispatcher = projectDispatcher(settings, graph, { onResult });
 */
export function projectDispatcher(settings: ProjectSettings, graph: AssetGraph, options: DeliveryOptions = {}): Dispatcher {
  const routes = settings.notifications.map((r, i) => {
    let assets: Set<string> | undefined;
    if (r.select !== undefined) {
      try {
        assets = select(graph, r.select);
      } catch (e) {
        throw new UserError(`floe.config.ts: notifications.${i}.select: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return { notifier: r.notifier, ...(r.events ? { events: r.events } : {}), ...(assets ? { assets } : {}) };
  });
  return new Dispatcher(routes, options);
}

/**
 * The notification for a finished run.
 *
 * @example
 * dispatcher.publish(runNotification(outcome, graph));
 */
export function runNotification(outcome: RunOutcome, graph: AssetGraph): Notification {
  const failed = outcome.steps.filter((s) => s.status === "failed");
  const assets = [...new Set(outcome.steps.map((s) => s.asset))];
  const first = failed[0];
  const detail = first ? `: ${first.asset}${first.partition ? `[${first.partition}]` : ""}: ${(first.error ?? "").split("\n")[0]}` : "";
  return {
    event: outcome.status === "success" ? "run_succeeded" : outcome.status === "canceled" ? "run_canceled" : "run_failed",
    message: `run ${outcome.runId.slice(0, 8)} ${outcome.status}: ${outcome.steps.filter((s) => s.status === "success").length} of ${outcome.steps.length} steps succeeded${detail}`,
    runId: outcome.runId,
    status: outcome.status,
    assets,
    pipelines: [...new Set(assets.filter((a) => graph.has(a)).map((a) => graph.node(a).pipeline))],
    failedSteps: failed.map((s) => ({ asset: s.asset, partition: s.partition, error: s.error ?? "" })),
    at: new Date().toISOString(),
  };
}
