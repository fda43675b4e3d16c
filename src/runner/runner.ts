import { availableParallelism } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import { cachedKeys, upstreamPartitions } from "../dag/mappings.js";
import { linkSteps, stepId, type PlannedStep } from "../dag/plan.js";
import type { AssetDefinition, StepContext, StepLogger, UpstreamMaterialization } from "../dag/types.js";
import type { RunStatus, StateStore, StepStatus } from "../state/index.js";
import { Recorder } from "./recorder.js";

/** Named resources for `ctx.resource(name)`, provided by plugins or the project config. */
export interface Resources {
  get<T>(name: string): Promise<T>;
}

export interface StepOutcome {
  asset: string;
  partition: string | null;
  status: StepStatus;
  metadata: Record<string, unknown>;
  error?: string;
  attempts: number;
  durationMs: number | null;
}

export interface RunOutcome {
  runId: string;
  status: Extract<RunStatus, "success" | "failed" | "canceled">;
  steps: StepOutcome[];
}

/** A transition the caller may show live (the CLI prints them, the TUI draws them). */
export type ProgressEvent =
  | { type: "step_started"; asset: string; partition: string | null; attempt: number }
  | { type: "step_finished"; outcome: StepOutcome }
  | { type: "step_retry"; asset: string; partition: string | null; attempt: number; delayMs: number; error: string };

export interface RunnerOptions {
  /** Steps at once (default: the number of cores). */
  concurrency?: number;
  signal?: AbortSignal;
  resources?: Resources;
  onProgress?: (e: ProgressEvent) => void;
  /** Steps at once per pool, across every process sharing the store: `{ warehouse: 2 }`. */
  poolLimits?: Readonly<Record<string, number>>;
  /** After an abort, how long running steps may go on before they are marked interrupted (default 30 s). */
  graceMs?: number;
  /** With a worker id, the run heartbeats every `heartbeatMs` (default 5 s) while it executes. */
  worker?: string;
  heartbeatMs?: number;
}

const noResources: Resources = {
  get: (name) => Promise.reject(new Error(`no resource \`${name}\` is registered`)),
};

/**
 * Executes the pending steps of a run in dependency order, at most `concurrency` at once.
 * A failed step (after its retries) marks its downstream steps `upstream_failed`; independent
 * branches go on. Steps already `success` (a rerun's reused steps) count as done. Every
 * transition is recorded as an event.
 *
 * @example
 * const run = await store.createRun({ trigger: "manual", steps: plan.steps });
 * const outcome = await executeRun(store, graph, run.id, { concurrency: 4 });
 * outcome.status; // "success"
 */
