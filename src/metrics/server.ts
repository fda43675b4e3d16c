import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { StateStore } from "../state/index.js";

/**
 * A Prometheus registry whose floe metrics are read from the state store at each scrape, so one
 * `floe serve` reports on every scheduler and worker sharing the store. Labels are bounded:
 * statuses, triggers and asset keys, never run ids or file paths.
 *
 * @example
 * const registry = storeMetrics(store);
 * console.log(await registry.metrics());
 */
export function storeMetrics(store: StateStore): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "floe_" });
  let pending: ReturnType<StateStore["summary"]> | undefined;
  // One store round trip per scrape, shared by every gauge's collect().
  const summary = (): ReturnType<StateStore["summary"]> => {
    pending ??= store.summary().finally(() => setImmediate(() => (pending = undefined)));
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
  new Gauge({
    name: "floe_run_heartbeat_age_seconds",
    help: "Age of the stalest heartbeat among running runs (0 when none runs).",
    registers: [registry],
    async collect() {
      this.set((await summary()).stalestHeartbeatSeconds);
    },
  });
  return registry;
}

export interface HealthReport {
  status: "ok" | "failing";
  checks: Record<string, { ok: boolean; detail?: string; latencyMs?: number }>;
}

/**
 * Health of the parts floe depends on: the state store answers, and no running run has a
 * heartbeat older than `staleAfterSeconds`.
 *
 * @example
 * const report = await health(store, 15); // { status: "ok", checks: { stateStore: { ok: true, latencyMs: 1 } … } }
 */
export async function health(store: StateStore, staleAfterSeconds: number): Promise<HealthReport> {
  const checks: HealthReport["checks"] = {};
  const t0 = performance.now();
  try {
    await store.ping();
    checks.stateStore = { ok: true, latencyMs: Math.round(performance.now() - t0) };
    const { stalestHeartbeatSeconds } = await store.summary();
    checks.workers = stalestHeartbeatSeconds > staleAfterSeconds
      ? { ok: false, detail: `a running run has not heartbeated for ${Math.round(stalestHeartbeatSeconds)} s` }
      : { ok: true };
  } catch (e) {
    checks.stateStore = { ok: false, detail: (e instanceof Error ? e.message : String(e)).split("\n")[0]! };
  }
  return { status: Object.values(checks).every((c) => c.ok) ? "ok" : "failing", checks };
}

/**
 * Serves `/metrics` (Prometheus text), `/health` (200 or 503 with a JSON report) and `/ready`.
 *
 * @example
 * const server = await serveMetrics(store, { port: 9464 });
 */
export async function serveMetrics(store: StateStore, opts: { port: number; host?: string; staleAfterSeconds?: number }): Promise<{ server: Server; port: number }> {
  const registry = storeMetrics(store);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    void (async () => {
      if (path === "/metrics") {
        try {
          const text = await registry.metrics();
          res.writeHead(200, { "content-type": registry.contentType }).end(text);
        } catch (e) {
          res.writeHead(503, { "content-type": "text/plain" }).end(`state store unreachable: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}\n`);
        }
      } else if (path === "/health" || path === "/ready") {
        const report = await health(store, opts.staleAfterSeconds ?? 15);
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
