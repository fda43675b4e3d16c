import { UserError } from "../errors.js";
import { checksOf } from "../check-results.js";
import { isSecretRef, redact, resolveSecret, type SecretRef } from "../secrets.js";
import type { AssetGraph } from "../dag/graph.js";
import { select } from "../dag/selection.js";
import type { ProjectSettings } from "../project/config.js";
import type { RunOutcome, StepOutcome } from "../runner/runner.js";
import type { StateStore } from "../state/index.js";
import { recordDeliveries, type DeliveryCount } from "../state/deliveries.js";
import { failedFilesOfRun } from "../state/metrics.js";
import { Dispatcher, type DeliveryOptions, type Notification } from "./notifier.js";
import { stepId } from "../dag/plan.js";

/**
 * The dispatcher of a project's configured notification routes (selections resolved now, so a
 * bad one is a config error). A retried delivery is reported on stderr unless `onRetry` is given;
 * outcomes are counted in `tally` when one is given.
 *
 * @example
 * const dispatcher = await projectDispatcher(settings, graph, { onResult });
 */
export async function projectDispatcher(settings: ProjectSettings, graph: AssetGraph, options: DeliveryOptions = {}, tally?: DeliveryTally): Promise<Dispatcher> {
  const routes = settings.notifications.map((r, i) => {
    // A notifier's secrets are resolved now: one that is not set stops the command (exit 2), not a delivery later.
    for (const ref of secretRefs(r.notifier.options)) {
      try {
        resolveSecret(ref);
      } catch (e) {
        throw new UserError(`floe.config.ts: notifications.${i}.notifier (${r.notifier.name}): ${e instanceof Error ? e.message : String(e)}`);
      }
    }
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
  return new Dispatcher(routes, {
    // each retry is reported as it happens, not only the final failure
    onRetry: (name, attempt, attempts, error, delayMs) =>
      void process.stderr.write(redact(`floe: notification to ${name} failed (attempt ${attempt} of ${attempts}: ${error.split("\n")[0]}); retrying in ${delayMs} ms\n`)),
    ...options,
    onCount: (labels) => {
      tally?.count(labels);
      options.onCount?.(labels);
    },
  });
}

/**
 * Counts delivery outcomes and adds them to the state store's totals about once a second (one
 * statement a write), so `/metrics` of any process sharing the store reports the deliveries of
 * every process, short-lived `floe materialize` included. Counts wait in memory until a store is
 * attached; a write that fails keeps them for the next one.
 *
 * @example
 * const tally = new DeliveryTally();
 * const dispatcher = await projectDispatcher(settings, graph, {}, tally);
 * tally.attach(store);
 * await tally.close(); // writes what is left
 */
export class DeliveryTally {
  private readonly pending = new Map<string, DeliveryCount>();
  private store: StateStore | undefined;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  count(labels: { notifier: string; event: string; outcome: string }): void {
    this.add({ notifier: labels.notifier, event: labels.event, outcome: labels.outcome, count: 1 });
  }

  /** Where the counts go (the first store given stays). */
  attach(store: StateStore): void {
    this.store ??= store;
    this.schedule();
  }

  /** Writes what is counted so far. */
  flush(): Promise<void> {
    const store = this.store;
    if (!store || this.pending.size === 0) return this.writing;
    const rows = [...this.pending.values()];
    this.pending.clear();
    this.writing = this.writing.then(() =>
      recordDeliveries(store, rows).catch(() => {
        for (const r of rows) this.add(r); // the store is away: try again with the next write
      }),
    );
    return this.writing;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private add(row: DeliveryCount): void {
    const key = `${row.notifier}\u0000${row.event}\u0000${row.outcome}`;
    const c = this.pending.get(key);
    if (c) c.count += row.count;
    else this.pending.set(key, { ...row });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.store === undefined || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, 1_000);
    this.timer.unref();
  }
}

/**
 * The notification for a finished run.
 *
 * @example
 * dispatcher.publish(runNotification(outcome, graph));
 */
function runNotification(outcome: RunOutcome, graph: AssetGraph): Notification {
  const failed = outcome.steps.filter((s) => s.status === "failed");
  const assets = [...new Set(outcome.steps.map((s) => s.asset))];
  const first = failed[0];
  const detail = first ? `: ${stepId(first.asset, first.partition || null)}: ${(first.error ?? "").split("\n")[0]}` : "";
  return {
    event: outcome.status === "success" ? "run_succeeded" : outcome.status === "canceled" ? "run_canceled" : "run_failed",
    message: `run ${outcome.runId.slice(0, 8)} ${outcome.status}: ${outcome.steps.filter((s) => s.status === "success" || s.status === "reused").length} of ${outcome.steps.length} steps succeeded${detail}`,
    runId: outcome.runId,
    status: outcome.status,
    assets,
    pipelines: [...new Set(assets.filter((a) => graph.has(a)).map((a) => graph.node(a).pipeline))],
    failedSteps: failed.map((s) => ({ asset: s.asset, partition: s.partition, error: s.error ?? "" })),
    at: new Date().toISOString(),
  };
}

/**
 * What a finished run tells its routes: the run notification, then one per data event found in
 * its steps' metadata, whatever the asset kind: `check_failed` (a `checks` entry that did not
 * pass, severity error or warn), `files_failed` (a `failedFiles` count, or for a failed step the
 * files it left FAILED in the ledger) and `rows_quarantined`
 * (a `quarantinedRows` count). A data event's `assets` are only the steps concerned, so a route's
 * selection picks them.
 *
 * @example
 * for (const n of runNotifications(outcome, graph)) dispatcher.publish(n);
 */
export function runNotifications(
  outcome: RunOutcome,
  graph: AssetGraph,
  /** Files a failed step left FAILED in the ledger (a step that fails reports no metadata counts). */
  ledgerFailures: ReadonlyArray<{ asset: string; partition: string | null; count: number }> = [],
): Notification[] {
  const base = runNotification(outcome, graph);
  const out = [base];
  const name = (s: { asset: string; partition: string | null }): string => stepId(s.asset, s.partition || null);
  const pipelinesOf = (assets: string[]): string[] => [...new Set(assets.filter((a) => graph.has(a)).map((a) => graph.node(a).pipeline))];
  const data = (event: Notification["event"], assets: string[], message: string, extra: Partial<Notification>): Notification => ({
    ...base, event, message: `run ${outcome.runId.slice(0, 8)}: ${message}`, assets: [...new Set(assets)], pipelines: pipelinesOf(assets),
    failedSteps: base.failedSteps.filter((f) => assets.includes(f.asset)), ...extra,
  });

  const checks = outcome.steps.flatMap((s) =>
    checksOf(s.metadata).flatMap((c) => (c.passed ? [] : [{ asset: s.asset, partition: s.partition, name: c.name, severity: c.severity, message: c.message }])),
  );
  if (checks.length > 0) {
    const first = checks[0]!;
    out.push(data("check_failed", checks.map((c) => c.asset), `${checks.length} check(s) failed: ${name(first)} ${first.name} (${first.severity}): ${first.message}`, { checks }));
  }
  const count = (s: StepOutcome, key: string): number => (typeof s.metadata[key] === "number" ? (s.metadata[key] as number) : 0);
  const fromLedger = (s: StepOutcome): number =>
    s.status === "failed" && typeof s.metadata.failedFiles !== "number" ? (ledgerFailures.find((f) => f.asset === s.asset && f.partition === s.partition)?.count ?? 0) : 0;
  const files = outcome.steps
    .map((s) => ({ asset: s.asset, partition: s.partition, failedFiles: count(s, "failedFiles") + fromLedger(s) }))
    .filter((f) => f.failedFiles > 0);
  if (files.length > 0) {
    out.push(data("files_failed", files.map((f) => f.asset), `${files.reduce((a, f) => a + f.failedFiles, 0)} file(s) failed: ${files.map((f) => `${name(f)} ${f.failedFiles}`).join(", ")}`, { counts: files }));
  }
  const rows = outcome.steps.filter((s) => count(s, "quarantinedRows") > 0).map((s) => ({
    asset: s.asset, partition: s.partition, quarantinedRows: count(s, "quarantinedRows"), ...(typeof s.metadata.quarantine === "string" ? { quarantine: s.metadata.quarantine } : {}),
  }));
  if (rows.length > 0) {
    out.push(data("rows_quarantined", rows.map((r) => r.asset), `${rows.reduce((a, r) => a + r.quarantinedRows, 0)} row(s) quarantined: ${rows.map((r) => `${name(r)} ${r.quarantinedRows}`).join(", ")}`, { counts: rows }));
  }
  return out;
}

function secretRefs(value: unknown, depth = 0): SecretRef[] {
  if (isSecretRef(value)) return [value];
  if (typeof value !== "object" || value === null || depth > 4) return [];
  return Object.values(value).flatMap((v) => secretRefs(v, depth + 1));
}

/**
 * Publishes what a finished run tells its routes; reads the file ledger only when a step failed.
 *
 * @example
 * await publishRun(dispatcher, outcome, graph, store);
 */
export async function publishRun(dispatcher: Dispatcher, outcome: RunOutcome, graph: AssetGraph, store: StateStore | undefined): Promise<void> {
  const failed = [...new Set(outcome.steps.filter((s) => s.status === "failed" && typeof s.metadata.failedFiles !== "number").map((s) => s.asset))];
  const ledger = store && failed.length > 0 ? await failedFilesOfRun(store, outcome.runId, failed).catch(() => []) : [];
  for (const n of runNotifications(outcome, graph, ledger)) dispatcher.publish(n);
}
