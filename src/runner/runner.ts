import { availableParallelism } from "node:os";
import type { AssetGraph } from "../dag/graph.js";
import { cachedKeys, upstreamPartitions } from "../dag/mappings.js";
import { linkSteps, stepId } from "../dag/plan.js";
import { stepUnits, type StepUnit } from "../dag/ranges.js";
import type { AssetDefinition, StepContext, StepLogger, UpstreamMaterialization } from "../dag/types.js";
import type { RunStatus, StateStore, StepStatus } from "../state/index.js";
import { sleep } from "../timers.js";
import { processOwner } from "./liveness.js";
import { Recorder } from "./recorder.js";

/** Named resources for `ctx.resource(name)`, provided by plugins or the project config. */
export interface Resources {
  get<T>(name: string): Promise<T>;
}

export interface StepOutcome {
  asset: string;
  partition: string | null;
  /** `reused`: a rerun's step taken from its parent run as it was, not executed. */
  status: StepStatus | "reused";
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
  /** Who executes the run (default this process, `<host>:<pid>`); the run heartbeats every `heartbeatMs` (default 5 s) while it executes. */
  worker?: string;
  heartbeatMs?: number;
}

/** How long interrupt hooks and slot releases of abandoned steps may take before the run ends anyway. */
const INTERRUPT_HOOKS_MS = 5_000;

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
      // a step that is already `success` when the run starts was carried over from the parent run
      { asset: r.asset, partition: r.partition, status: r.status === "success" ? "reused" : r.status, metadata: r.metadata, attempts: r.attempts, durationMs: null },
    ]),
  );

  // Upstream materializations this run reads, updated in memory as steps succeed.
  const parentKeys = [...new Set(steps.flatMap((s) => graph.parents(s.asset)))];
  const upstream = new Map<string, UpstreamMaterialization>();
  for (const m of await store.latestMaterializations(parentKeys)) {
    upstream.set(stepId(m.asset, m.partition), { asset: m.asset, partition: m.partition, runId: m.runId, materializedAt: m.materializedAt, metadata: m.metadata });
  }

  // Every run heartbeats while it executes, wherever it runs, so a dead process's run is found.
  const worker = options.worker ?? processOwner();
  if (!(await store.adoptRun(runId, worker))) {
    const held = await store.runOwner(runId);
    throw new Error(held === undefined
      ? `run ${runId} does not exist`
      : held.status === "running" ? `run ${runId} is already being executed by ${held.worker ?? "another process"}` : `run ${runId} has already ended (${held.status})`);
  }
  const startedAt = new Date();
  const keysOf = cachedKeys(startedAt);
  rec.run({ id: runId, status: "running", startedAt });
  const beat = setInterval(() => void store.heartbeat(worker, [runId]).catch(() => undefined), options.heartbeatMs ?? 5_000);
  rec.event({ runId, type: "run_started", message: `run started: ${steps.length} steps` });

  // The units the run executes: a step, or a range of one asset's partitions when its
  // backfillPolicy takes ranges. Steps already `success` (a rerun's reused steps) count as done.
  const todoSteps = steps.filter((s) => outcomes.get(s.id)!.status !== "reused");
  const todoIds = new Set(todoSteps.map((s) => s.id));
  const units = stepUnits(
    todoSteps.map((s) => ({ ...s, deps: s.deps.filter((d) => todoIds.has(d)) })),
    (asset) => graph.asset(asset).backfillPolicy,
  );
  const dependents = new Map<string, StepUnit[]>();
  const waitingOn = new Map<string, number>();
  for (const u of units) {
    waitingOn.set(u.id, u.deps.length);
    for (const d of u.deps) {
      const list = dependents.get(d);
      if (list) list.push(u);
      else dependents.set(d, [u]);
    }
  }
  const ready = units.filter((u) => waitingOn.get(u.id) === 0);

  const finish = (outcome: StepOutcome): void => {
    outcomes.set(stepId(outcome.asset, outcome.partition), outcome);
    options.onProgress?.({ type: "step_finished", outcome });
  };

  /** Marks a unit that cannot run `upstream_failed`, and everything downstream of it. */
  const failDownstream = (first: StepUnit, cause: string): void => {
    const stack = [first];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (d.members.every((m) => outcomes.get(m.id)!.status === "upstream_failed")) continue;
      const error = `upstream step ${cause} failed`;
      for (const m of d.members) {
        rec.step({ runId, asset: m.asset, partition: m.partition, status: "upstream_failed", error, endedAt: new Date() });
        rec.event({ runId, asset: m.asset, partition: m.partition, type: "step_upstream_failed", level: "warn", message: `${m.id}: ${error}` });
        finish({ asset: m.asset, partition: m.partition, status: "upstream_failed", metadata: {}, error, attempts: 0, durationMs: null });
      }
      stack.push(...(dependents.get(d.id) ?? []));
    }
  };

  /** After a unit ended: a dependent with a member reading a step that did not succeed cannot run; the others wait on one unit fewer. */
  const release = (u: StepUnit): void => {
    const ended = new Map(u.members.map((m) => [m.id, outcomes.get(m.id)!.status]));
    for (const d of dependents.get(u.id) ?? []) {
      const broken = d.members.flatMap((m) => m.deps).find((dep) => ended.has(dep) && ended.get(dep) !== "success");
      if (broken !== undefined) {
        failDownstream(d, broken);
        continue;
      }
      const left = waitingOn.get(d.id)! - 1;
      waitingOn.set(d.id, left);
      if (left === 0) ready.push(d);
    }
  };

  let active = 0;
  const running = new Set<StepUnit>();
  /** Units given up on after the grace period: whatever they do later is not recorded. */
  const abandoned = new Set<StepUnit>();
  const interruptHooks = new Map<StepUnit, Array<() => Promise<unknown> | unknown>>();
  /** Pool slots held by running units, freed once (by the unit, or when it is abandoned). */
  const slots = new Map<StepUnit, { pool: string; slot: number }>();
  const freeSlot = async (u: StepUnit): Promise<void> => {
    const held = slots.get(u);
    if (held === undefined) return;
    slots.delete(u);
    await store.releasePoolSlot(held.pool, held.slot);
  };
  let interrupted = false;
  let grace: NodeJS.Timeout | undefined;
  let onAbort = (): void => undefined;
  await new Promise<void>((resolve) => {
    // On abort, running steps get a grace period to finish; what still runs then is interrupted.
    onAbort = (): void => {
      grace = setTimeout(() => {
        interrupted = true;
        const abandonedNow = [...running];
        for (const u of abandonedNow) {
          abandoned.add(u);
          const error = `interrupted: still running ${options.graceMs ?? 30_000} ms after shutdown began`;
          for (const s of u.members) {
            rec.step({ runId, asset: s.asset, partition: s.partition, status: "failed", endedAt: new Date(), error });
            rec.event({ runId, asset: s.asset, partition: s.partition, type: "step_failed", level: "error", message: `${s.id}: ${error}` });
            finish({ asset: s.asset, partition: s.partition, status: "failed", metadata: {}, error, attempts: 1, durationMs: null });
          }
        }
        // Give back what the abandoned steps hold (their interrupt hooks, their pool slots) before
        // the run ends, without waiting on the steps themselves; bounded, so a stuck hook cannot hold the exit.
        const cleanups = abandonedNow.flatMap((u) => [
          ...(interruptHooks.get(u) ?? []).map((fn) => async () => {
            await fn();
          }),
          async () => freeSlot(u),
        ].map((fn) => fn().catch((e: unknown) =>
          rec.event({ runId, asset: u.asset, partition: u.members[0]!.partition, type: "log", level: "warn", message: `${u.id}: interrupt hook failed: ${e instanceof Error ? e.message : String(e)}` }),
        )));
        let bound: NodeJS.Timeout | undefined;
        void Promise.race([Promise.all(cleanups), new Promise<void>((r) => (bound = setTimeout(r, INTERRUPT_HOOKS_MS)))]).then(() => {
          clearTimeout(bound);
          resolve();
        });
      }, options.graceMs ?? 30_000);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const pump = (): void => {
      while (active < concurrency && ready.length > 0 && !signal.aborted && !rec.error) {
        const u = ready.shift()!;
        if (u.members.every((m) => outcomes.get(m.id)!.status === "upstream_failed")) continue;
        active++;
        running.add(u);
        void runUnit(u).then((ended) => {
          active--;
          running.delete(u);
          interruptHooks.delete(u);
          if (interrupted) return; // already recorded as interrupted; the run has ended
          for (const o of ended) finish(o);
          release(u);
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
  for (const s of todoSteps) {
    const o = outcomes.get(s.id)!;
    if (o.status === "pending" || o.status === "running") {
      rec.step({ runId, asset: s.asset, partition: s.partition, status: "skipped", endedAt: new Date() });
      finish({ ...o, status: "skipped", durationMs: null });
    }
  }
  const all = steps.map((s) => outcomes.get(s.id)!);
  const status: RunOutcome["status"] = signal.aborted
    ? "canceled"
    : all.every((o) => o.status === "success" || o.status === "reused")
      ? "success"
      : "failed";
  const failed = all.filter((o) => o.status === "failed").length;
  const reused = all.filter((o) => o.status === "reused").length;
  rec.run({ id: runId, status, endedAt: new Date(), error: failed > 0 ? `${failed} step(s) failed` : null });
  rec.event({
    runId,
    type: `run_${status === "success" ? "succeeded" : status}`,
    level: status === "success" ? "info" : "error",
    message: `run ${status}: ${all.filter((o) => o.status === "success").length} succeeded, ${failed} failed, ${all.filter((o) => o.status === "upstream_failed").length} upstream failed${reused > 0 ? `, ${reused} reused` : ""}`,
  });
  try {
    await rec.flush();
  } finally {
    // heartbeats go on until the run's end is recorded: a flush waiting out a store outage is no dead worker
    clearInterval(beat);
  }
  return { runId, status, steps: all };

  async function runUnit(u: StepUnit): Promise<StepOutcome[]> {
    const def = graph.asset(u.asset);
    const limit = def.pool === undefined ? undefined : options.poolLimits?.[def.pool];
    if (def.pool === undefined || limit === undefined) return attemptUnit(u, def);
    // Wait for a slot of the asset's pool; the pool's limit holds across processes.
    let slot: number | undefined;
    while ((slot = await store.acquirePoolSlot(def.pool, limit, runId, u.id)) === undefined) {
      if (signal.aborted) return u.members.map((s) => ({ asset: s.asset, partition: s.partition, status: "skipped" as const, metadata: {}, attempts: 0, durationMs: null }));
      await sleep(100, signal);
    }
    slots.set(u, { pool: def.pool, slot });
    try {
      return await attemptUnit(u, def);
    } finally {
      await freeSlot(u).catch(() => undefined);
    }
  }

  /** One `materialize` call for the unit's steps, with retries; each step is recorded on its own. */
  async function attemptUnit(u: StepUnit, def: AssetDefinition): Promise<StepOutcome[]> {
    const maxAttempts = Math.max(1, def.retry?.maxAttempts ?? 1);
    const ranged = u.members.length > 1;
    const t0 = Date.now();
    let error = "";
    let failedMetadata: Record<string, unknown> = {};
    const interruptedOutcome = (attempt: number): StepOutcome[] =>
      u.members.map((s) => ({ asset: s.asset, partition: s.partition, status: "failed", metadata: {}, error: "interrupted", attempts: attempt, durationMs: Date.now() - t0 }));
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      for (const s of u.members) {
        const base = { asset: s.asset, partition: s.partition };
        options.onProgress?.({ type: "step_started", ...base, attempt });
        rec.step({ runId, ...base, status: "running", attempts: attempt, startedAt: new Date() });
        rec.event({ runId, ...base, type: "step_started", message: `${s.id}: started${ranged ? ` as part of ${u.id}` : ""}${attempt > 1 ? ` (attempt ${attempt})` : ""}` });
      }
      const hooks: Array<() => Promise<void>> = [];
      try {
        const result = await def.materialize(context(def, u, attempt, hooks));
        // Given up on meanwhile: it is recorded failed and its claims are given back; a late success changes nothing.
        if (abandoned.has(u)) return interruptedOutcome(attempt);
        const endedAt = new Date();
        const ended: StepOutcome[] = [];
        for (const s of u.members) {
          const base = { asset: s.asset, partition: s.partition };
          const own = ranged && s.partition !== null ? result?.partitions?.[s.partition] : undefined;
          const metadata = toJson({ ...(result?.metadata ?? {}), ...(own?.metadata ?? {}), ...(ranged ? { partitionRange: u.id.slice(u.asset.length) } : {}) });
          if (own?.error !== undefined) {
            rec.step({ runId, ...base, status: "failed", endedAt, error: own.error, metadata });
            rec.event({ runId, ...base, type: "step_failed", level: "error", message: `${s.id}: failed: ${own.error}` });
            ended.push({ ...base, status: "failed", metadata, error: own.error, attempts: attempt, durationMs: Date.now() - t0 });
            continue;
          }
          rec.step({ runId, ...base, status: "success", endedAt, error: null, metadata });
          rec.materialization({ ...base, runId, materializedAt: endedAt, codeVersion: def.codeVersion ?? null, dataVersion: own?.dataVersion ?? result?.dataVersion ?? null, metadata });
          rec.event({ runId, ...base, type: "step_succeeded", message: `${s.id}: materialized`, data: { metadata } });
          upstream.set(s.id, { ...base, runId, materializedAt: endedAt, metadata });
          ended.push({ ...base, status: "success", metadata, attempts: attempt, durationMs: Date.now() - t0 });
        }
        if (hooks.length > 0 && ended.some((o) => o.status === "success")) {
          await rec.flush(); // the materialization is durable before the hooks run
          for (const hook of hooks) {
            await hook().catch((e: unknown) =>
              rec.event({ runId, asset: u.asset, partition: u.members[0]!.partition, type: "log", level: "warn", message: `${u.id}: after-commit hook failed: ${e instanceof Error ? e.message : String(e)}` }),
            );
          }
        }
        return ended;
      } catch (e) {
        if (abandoned.has(u)) return interruptedOutcome(attempt);
        error = e instanceof Error ? e.message : String(e);
        failedMetadata = errorMetadata(e);
        const stack = e instanceof Error ? e.stack : undefined;
        for (const s of u.members) {
          rec.event({ runId, asset: s.asset, partition: s.partition, type: "step_attempt_failed", level: "error", message: `${s.id}: ${error}`, data: stack ? { stack } : null });
        }
        if (attempt < maxAttempts && !signal.aborted) {
          const delayMs = backoff(def, attempt);
          for (const s of u.members) {
            options.onProgress?.({ type: "step_retry", asset: s.asset, partition: s.partition, attempt, delayMs, error });
            rec.event({ runId, asset: s.asset, partition: s.partition, type: "step_retry", level: "warn", message: `${s.id}: retrying in ${delayMs} ms` });
          }
          await sleep(delayMs, signal);
        }
      }
    }
    return u.members.map((s) => {
      const base = { asset: s.asset, partition: s.partition };
      rec.step({ runId, ...base, status: "failed", endedAt: new Date(), error, metadata: failedMetadata });
      rec.event({ runId, ...base, type: "step_failed", level: "error", message: `${s.id}: failed: ${error}` });
      return { ...base, status: "failed" as const, metadata: failedMetadata, error, attempts: maxAttempts, durationMs: Date.now() - t0 };
    });
  }

  function context(def: AssetDefinition, u: StepUnit, attempt: number, hooks: Array<() => Promise<void>>): StepContext {
    const first = u.members[0]!;
    const log = (level: "debug" | "info" | "warn" | "error") => (message: string, data?: Record<string, unknown>) =>
      rec.event({ runId, asset: u.asset, partition: first.partition, type: "log", level, message, data: data ? toJson(data) : null });
    const logger: StepLogger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
    // A range reads what each of its partitions reads, once.
    const partitionsOf = (key: string): UpstreamMaterialization[] => {
      const seen = new Set<string>();
      const out: UpstreamMaterialization[] = [];
      for (const s of u.members) {
        const reads = upstreamPartitions(def, graph.asset(key), s.partition, keysOf);
        for (const p of reads ?? [null]) {
          const id = stepId(key, p);
          const m = upstream.get(id);
          if (m && !seen.has(id)) {
            seen.add(id);
            out.push(m);
          }
        }
      }
      return out;
    };
    const upstreamView: Record<string, UpstreamMaterialization | undefined> = {};
    for (const key of def.deps) {
      const list = partitionsOf(key);
      upstreamView[key] = list.reduce<UpstreamMaterialization | undefined>((a, b) => (a && a.materializedAt >= b.materializedAt ? a : b), undefined);
    }
    return {
      runId,
      asset: def,
      assetKey: u.asset,
      partitionKey: first.partition,
      partitionKeys: u.members.flatMap((s) => (s.partition === null ? [] : [s.partition])),
      attempt,
      log: logger,
      upstream: upstreamView,
      upstreamPartitions: (key) => partitionsOf(typeof key === "string" ? key : key.key),
      signal,
      resource: (name) => resources.get(name),
      afterCommit: (fn) => void hooks.push(fn),
      onInterrupt: (fn) => {
        const list = interruptHooks.get(u);
        if (list) list.push(fn);
        else interruptHooks.set(u, [fn]);
      },
    };
  }
}

function backoff(def: AssetDefinition, attempt: number): number {
  const r = def.retry!;
  return Math.min(r.maxDelayMs ?? 30_000, Math.round((r.delayMs ?? 500) * (r.backoff ?? 2) ** (attempt - 1)));
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
