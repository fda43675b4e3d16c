import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";
import { redact } from "../secrets.js";
import { withTimeout } from "../timers.js";
import type { StateStore } from "../state/index.js";
import { STEP_DURATION_BUCKETS, readStoreMetrics, type StoreMetrics } from "../state/metrics.js";
import { heartbeatAges } from "../state/processes.js";

/**
 * A Prometheus registry whose floe metrics are read from the state store at each scrape, so one
 * `floe serve` reports on every scheduler and worker sharing the store. Labels are bounded:
 * statuses, triggers and asset keys, never run ids or file paths.
 *
 * @example
 * const registry = storeMetrics(store); // a scrape fails after 10 s of a silent store
 * console.log(await registry.metrics());
 */
export function storeMetrics(store: StateStore, timeoutMs = 10_000): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "floe_" });
  let pending: ReturnType<StateStore["summary"]> | undefined;
  // One store round trip per scrape, shared by every gauge's collect().
  const summary = (): ReturnType<StateStore["summary"]> => {
    // a store that hangs fails the scrape after timeoutMs, and the next scrape asks again
    pending ??= withTimeout(store.summary(), timeoutMs, `the state store did not answer within ${timeoutMs} ms`).finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
  new Gauge({
    name: "floe_runs",
    help: "Runs in the state store by status and trigger.",
    labelNames: ["status", "trigger"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of (await summary()).runs) this.set({ status: r.status, trigger: r.trigger }, r.count);
    },
  });
  new Gauge({
    name: "floe_steps",
    help: "Steps in the state store by asset and status.",
    labelNames: ["asset", "status"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of (await summary()).steps) this.set({ asset: s.asset, status: s.status }, s.count);
    },
  });
  new Gauge({
    name: "floe_queue_depth",
    help: "Runs waiting for a worker.",
    registers: [registry],
    async collect() {
      this.set((await summary()).queueDepth);
    },
  });
  let pendingMetrics: Promise<StoreMetrics> | undefined;
  const data = (): Promise<StoreMetrics> => {
    pendingMetrics ??= withTimeout(readStoreMetrics(store), timeoutMs, `the state store did not answer within ${timeoutMs} ms`).finally(() => setImmediate(() => (pendingMetrics = undefined)));
    return pendingMetrics;
  };
  registry.registerMetric(storeHistogram("floe_step_duration_seconds", "Duration of finished steps (last attempt) by asset and status.", data));
  new Counter({
    name: "floe_rows_written_total",
    help: "Rows written by successful steps (their materialization metadata `rows`), by asset.",
    labelNames: ["asset"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of (await data()).written) if (w.rows > 0) this.inc({ asset: w.asset }, w.rows);
    },
  });
  new Counter({
    name: "floe_iceberg_commit_retries_total",
    help: "Iceberg commits retried after a concurrent commit (materialization metadata `icebergCommitRetries`), by asset.",
    labelNames: ["asset"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of (await data()).written) if (w.icebergCommitRetries > 0) this.inc({ asset: w.asset }, w.icebergCommitRetries);
    },
  });
  new Gauge({
    name: "floe_files",
    help: "Raw files in the ingestion ledger by source asset and status (DISCOVERED, PROCESSING, SUCCESS, FAILED, SKIPPED).",
    labelNames: ["asset", "status"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await data()).files) this.set({ asset: f.asset, status: f.status }, f.count);
    },
  });
  new Gauge({
    name: "floe_backfill_partitions",
    help: "Backfill partitions by the state of the run that decides them (queued, running, success, failed, canceled).",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const b of (await data()).backfillPartitions) this.set({ state: b.state }, b.count);
    },
  });
  new Gauge({
    name: "floe_schedule_tick_delay_seconds",
    help: "Per schedule, from its latest tick's time to the start of its run (growing while the run waits in the queue).",
    labelNames: ["schedule"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const t of (await data()).tickDelays) this.set({ schedule: t.schedule }, t.seconds);
    },
  });
  new Gauge({
    name: "floe_run_heartbeat_age_seconds",
    help: "Age of the stalest heartbeat among running runs (0 when none runs).",
    registers: [registry],
    async collect() {
      this.set((await summary()).stalestHeartbeatSeconds);
    },
  });
  new Counter({
    name: "floe_notification_deliveries_total",
    help: "Notification delivery attempts by notifier, event and outcome (retried: an attempt failed and another follows), by every process sharing the store.",
    labelNames: ["notifier", "event", "outcome"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of (await data()).deliveries) this.inc({ notifier: d.notifier, event: d.event, outcome: d.outcome }, d.count);
    },
  });
  return registry;
}