export async function executeRun(store: StateStore, graph: AssetGraph, runId: string, options: RunnerOptions = {}): Promise<RunOutcome> {
  const concurrency = Math.max(1, options.concurrency ?? availableParallelism());
  const resources = options.resources ?? noResources;
  const signal = options.signal ?? new AbortController().signal;
  const rec = new Recorder(store);
  const records = await store.getSteps(runId);
  const { steps } = linkSteps(graph, records);
  const outcomes = new Map<string, StepOutcome>(
    records.map((r) => [
      stepId(r.asset, r.partition),
      { asset: r.asset, partition: r.partition, status: r.status, metadata: r.metadata, attempts: r.attempts, durationMs: null },
    ]),
  );

  // Upstream materializations this run reads, updated in memory as steps succeed.
  const parentKeys = [...new Set(steps.flatMap((s) => graph.parents(s.asset)))];
  const upstream = new Map<string, UpstreamMaterialization>();
  for (const m of await store.latestMaterializations(parentKeys)) {
    upstream.set(stepId(m.asset, m.partition), { asset: m.asset, partition: m.partition, runId: m.runId, materializedAt: m.materializedAt, metadata: m.metadata });
  }

  if (options.worker !== undefined) await store.adoptRun(runId, options.worker);
  const startedAt = new Date();
  const keysOf = cachedKeys(startedAt);
  rec.run({ id: runId, status: "running", startedAt });
  const beat = options.worker === undefined
    ? undefined
    : setInterval(() => void store.heartbeat(options.worker!, [runId]).catch(() => undefined), options.heartbeatMs ?? 5_000);
  rec.event({ runId, type: "run_started", message: `run started: ${steps.length} steps` });

  const dependents = new Map<string, PlannedStep[]>();
  const waitingOn = new Map<string, number>();
  const todo: PlannedStep[] = [];
  for (const s of steps) {
    if (outcomes.get(s.id)!.status === "success") continue;
    todo.push(s);
  }
  const todoIds = new Set(todo.map((s) => s.id));
  for (const s of todo) {
    const open = s.deps.filter((d) => todoIds.has(d) || outcomes.get(d)?.status !== "success");
    waitingOn.set(s.id, open.length);
    for (const d of open) {
      const list = dependents.get(d);
      if (list) list.push(s);
      else dependents.set(d, [s]);
    }
  }
  const ready = todo.filter((s) => waitingOn.get(s.id) === 0);
  const blockedByOutside = todo.filter((s) => s.deps.some((d) => !todoIds.has(d) && outcomes.get(d)?.status !== "success"));

  const finish = (s: PlannedStep, outcome: StepOutcome): void => {
    outcomes.set(s.id, outcome);
    options.onProgress?.({ type: "step_finished", outcome });
  };

  const failDownstream = (id: string, cause: string): void => {
    const stack = [...(dependents.get(id) ?? [])];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (outcomes.get(d.id)!.status === "upstream_failed") continue;
      const error = `upstream step ${cause} failed`;
      rec.step({ runId, asset: d.asset, partition: d.partition, status: "upstream_failed", error, endedAt: new Date() });
      rec.event({ runId, asset: d.asset, partition: d.partition, type: "step_upstream_failed", level: "warn", message: `${d.id}: ${error}` });
      finish(d, { asset: d.asset, partition: d.partition, status: "upstream_failed", metadata: {}, error, attempts: 0, durationMs: null });
      stack.push(...(dependents.get(d.id) ?? []));
    }
  };
  for (const s of blockedByOutside) {
    // a rerun whose reused upstream step is missing: treat as failed upstream
    const missing = s.deps.find((d) => !todoIds.has(d) && outcomes.get(d)?.status !== "success")!;
    failDownstream(missing, missing);
  }

  let active = 0;
  const running = new Set<PlannedStep>();
  let interrupted = false;
  let grace: NodeJS.Timeout | undefined;
  let onAbort = (): void => undefined;
  await new Promise<void>((resolve) => {
    // On abort, running steps get a grace period to finish; what still runs then is interrupted.
    onAbort = (): void => {
      grace = setTimeout(() => {
        interrupted = true;
        for (const s of running) {
          const error = `interrupted: still running ${options.graceMs ?? 30_000} ms after shutdown began`;
          rec.step({ runId, asset: s.asset, partition: s.partition, status: "failed", endedAt: new Date(), error });
          rec.event({ runId, asset: s.asset, partition: s.partition, type: "step_failed", level: "error", message: `${s.id}: ${error}` });
          finish(s, { asset: s.asset, partition: s.partition, status: "failed", metadata: {}, error, attempts: 1, durationMs: null });
        }
        resolve();
      }, options.graceMs ?? 30_000);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const pump = (): void => {
      while (active < concurrency && ready.length > 0 && !signal.aborted && !rec.error) {
        const s = ready.shift()!;
        if (outcomes.get(s.id)!.status === "upstream_failed") continue;
        active++;
        running.add(s);
        void runStep(s).then((outcome) => {
          active--;
          running.delete(s);
          if (interrupted) return; // already recorded as interrupted; the run has ended
          finish(s, outcome);
          if (outcome.status === "success") {
            for (const d of dependents.get(s.id) ?? []) {
              const left = waitingOn.get(d.id)! - 1;
              waitingOn.set(d.id, left);
              if (left === 0) ready.push(d);
            }
          } else failDownstream(s.id, s.id);
          pump();
        });
      }
      if (active === 0) resolve();
    };
    pump();
  });

  clearTimeout(grace);
  signal.removeEventListener("abort", onAbort);

  // Whatever never started (canceled, or the state store failed) is skipped.
  for (const s of todo) {
    const o = outcomes.get(s.id)!;
    if (o.status === "pending" || o.status === "running") {
      rec.step({ runId, asset: s.asset, partition: s.partition, status: "skipped", endedAt: new Date() });
      finish(s, { ...o, status: "skipped", durationMs: null });
    }
  }
  const all = steps.map((s) => outcomes.get(s.id)!);
  const status: RunOutcome["status"] = signal.aborted
    ? "canceled"
    : all.every((o) => o.status === "success")
      ? "success"
      : "failed";
  const failed = all.filter((o) => o.status === "failed").length;
  rec.run({ id: runId, status, endedAt: new Date(), error: failed > 0 ? `${failed} step(s) failed` : null });
  rec.event({
    runId,
    type: `run_${status === "success" ? "succeeded" : status}`,
    level: status === "success" ? "info" : "error",
    message: `run ${status}: ${all.filter((o) => o.status === "success").length} succeeded, ${failed} failed, ${all.filter((o) => o.status === "upstream_failed").length} upstream failed`,
  });
  clearInterval(beat);
  await rec.flush();
  return { runId, status, steps: all };

  async function runStep(s: PlannedStep): Promise<StepOutcome> {
    const def = graph.asset(s.asset);
    const limit = def.pool === undefined ? undefined : options.poolLimits?.[def.pool];
    if (def.pool === undefined || limit === undefined) return attemptStep(s, def);
    // Wait for a slot of the asset's pool; the pool's limit holds across processes.
    let slot: number | undefined;
    while ((slot = await store.acquirePoolSlot(def.pool, limit, runId, s.id)) === undefined) {
      if (signal.aborted) return { asset: s.asset, partition: s.partition, status: "skipped", metadata: {}, attempts: 0, durationMs: null };
      await sleep(100, signal);
    }
    try {
      return await attemptStep(s, def);
    } finally {
      await store.releasePoolSlot(def.pool, slot).catch(() => undefined);
    }
  }

  async function attemptStep(s: PlannedStep, def: AssetDefinition): Promise<StepOutcome> {
    const maxAttempts = Math.max(1, def.retry?.maxAttempts ?? 1);
    const base = { asset: s.asset, partition: s.partition };
    const t0 = Date.now();
    let error = "";
    let failedMetadata: Record<string, unknown> = {};
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      options.onProgress?.({ type: "step_started", ...base, attempt });
      rec.step({ runId, ...base, status: "running", attempts: attempt, startedAt: new Date() });
      rec.event({ runId, ...base, type: "step_started", message: `${s.id}: started${attempt > 1 ? ` (attempt ${attempt})` : ""}` });
      const hooks: Array<() => Promise<void>> = [];
      try {
        const result = await def.materialize(context(def, s, attempt, hooks));
        const metadata = toJson(result?.metadata ?? {});
        const endedAt = new Date();
        rec.step({ runId, ...base, status: "success", endedAt, error: null, metadata });
        rec.materialization({ ...base, runId, materializedAt: endedAt, codeVersion: def.codeVersion ?? null, dataVersion: result?.dataVersion ?? null, metadata });
        rec.event({ runId, ...base, type: "step_succeeded", message: `${s.id}: materialized`, data: { metadata } });
        upstream.set(s.id, { ...base, runId, materializedAt: endedAt, metadata });
        if (hooks.length > 0) {
          await rec.flush(); // the materialization is durable before the hooks run
          for (const hook of hooks) {
            await hook().catch((e: unknown) =>
              rec.event({ runId, ...base, type: "log", level: "warn", message: `${s.id}: after-commit hook failed: ${e instanceof Error ? e.message : String(e)}` }),
            );
          }
        }
        return { ...base, status: "success", metadata, attempts: attempt, durationMs: Date.now() - t0 };
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
        failedMetadata = errorMetadata(e);
        const stack = e instanceof Error ? e.stack : undefined;
        rec.event({ runId, ...base, type: "step_attempt_failed", level: "error", message: `${s.id}: ${error}`, data: stack ? { stack } : null });
        if (attempt < maxAttempts && !signal.aborted) {
          const delayMs = backoff(def, attempt);
          options.onProgress?.({ type: "step_retry", ...base, attempt, delayMs, error });
          rec.event({ runId, ...base, type: "step_retry", level: "warn", message: `${s.id}: retrying in ${delayMs} ms` });
          await sleep(delayMs, signal);
        }
      }
    }
    rec.step({ runId, ...base, status: "failed", endedAt: new Date(), error, metadata: failedMetadata });
    rec.event({ runId, ...base, type: "step_failed", level: "error", message: `${s.id}: failed: ${error}` });
    return { ...base, status: "failed", metadata: failedMetadata, error, attempts: maxAttempts, durationMs: Date.now() - t0 };
  }

  function context(def: AssetDefinition, s: PlannedStep, attempt: number, hooks: Array<() => Promise<void>>): StepContext {
    const log = (level: "debug" | "info" | "warn" | "error") => (message: string, data?: Record<string, unknown>) =>
      rec.event({ runId, asset: s.asset, partition: s.partition, type: "log", level, message, data: data ? toJson(data) : null });
    const logger: StepLogger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
    const partitionsOf = (key: string): UpstreamMaterialization[] => {
      const reads = upstreamPartitions(def, graph.asset(key), s.partition, keysOf);
      return (reads ?? [null]).flatMap((p) => {
        const m = upstream.get(stepId(key, p));
        return m ? [m] : [];
      });
    };
    const upstreamView: Record<string, UpstreamMaterialization | undefined> = {};
    for (const key of def.deps) {
      const list = partitionsOf(key);
      upstreamView[key] = list.reduce<UpstreamMaterialization | undefined>((a, b) => (a && a.materializedAt >= b.materializedAt ? a : b), undefined);
    }
    return {
      runId,
      asset: def,
      assetKey: s.asset,
      partitionKey: s.partition,
      attempt,
      log: logger,
      upstream: upstreamView,
      upstreamPartitions: (key) => partitionsOf(typeof key === "string" ? key : key.key),
      signal,
      resource: (name) => resources.get(name),
      afterCommit: (fn) => void hooks.push(fn),
    };
  }
}

function backoff(def: AssetDefinition, attempt: number): number {
  const r = def.retry!;
  return Math.min(r.maxDelayMs ?? 30_000, Math.round((r.delayMs ?? 500) * (r.backoff ?? 2) ** (attempt - 1)));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** What a failed step still reports (check results, counts): an error's own `metadata` object, if any. */
function errorMetadata(e: unknown): Record<string, unknown> {
  const m = typeof e === "object" && e !== null ? (e as { metadata?: unknown }).metadata : undefined;
  return typeof m === "object" && m !== null && !Array.isArray(m) ? toJson(m as Record<string, unknown>) : {};
}

/** Metadata as plain JSON: bigint → string, Date → ISO string, undefined dropped. */
function toJson(value: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))) as Record<string, unknown>;
}