/**
 * A histogram whose buckets are counted by the state store (prom-client's Histogram only
 * observes values one by one): it renders `_bucket`, `_sum` and `_count` like one.
 */
function storeHistogram(name: string, help: string, data: () => Promise<StoreMetrics>): Metric {
  const metric = {
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    async get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      for (const d of (await data()).stepDurations) {
        const labels = { asset: d.asset, status: d.status };
        STEP_DURATION_BUCKETS.forEach((le, i) => values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: d.buckets[i] ?? 0 }));
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: d.count });
        values.push({ metricName: `${name}_sum`, labels, value: d.sum });
        values.push({ metricName: `${name}_count`, labels, value: d.count });
      }
      return { name, help, type: "histogram", aggregator: "sum", values };
    },
  };
  return metric as unknown as Metric;
}

export interface HealthReport {
  status: "ok" | "failing";
  checks: Record<string, { ok: boolean; detail?: string; latencyMs?: number; ageSeconds?: number }>;
}

/**
 * Health of the parts floe depends on: the state store answers, no running run has a heartbeat
 * older than `staleAfterSeconds`, and each role (scheduler, worker) seen in the last day has a
 * process that heartbeated within it (a process that stops cleanly is forgotten).
 *
 * @example
 * const report = await health(store, 15); // { status: "ok", checks: { stateStore: { ok: true, latencyMs: 1 } … } }
 */
export async function health(store: StateStore, staleAfterSeconds: number, timeoutMs = 2_000): Promise<HealthReport> {
  const checks: HealthReport["checks"] = {};
  const t0 = performance.now();
  try {
    // A store that hangs (a network partition, a locked database) must not hang /health.
    await withTimeout(store.ping(), timeoutMs, `the state store did not answer within ${timeoutMs} ms`);
    checks.stateStore = { ok: true, latencyMs: Math.round(performance.now() - t0) };
    const [{ stalestHeartbeatSeconds }, processes] = await withTimeout(
      Promise.all([store.summary(), heartbeatAges(store)]),
      timeoutMs,
      `the state store did not answer within ${timeoutMs} ms`,
    );
    checks.runs = stalestHeartbeatSeconds > staleAfterSeconds
      ? { ok: false, detail: `a running run has not heartbeated for ${Math.round(stalestHeartbeatSeconds)} s` }
      : { ok: true };
    // each role seen in the last day: its freshest process must have beaten lately
    for (const p of processes) {
      checks[p.role] = p.ageSeconds > staleAfterSeconds
        ? { ok: false, detail: `no ${p.role} has heartbeated for ${Math.round(p.ageSeconds)} s`, ageSeconds: Math.round(p.ageSeconds) }
        : { ok: true, ageSeconds: Math.round(p.ageSeconds * 10) / 10 };
    }
  } catch (e) {
    // the driver's message may quote a connection string: secrets are redacted
    checks.stateStore = { ok: false, detail: redact((e instanceof Error ? e.message : String(e)).split("\n")[0]!) };
  }
  return { status: Object.values(checks).every((c) => c.ok) ? "ok" : "failing", checks };
}

/**
 * Serves `/metrics` (Prometheus text), `/health` (200 or 503 with a JSON report) and `/ready`.
 *
 * @example
 * const server = await serveMetrics(store, { port: 9464 });
 */
export async function serveMetrics(
  store: StateStore,
  opts: {
    port: number;
    host?: string;
    staleAfterSeconds?: number;
    /** How long /health and /ready wait for the store before answering 503 (default 2 000 ms). */
    healthTimeoutMs?: number;
    /** How long /metrics waits for the store before answering 503 (default 10 000 ms). */
    storeTimeoutMs?: number;
  },
): Promise<{ server: Server; port: number }> {
  const registry = storeMetrics(store, opts.storeTimeoutMs ?? 10_000);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    void (async () => {
      if (path === "/metrics") {
        try {
          const text = await registry.metrics();
          res.writeHead(200, { "content-type": registry.contentType }).end(text);
        } catch (e) {
          res.writeHead(503, { "content-type": "text/plain" }).end(`state store unreachable: ${redact((e instanceof Error ? e.message : String(e)).split("\n")[0]!)}\n`);
        }
      } else if (path === "/health" || path === "/ready") {
        const report = await health(store, opts.staleAfterSeconds ?? 15, opts.healthTimeoutMs ?? 2_000);
        res.writeHead(report.status === "ok" ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify(report));
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /health or /ready\n");
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

