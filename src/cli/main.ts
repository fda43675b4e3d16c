import { Command, CommanderError } from "commander";
import { UserError, isUserError } from "../errors.js";
import { checksOf, type CheckView } from "../check-results.js";
import { redact } from "../secrets.js";
import type { AssetGraph } from "../dag/graph.js";
import { plan, stepId, type PartitionSelection } from "../dag/plan.js";
import { select } from "../dag/selection.js";
import { loadSettings, resolveProjectDir, type ProjectSettings } from "../project/config.js";
import { loadProject } from "../project/load.js";
import { builtinResources } from "../project/plugins.js";
import { resourceMigrations, resourcePool, type ResourcePool } from "../project/resources.js";
import { failDeadRuns, processOwner } from "../runner/liveness.js";
import { materialize, parsePriority, partitionRangeOf, RANGE_STATUS_THRESHOLD, rerun, statusOf, statusRanges, type MaterializeOutcome } from "../runner/launch.js";
import type { ProgressEvent, RunOutcome } from "../runner/runner.js";
import type { RunRecord, StateStore } from "../state/index.js";
import { describeOutage } from "../state/transient.js";
import { duration, ranges, rangesText, shortId, symbol, table, time } from "./format.js";
import { floePackage } from "./init.js";

/** Where the CLI writes; tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(redact(t.endsWith("\n") ? t : `${t}\n`)),
  err: (t) => process.stderr.write(redact(t.endsWith("\n") ? t : `${t}\n`)),
};

/** Exit codes of the CLI contract. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

interface Common {
  project?: string;
  json?: boolean;
}

/**
 * Runs the floe CLI and resolves to its exit code: 0 success, 1 the work failed, 2 bad input.
 *
 * @example
 * process.exitCode = await main(["materialize", "--select", "+orders"]);
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let code: number = EXIT.ok;
  const program = new Command("floe")
    .description("Asset-based data orchestrator: declare assets in pipelines/*.ts, materialize them, watch them.")
    .version(floePackage().version, "-V, --version", "print floe's version")
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
      outputError: (s, write) => write(`floe: ${s.replace(/^error: /, "")}`),
    });

  const command = (name: string, description: string): Command =>
    program
      .command(name)
      .description(description)
      .option("--project <dir>", "project folder (default: the nearest folder, from the current one upward, with pipelines/ or floe.config.ts)")
      .exitOverride();

  program
    .command("init")
    .description("start a floe project: package.json (type module), tsconfig.json, floe.config.ts, an example daily pipeline with its test")
    .argument("[dir]", "folder to create it in (default: the current folder); never overwrites a file")
    .exitOverride()
    .action(async (dir: string | undefined) => {
      const { initProject, initSummary } = await import("./init.js");
      io.out(initSummary(initProject(dir ?? process.cwd()), process.cwd()));
    });

  command("check", "type-check the project (tsc --noEmit) and validate floe.config.ts, every pipeline module and the graph")
    .option("--json", "the problems as JSON")
    .action(async (o: Common) => {
      const { checkProject, checkSummary, formatProblem } = await import("./check.js");
      const report = await checkProject(resolveProjectDir(o.project));
      if (o.json) io.out(JSON.stringify({ problems: report.problems, typescript: report.typescript && { version: report.typescript.version, from: report.typescript.from }, modules: report.modules, pipelines: report.pipelines, assets: report.assets }, null, 2));
      else io.out([...report.problems.map(formatProblem), checkSummary(report)].join("\n"));
      code = report.problems.length === 0 ? EXIT.ok : EXIT.usage; // a bad pipeline module is bad input, as for every command
    });

  command("list", "list assets with their kind, pipeline and partitions")
    .option("--json", "machine-readable output")
    .action(async (o: Common) => {
      const { graph } = await project(o);
      const assets = graph.generations().flat().map((key) => {
        const { asset, pipeline, module } = graph.node(key);
        return { key, kind: asset.kind, kinds: asset.kinds, pipeline, module, partitions: asset.partitions?.describe() ?? null, deps: [...asset.deps], tags: asset.tags };
      });
      if (o.json) {
        const pipelines = [...graph.pipelines.values()].map(({ pipeline, module }) => ({
          name: pipeline.name, module, assets: pipeline.assets.map((a) => a.key), schedule: pipeline.schedule ?? null,
        }));
        io.out(JSON.stringify({ assets, pipelines }, null, 2));
        return;
      }
      io.out(table(["ASSET", "KIND", "PIPELINE", "PARTITIONS", "DEPS"], assets.map((a) => [a.key, a.kind, a.pipeline, a.partitions ?? "", a.deps.join(", ")])));
    });

  command("lineage", "show the asset graph, upstream to downstream")
    .option("--select <selection>", "only these assets (selection syntax)")
    .option("--json", "nodes and edges as JSON")
    .action(async (o: Common & { select?: string }) => {
      const { graph } = await project(o);
      const keys = o.select === undefined ? new Set(graph.keys()) : selectOrFail(graph, o.select);
      const generations = graph.generations(keys);
      const nodes = generations.flat().map((key) => ({ key, kind: graph.asset(key).kind, pipeline: graph.node(key).pipeline }));
      const edges = nodes.flatMap((n) => graph.parents(n.key).filter((p) => keys.has(p)).map((p) => ({ from: p, to: n.key })));
      if (o.json) {
        io.out(JSON.stringify({ nodes, edges }, null, 2));
        return;
      }
      const lines: string[] = [];
      generations.forEach((gen, i) => {
        lines.push(`${i === 0 ? "" : "\n"}generation ${i}`);
        for (const key of gen) {
          const from = graph.parents(key).filter((p) => keys.has(p));
          lines.push(`  ${from.length > 0 ? `${from.join(", ")} ─▶ ` : ""}${key}  (${graph.asset(key).kind}, ${graph.node(key).pipeline})`);
        }
      });
      io.out(lines.join("\n"));
    });

  command("materialize", "materialize a selection of assets now")
    .requiredOption("--select <selection>", "assets to materialize, e.g. `+orders` or `pipeline:orders`")
    .option("--partition <key>", "one partition of the partitioned assets")
    .option("--from <key>", "first partition of a range")
    .option("--to <key>", "last partition of a range")
    .option("--stale", "only steps that are stale, missing or failed (and what they feed)")
    .option("--dry-run", "print the planned steps and exit, touching no state")
    .option("--queue", "enqueue the run for `floe worker` instead of executing it here")
    .option("--priority <n>", "with --queue: queue priority, a whole number (default 0; higher is claimed first)")
    .option("--json", "machine-readable result")
    .action(async (o: Common & { select: string; partition?: string; from?: string; to?: string; stale?: boolean; dryRun?: boolean; queue?: boolean; priority?: string }) => {
      const partitions = partitionSelection(o);
      const priority = o.priority === undefined ? undefined : parsePriority(o.priority);
      if (priority !== undefined && !o.queue) throw new UserError("--priority orders the queue; use it with --queue (or with floe backfill)");
      const ctx = await project(o);
      const assets = selectOrFail(ctx.graph, o.select);
      if (o.dryRun) {
        if (o.stale) throw new UserError("--dry-run cannot be combined with --stale (staleness needs the state store)");
        const planned = plan(ctx.graph, assets, partitions);
        if (o.json) io.out(JSON.stringify({ steps: planned.steps.map((s) => ({ asset: s.asset, partition: s.partition, deps: s.deps })), generations: planned.generations.length }));
        else io.out(`${planned.steps.length} steps in ${planned.generations.length} generations:\n${planned.generations.map((g, i) => `  ${i}: ${g.join(" ")}`).join("\n")}`);
        return;
      }
      if (o.queue) {
        if (o.stale) throw new UserError("--queue cannot be combined with --stale yet");
        const planned = plan(ctx.graph, assets, partitions);
        const run = await withStore(ctx.settings, "floe materialize", (store) =>
          store.createRun({ trigger: "manual", selection: o.select, partitionRange: partitionRangeOf(partitions), status: "queued", ...(priority === undefined ? {} : { priority }), steps: planned.steps.map((s) => ({ asset: s.asset, partition: s.partition })) }),
        );
        if (o.json) io.out(JSON.stringify({ runId: run.id, status: "queued", steps: planned.steps.map((s) => ({ asset: s.asset, partition: s.partition, status: "pending", metadata: {} })) }, null, 2));
        else io.out(`run ${shortId(run.id)} queued: ${planned.steps.length} steps; a \`floe worker\` will execute it`);
        return;
      }
      const notify = await notifications(io, ctx);
      code = await withStore(ctx.settings, "floe materialize", async (store, resources) => {
        await failDeadRuns(store, ctx.settings.heartbeatMs * 3); // runs whose process died (kill -9) end failed
        const outcome = await cancellable((signal) =>
          materialize(store, ctx.graph, { assets, selection: o.select, ...(partitions ? { partitions } : {}), staleOnly: o.stale === true }, {
            signal, resources, graceMs: ctx.settings.shutdownGraceMs, poolLimits: ctx.settings.pools, worker: processOwner(), heartbeatMs: ctx.settings.heartbeatMs, ...(ctx.settings.concurrency ? { concurrency: ctx.settings.concurrency } : {}), ...(o.json ? {} : { onProgress: progress(io) }),
          }),
        );
        if (outcome.runId !== null) notify.run(outcome, store);
        await notify.drain();
        return report(io, outcome, o.json === true, o.stale ? "nothing is stale or missing in the selection" : "");
      });
    });

  command("status", "status of each asset (and partition): materialized, stale, missing, failed, running")
    .option("--select <selection>", "only these assets")
    .option("--json", "one row per asset partition")
    .action(async (o: Common & { select?: string }) => {
      const ctx = await project(o);
      const keys = o.select === undefined ? ctx.graph.generations().flat() : ctx.graph.generations(selectOrFail(ctx.graph, o.select)).flat();
      // Huge time definitions (hourly over years) are summarised as ranges in SQL, never key by key.
      const huge = new Set(o.json ? [] : keys.filter((k) => {
        const b = ctx.graph.asset(k).partitions?.bounds?.();
        return b !== undefined && b.last - b.first + 1 > RANGE_STATUS_THRESHOLD;
      }));
      const [rows, rangesOf, lastChecks] = await withStore(ctx.settings, "floe status", async (store) => {
        const small = keys.filter((k) => !huge.has(k));
        const rows = await statusOf(store, ctx.graph, small);
        // Check results of each partition's last finished step: the failed step when the partition
        // failed since (an error check blocks the materialization), else its materialization.
        // Three set-based reads, whatever the number of partitions.
        const [mats, failedSteps] = await Promise.all([
          store.latestMaterializations(small),
          store.getStepsOfRuns([...new Set(rows.flatMap((r) => (r.status === "failed" && r.lastRunId !== null ? [r.lastRunId] : [])))]),
        ]);
        const matOf = new Map(mats.map((m) => [stepId(m.asset, m.partition), m]));
        const checks = new Map<string, { at: Date | null; checks: CheckView[] }>();
        for (const r of rows) {
          const id = stepId(r.asset, r.partition);
          const step = r.status === "failed" ? failedSteps.get(r.lastRunId!)?.find((x) => x.asset === r.asset && x.partition === r.partition) : undefined;
          const mat = matOf.get(id);
          checks.set(id, step ? { at: step.endedAt, checks: checksOf(step.metadata) } : { at: mat?.materializedAt ?? null, checks: checksOf(mat?.metadata) });
        }
        return [rows, new Map(await Promise.all([...huge].map(async (k) => [k, (await statusRanges(store, ctx.graph, k))!] as const))), checks] as const;
      });
      if (o.json) {
        // `checks`: every check result of the partition's last materialization (or of its last failed step), [] when none
        io.out(JSON.stringify(rows.map((r) => ({
          asset: r.asset, partition: r.partition, status: r.status, lastRunId: r.lastRunId,
          lastMaterializedAt: r.lastMaterializedAt?.toISOString() ?? null, ...(r.reason ? { reason: r.reason } : {}),
          checks: lastChecks.get(stepId(r.asset, r.partition))?.checks ?? [],
        })), null, 2));
        return;
      }
      // Per asset: the failed checks (warn and error) of its most recent materialization or failed step.
      const checkLines: string[] = [];
      for (const key of keys) {
        const latest = rows
          .filter((r) => r.asset === key)
          .map((r) => ({ r, c: lastChecks.get(stepId(r.asset, r.partition)) }))
          .reduce<{ r: (typeof rows)[number]; c: { at: Date | null; checks: CheckView[] } | undefined } | undefined>((a, b) => (!a || (b.c?.at ?? 0) > (a.c?.at ?? 0) ? b : a), undefined);
        const failedChecks = latest?.c?.checks.filter((c) => !c.passed) ?? [];
        if (!latest || failedChecks.length === 0) continue;
        const where = latest.r.partition === null ? key : stepId(key, latest.r.partition);
        checkLines.push(`  ${where}: ${failedChecks.map((c) => `${c.severity === "warn" ? "!" : "✗"} ${c.name} (${c.severity}: ${c.message})`).join(", ")}`);
      }
      const out: string[][] = [];
      for (const key of keys) {
        const big = rangesOf.get(key);
        if (big) {
          out.push([key, rangesText(big.ranges), time(big.lastMaterializedAt)]);
          continue;
        }
        const mine = rows.filter((r) => r.asset === key);
        const latest = mine.reduce<(typeof mine)[number] | undefined>((a, b) => (!a || (b.lastMaterializedAt ?? 0) > (a.lastMaterializedAt ?? 0) ? b : a), undefined);
        const when = time(latest?.lastMaterializedAt ?? null);
        if (ctx.graph.asset(key).partitions === undefined) {
          const r = mine[0]!;
          out.push([key, `${symbol(r.status)} ${r.status}${r.reason ? ` (${r.reason})` : ""}`, when]);
        } else {
          const spans = ranges(mine.map((r) => ({ key: r.partition!, status: r.status })));
          const text = spans.length === 0 ? "no partitions yet" : rangesText(spans);
          out.push([key, text, when]);
        }
      }
      io.out(table(["ASSET", "STATUS", "LAST MATERIALIZED"], out));
      if (checkLines.length > 0) io.out(["", "failed checks (last materialization):", ...checkLines].join("\n"));
    });

  command("runs", "recent runs, newest first")
    .option("--limit <n>", "how many", "20")
    .option("--json", "machine-readable output")
    .action(async (o: Common & { limit: string }) => {
      const limit = positiveInt(o.limit, "--limit");
      const settings = await loadSettings(resolveProjectDir(o.project));
      const runs = await withStore(settings, "floe runs", (store) => store.listRuns({ limit }));
      if (o.json) {
        io.out(JSON.stringify(runs.map(runJson), null, 2));
        return;
      }
      if (runs.length === 0) {
        io.out("no runs yet; start one with `floe materialize --select <asset>`");
        return;
      }
      io.out(table(["RUN", "STATUS", "TRIGGER", "STARTED", "DURATION", "SELECTION"], runs.map((r) => [
        shortId(r.id), r.status, r.trigger, time(r.startedAt ?? r.createdAt),
        duration(r.startedAt && r.endedAt ? r.endedAt.getTime() - r.startedAt.getTime() : null),
        `${r.selection ?? ""}${r.partitionRange ? ` [${r.partitionRange}]` : ""}`,
      ])));
    });

  command("run", "one run: its steps, timings, errors and logs")
    .argument("<id>", "run id or a unique prefix of it (4+ characters)")
    .option("--json", "machine-readable output")
    .action(async (id: string, o: Common) => {
      const settings = await loadSettings(resolveProjectDir(o.project));
      const { run, steps, events } = await withStore(settings, "floe run", async (store) => {
        const r = await store.getRun(id);
        const [s, e] = await Promise.all([store.getSteps(r.id), store.getEvents(r.id)]);
        // a rerun's step carried over from its parent (success, never started here) is shown as reused
        const shown = s.map((x) => (r.parentRunId !== null && x.status === "success" && x.startedAt === null ? { ...x, status: "reused" as const } : x));
        return { run: r, steps: shown, events: e };
      });
      if (o.json) {
        io.out(JSON.stringify({
          ...runJson(run),
          steps: steps.map((s) => ({
            asset: s.asset, partition: s.partition, status: s.status, metadata: s.metadata, attempts: s.attempts,
            ...(s.status === "reused" ? { reusedFrom: run.parentRunId } : {}),
            startedAt: s.startedAt?.toISOString() ?? null, endedAt: s.endedAt?.toISOString() ?? null, ...(s.error ? { error: s.error } : {}),
          })),
          events: events.map((e) => ({ id: e.id, at: e.createdAt.toISOString(), type: e.type, level: e.level, asset: e.asset, partition: e.partition, message: e.message, data: e.data })),
        }, null, 2));
        return;
      }
      const lines = [
        `run ${run.id}  ${run.status}  (${run.trigger}${run.parentRunId ? ` of ${shortId(run.parentRunId)}` : ""})`,
        `selection ${run.selection ?? ""}${run.partitionRange ? `  partitions ${run.partitionRange}` : ""}`,
        `started ${time(run.startedAt)}  ended ${time(run.endedAt)}  ${duration(run.startedAt && run.endedAt ? run.endedAt.getTime() - run.startedAt.getTime() : null)}`,
        "",
        table(["STEP", "STATUS", "ATTEMPTS", "DURATION", "ERROR"], steps.map((s) => [
          stepId(s.asset, s.partition), `${symbol(s.status)} ${s.status}`, String(s.attempts),
          duration(s.startedAt && s.endedAt ? s.endedAt.getTime() - s.startedAt.getTime() : null), (s.error ?? "").split("\n")[0]!,
        ])),
      ];
      // Check results and quarantined rows, from each step's metadata (failed checks also appear as events).
      const checkLines: string[] = [];
      for (const s of steps) {
        const name = stepId(s.asset, s.partition);
        const checks = checksOf(s.metadata);
        if (checks.length > 0) checkLines.push(`  ${name}: ${checks.map((c) => `${c.passed ? "✓" : c.severity === "warn" ? "!" : "✗"} ${c.name}${c.passed ? "" : ` (${c.message})`}`).join(", ")}`);
        if (typeof s.metadata.invalidRows === "number" && s.metadata.invalidRows > 0) {
          checkLines.push(`  ${name}: ${s.metadata.invalidRows} invalid row(s)${typeof s.metadata.quarantine === "string" ? ` quarantined in ${s.metadata.quarantine}` : ""}`);
        }
      }
      if (checkLines.length > 0) lines.push("", "checks:", ...checkLines);
      const logs = events.filter((e) => e.type === "log" || e.level === "error" || e.level === "warn").slice(-30);
      if (logs.length > 0) {
        lines.push("", "events:");
        for (const e of logs) lines.push(`  ${time(e.createdAt)} ${e.level.padEnd(5)} ${e.asset ? `${stepId(e.asset, e.partition || null)}: ` : ""}${e.type === "log" ? e.message : e.message.replace(/^[^:]+: /, "")}`);
      }
      io.out(lines.join("\n"));
    });

  command("rerun", "re-execute a run as a new run")
    .argument("<id>", "run id or a unique prefix of it")
    .option("--from-failure", "only the failed and upstream-failed steps; reuse its successes")
    .option("--json", "machine-readable result")
    .action(async (id: string, o: Common & { fromFailure?: boolean }) => {
      const ctx = await project(o);
      const notify = await notifications(io, ctx);
      code = await withStore(ctx.settings, "floe rerun", async (store, resources) => {
        await failDeadRuns(store, ctx.settings.heartbeatMs * 3); // a run whose process died can be rerun at once
        const outcome = await cancellable((signal) =>
          rerun(store, ctx.graph, id, { fromFailure: o.fromFailure === true }, { signal, resources, graceMs: ctx.settings.shutdownGraceMs, poolLimits: ctx.settings.pools, worker: processOwner(), heartbeatMs: ctx.settings.heartbeatMs, ...(o.json ? {} : { onProgress: progress(io) }) }),
        );
        if (outcome) notify.run(outcome, store);
        await notify.drain();
        if (outcome === null) {
          const run = await store.getRun(id);
          const msg = `run ${shortId(run.id)} has no failed steps; nothing to rerun`;
          if (o.json) io.out(JSON.stringify({ runId: null, status: "success", steps: [], message: msg }, null, 2));
          else io.out(msg);
          return EXIT.ok;
        }
        return report(io, outcome, o.json === true, "");
      });
    });

  command("worker", "execute queued runs (a deployment role; use with FLOE_DATABASE_URL)")
    .option("--runs <n>", "runs executed at once", "1")
    .option("--metrics-port <n>", "also serve /metrics, /health and /ready on this port")
    .option("--until-empty", "exit when the queue is empty")
    .action(async (o: Common & { runs: string; untilEmpty?: boolean; metricsPort?: string }) => {
      const runs = positiveInt(o.runs, "--runs");
      const recoveries = runRetries();
      const ctx = await project(o);
      const { runWorker } = await import("../runner/worker.js");
      const notify = await notifications(io, ctx);
      await withStore(ctx.settings, "floe worker", async (store, resources) => {
        const metrics = await metricsServer(io, store, o.metricsPort, ctx.settings);
        io.err(`floe worker: waiting for queued runs (${runs} at a time; Ctrl-C stops after the running ones)`);
        await cancellable((signal) =>
          runWorker(store, ctx.graph, {
            runs, signal, resources, graceMs: ctx.settings.shutdownGraceMs, poolLimits: ctx.settings.pools, untilEmpty: o.untilEmpty === true, heartbeatMs: ctx.settings.heartbeatMs,
            onOutage: (e) => io.err(describeOutage("floe worker", e)),
            recoveries,
            onBackfillSettled: (id) => notify.preparing(announceBackfill(notify, store, ctx.graph, id)),
            ...(ctx.settings.maxConcurrentRuns ? { maxRunning: ctx.settings.maxConcurrentRuns } : {}),
            ...(ctx.settings.concurrency ? { concurrency: ctx.settings.concurrency } : {}),
            onRun: (r) => {
              notify.run(r, store);
              io.out(`run ${shortId(r.runId)} ${r.status}: ${r.steps.filter((x) => x.status === "success").length}/${r.steps.length} steps succeeded`);
            },
          }),
          "stopping: no new runs are claimed; running steps finish",
        );
        await notify.drain();
        metrics?.close();
      });
    });

  const backfill = command("backfill", "materialize a selection over a range of partitions, resumably")
    .option("--select <selection>", "assets to backfill (partitioned)")
    .option("--from <key>", "first partition")
    .option("--to <key>", "last partition")
    .option("--concurrency <n>", "runs executed at once", "2")
    .option("--policy <policy>", "per-partition (default), single-run or chunks:N", "per-partition")
    .option("--priority <n>", "queue priority of its runs, a whole number (default -1: below manual and scheduled runs)")
    .option("--json", "machine-readable result")
    .action(async (o: Common & { select?: string; from?: string; to?: string; concurrency: string; policy: string; priority?: string }) => {
      if (o.select === undefined || o.from === undefined || o.to === undefined) {
        throw new UserError("floe backfill needs --select SEL --from KEY --to KEY (or `floe backfill retry <id>` / `floe backfill cancel <id>`)");
      }
      const runs = positiveInt(o.concurrency, "--concurrency");
      runRetries(); // a bad FLOE_RUN_RETRIES stops it before anything is recorded
      const priority = o.priority === undefined ? undefined : parsePriority(o.priority);
      const bf = await import("../runner/backfill.js");
      const policy = bf.parsePolicy(o.policy);
      const ctx = await project(o);
      const assets = selectOrFail(ctx.graph, o.select);
      const planned = bf.planBackfill(ctx.graph, assets, o.from, o.to, policy, o.select);
      code = await withStore(ctx.settings, "floe backfill", async (store, resources) => {
        const created = await store.createBackfill({ selection: o.select!, from: o.from!, to: o.to!, policy: o.policy, runs: planned, ...(priority === undefined ? {} : { priority }) });
        if (!o.json) io.err(`backfill ${shortId(created.id)}: ${planned.length} run(s) over ${o.from}…${o.to}; resume with \`floe backfill retry ${shortId(created.id)}\``);
        return driveAndReport(io, store, ctx.graph, created.id, runs, resources, o.json === true, ctx.settings, await notifications(io, ctx));
      });
    });
  backfill
    .command("retry")
    .description("run a backfill's failed partitions again (and whatever is still queued)")
    .argument("<id>", "backfill id or a unique prefix")
    .option("--project <dir>", "project folder (default: the nearest folder, from the current one upward, with pipelines/ or floe.config.ts)")
    .option("--concurrency <n>", "runs executed at once (default 2)")
    .option("--json", "machine-readable result")
    .action(async (id: string, own: Common & { concurrency: string }) => {
      const o = { ...backfill.opts<Common & { concurrency: string }>(), ...definedOnly(own) }; // flags may land on the parent
      const runs = positiveInt(o.concurrency, "--concurrency");
      runRetries(); // checked before the retry is recorded
      const bf = await import("../runner/backfill.js");
      const ctx = await project(o);
      code = await withStore(ctx.settings, "floe backfill", async (store, resources) => {
        const b = await store.getBackfill(id);
        const requeued = await bf.retryBackfill(store, ctx.graph, b.id);
        if (!o.json) {
          const { total, runs: now } = await store.backfillProgress(b.id);
          io.err(`backfill ${shortId(b.id)}: ${requeued} failed run(s) requeued; ${now.success ?? 0} of ${total} run(s) already succeeded`);
        }
        return driveAndReport(io, store, ctx.graph, b.id, runs, resources, o.json === true, ctx.settings, await notifications(io, ctx));
      });
    });
  backfill
    .command("cancel")
    .description("cancel a backfill: its queued runs will not run")
    .argument("<id>", "backfill id or a unique prefix")
    .option("--project <dir>", "project folder (default: the nearest folder, from the current one upward, with pipelines/ or floe.config.ts)")
    .action(async (id: string, own: Common) => {
      const o = { ...backfill.opts<Common>(), ...definedOnly(own) };
      const settings = await loadSettings(resolveProjectDir(o.project));
      await withStore(settings, "floe backfill", async (store) => {
        const b = await store.getBackfill(id);
        await store.setBackfillStatus(b.id, "canceled");
        const after = await store.getBackfill(b.id);
        io.out(`backfill ${shortId(b.id)} canceled: ${after.runs.canceled ?? 0} run(s) will not run`);
      });
    });

  command("scheduler", "turn schedule ticks into queued runs (a deployment role; use with FLOE_DATABASE_URL)")
    .option("--metrics-port <n>", "also serve /metrics, /health and /ready on this port")
    .action(async (o: Common & { metricsPort?: string }) => {
      const ctx = await project(o);
      const { runScheduler } = await import("../scheduler/scheduler.js");
      await withStore(ctx.settings, "floe scheduler", async (store, resources) => {
        const metrics = await metricsServer(io, store, o.metricsPort, ctx.settings);
        io.err(`floe scheduler: ${[...ctx.graph.pipelines.values()].filter((p) => p.pipeline.schedule).length} schedule(s); Ctrl-C stops`);
        await cancellable((signal) => runScheduler(store, ctx.graph, { signal, resources, eventRetentionDays: ctx.settings.eventRetentionDays, heartbeatMs: ctx.settings.heartbeatMs, onRun: schedulerLog(io), onError: schedulerError(io), onOutage: (e) => io.err(describeOutage("floe scheduler", e)) }), "stopping");
        metrics?.close();
      });
    });

  command("tui", "live lineage, statuses and runs in the terminal (a snapshot when stdout is not a terminal)")
    .action(async (o: Common) => {
      const ctx = await project(o);
      const tty = process.stdout.isTTY === true && process.stdin.isTTY === true;
      if (tty && !ctx.settings.databaseUrl) {
        throw new UserError("the embedded store belongs to one process: run `floe dev` (scheduler, worker and this UI together), or set FLOE_DATABASE_URL to attach to a PostgreSQL store");
      }
      const { runTui, tuiSnapshot } = await loadTui();
      await withStore(ctx.settings, "floe tui", async (store) => {
        if (tty) await runTui(store, ctx.graph);
        else io.out(await tuiSnapshot(store, ctx.graph));
      });
    });

  command("dev", "scheduler and worker in one process, on the embedded store by default")
    .option("--runs <n>", "runs executed at once", "1")
    .option("--metrics-port <n>", "also serve /metrics, /health and /ready on this port")
    .option("--no-tui", "print run lines instead of showing the terminal UI (the UI shows only on a terminal; q quits floe dev)")
    .action(async (o: Common & { runs: string; metricsPort?: string; tui?: boolean }) => {
      const runs = positiveInt(o.runs, "--runs");
      const recoveries = runRetries();
      const ctx = await project(o);
      const [{ runScheduler }, { runWorker }] = await Promise.all([import("../scheduler/scheduler.js"), import("../runner/worker.js")]);
      const notify = await notifications(io, ctx);
      await withStore(ctx.settings, "floe dev", async (store, resources) => {
        const metrics = await metricsServer(io, store, o.metricsPort, ctx.settings);
        if (!(o.tui && process.stdout.isTTY)) io.err(`floe dev: scheduler and worker on ${ctx.settings.databaseUrl ? "PostgreSQL" : `the embedded store in ${ctx.settings.home}`}; queue runs with \`floe materialize --queue\` from this process's store or wait for schedules; Ctrl-C stops`);
        const wake = new EventTarget(); // a tick wakes the worker at once instead of at its next poll
        // With the UI on, it shows runs; printed lines would tear its frame.
        const tui = o.tui === true && process.stdout.isTTY === true ? await loadTui() : undefined;
        const log = tui ? () => undefined : schedulerLog(io);
        const say = (line: string): void => void (tui ? undefined : io.out(line));
        await cancellable(
          (signal) => {
            const quit = new AbortController();
            const stop = AbortSignal.any([signal, quit.signal]);
            return Promise.all([
              runScheduler(store, ctx.graph, { signal: stop, resources, eventRetentionDays: ctx.settings.eventRetentionDays, heartbeatMs: ctx.settings.heartbeatMs, onRun: (...a) => (log(...a), wake.dispatchEvent(new Event("run"))), onError: schedulerError(io), onOutage: (e) => void (tui ? undefined : io.err(describeOutage("floe dev: scheduler", e))) }),
              runWorker(store, ctx.graph, { runs, signal: stop, resources, graceMs: ctx.settings.shutdownGraceMs, poolLimits: ctx.settings.pools, wake, heartbeatMs: ctx.settings.heartbeatMs, recoveries, onOutage: (e) => void (tui ? undefined : io.err(describeOutage("floe dev: worker", e))), ...(ctx.settings.concurrency ? { concurrency: ctx.settings.concurrency } : {}), ...(ctx.settings.maxConcurrentRuns ? { maxRunning: ctx.settings.maxConcurrentRuns } : {}), onRun: (r) => (notify.run(r, store), say(`run ${shortId(r.runId)} ${r.status}`)), onBackfillSettled: (id) => notify.preparing(announceBackfill(notify, store, ctx.graph, id)) }),
              tui ? tui.runTui(store, ctx.graph).finally(() => quit.abort()) : Promise.resolve(),
            ]);
          },
          "stopping: no new runs are claimed; running steps finish",
        );
        await notify.drain();
        metrics?.close();
      });
    });

  command("serve", "serve /metrics, /health and /ready over the state store")
    .option("--port <n>", "port (0 picks a free one; default: metricsPort of floe.config.ts or FLOE_METRICS_PORT, else 9464)")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .action(async (o: Common & { port?: string; host: string }) => {
      if (o.port !== undefined) portOf(o.port, "--port"); // a bad flag is reported before the project is read
      const settings = await loadSettings(resolveProjectDir(o.project));
      const port = o.port !== undefined ? portOf(o.port, "--port") : (settings.metricsPort ?? 9464);
      await withStore(settings, "floe serve", async (store) => {
        const { server, port: bound } = await listenMetrics(store, { port, portFlag: o.port !== undefined ? "--port" : process.env.FLOE_METRICS_PORT ? "FLOE_METRICS_PORT" : "metricsPort", host: o.host, heartbeatMs: settings.heartbeatMs });
        io.out(`floe serve: listening on http://${o.host}:${bound} (/metrics /health /ready)`);
        await cancellable((signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => server.close(() => resolve()), { once: true })), "stopping");
      });
    });

  try {
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return EXIT.ok;
      return EXIT.usage; // commander already printed its one-line message
    }
    if (isUserError(e)) {
      io.err(`floe: ${e.message}`);
      return EXIT.usage;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    io.err(`floe: internal error: ${err.message}`);
    if (process.env.FLOE_DEBUG) io.err(err.stack ?? "");
    return EXIT.failed;
  }
}

async function project(o: Common): Promise<{ settings: ProjectSettings; graph: AssetGraph }> {
  const settings = await loadSettings(resolveProjectDir(o.project));
  const { graph } = await loadProject(settings.dir);
  return { settings, graph };
}

/** With `--metrics-port` (or `metricsPort` / FLOE_METRICS_PORT), serves /metrics, /health and /ready beside a role; undefined without. */
async function metricsServer(io: Io, store: StateStore, flag: string | undefined, settings: ProjectSettings): Promise<{ close(): void } | undefined> {
  const port = flag !== undefined ? portOf(flag, "--metrics-port") : settings.metricsPort;
  if (port === undefined) return undefined;
  const portFlag = flag !== undefined ? "--metrics-port" : "metricsPort";
  const { server, port: bound } = await listenMetrics(store, { port, portFlag, host: "127.0.0.1", heartbeatMs: settings.heartbeatMs });
  io.err(`floe: metrics on http://127.0.0.1:${bound}/metrics`);
  return { close: () => server.close() };
}

/** A port option: a whole number 0-65535 (0 picks a free port). */
function portOf(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`${flag} must be a port number (0-65535), got \`${text}\``);
  return n;
}

/** Serves /metrics, /health and /ready; a port in use or a host this machine does not have is a user error. */
async function listenMetrics(store: StateStore, o: { port: number; portFlag: string; host: string; heartbeatMs: number }) {
  const { serveMetrics } = await import("../metrics/server.js");
  return serveMetrics(store, { port: o.port, host: o.host, staleAfterSeconds: (3 * o.heartbeatMs) / 1000 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "EADDRINUSE") throw new UserError(`${o.portFlag} ${o.port} is in use; pick another`);
    if (e.code === "EADDRNOTAVAIL" || e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") throw new UserError(`--host ${o.host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its interfaces`);
    throw e;
  });
}

/** The project's notification dispatcher; failed deliveries are reported on stderr, never fatal. */
async function notifications(io: Io, ctx: { settings: ProjectSettings; graph: AssetGraph }) {
  const { DeliveryTally, projectDispatcher, publishRun } = await import("../notify/runs.js");
  const preparing = new Set<Promise<void>>();
  // delivery outcomes go to the store's totals, for /metrics of every process sharing it
  const tally = new DeliveryTally();
  const dispatcher = await projectDispatcher(ctx.settings, ctx.graph, {
    onResult: (name, outcome, error) => {
      if (outcome === "failed") io.err(`floe: notification to ${name} failed after retries: ${error ?? ""}`);
    },
  }, tally);
  return {
    run: (outcome: RunOutcome, store?: StateStore) => {
      if (store) tally.attach(store);
      const p = publishRun(dispatcher, outcome, ctx.graph, store).finally(() => preparing.delete(p));
      preparing.add(p);
    },
    publish: (n: Parameters<typeof dispatcher.publish>[0], store?: StateStore) => {
      if (store) tally.attach(store);
      dispatcher.publish(n);
    },
    /** A notification still being prepared (it reads the store first): drain waits for it. */
    preparing: (p: Promise<void>) => {
      const tracked = p.catch((e: unknown) => io.err(`floe: a notification could not be prepared: ${e instanceof Error ? e.message : String(e)}`)).finally(() => preparing.delete(tracked));
      preparing.add(tracked);
    },
    /** Waits for deliveries in flight (bounded) and writes their counts; call it before the store closes. */
    drain: async () => {
      await Promise.allSettled([...preparing]);
      await dispatcher.close(15_000);
      await tally.close();
    },
  };
}

/** Opens the state store (loaded only by commands that need it) and the resources steps use. */
async function withStore<T>(settings: ProjectSettings, owner: string, fn: (store: StateStore, resources: ResourcePool) => Promise<T>): Promise<T> {
  const { StateStore } = await import("../state/index.js");
  const store = await StateStore.open({ url: settings.databaseUrl, home: settings.home, owner, extraMigrations: resourceMigrations(builtinResources) });
  const resources = resourcePool({ settings, store }, builtinResources);
  try {
    return await fn(store, resources);
  } finally {
    await resources.close();
    await store.close();
  }
}

function selectOrFail(graph: AssetGraph, expr: string): Set<string> {
  return select(graph, expr);
}

function partitionSelection(o: { partition?: string; from?: string; to?: string }): PartitionSelection | undefined {
  if (o.partition !== undefined && (o.from !== undefined || o.to !== undefined)) {
    throw new UserError("give either --partition KEY or --from KEY --to KEY, not both");
  }
  if (o.partition !== undefined) return { key: o.partition };
  if ((o.from === undefined) !== (o.to === undefined)) {
    throw new UserError(`${o.from === undefined ? "--to" : "--from"} needs ${o.from === undefined ? "--from" : "--to"} too`);
  }
  if (o.from !== undefined && o.to !== undefined) return { from: o.from, to: o.to };
  return undefined;
}

/**
 * The terminal UI. Ink draws nothing until exit when CI or CONTINUOUS_INTEGRATION is set; floe
 * shows the UI only on a terminal, where that would be a blank screen, so Ink loads without them.
 * React loads its production build unless NODE_ENV says otherwise (the development build made
 * each redraw of a 1,000-asset lineage about twice as slow); pipeline code never sees the change.
 */
async function loadTui(): Promise<typeof import("../tui/run-tui.js")> {
  const keys = ["CI", "CONTINUOUS_INTEGRATION", "NODE_ENV"] as const;
  const saved = keys.map((k) => [k, process.env[k]] as const);
  for (const k of keys) delete process.env[k];
  process.env.NODE_ENV = saved.find(([k]) => k === "NODE_ENV")?.[1] ?? "production";
  try {
    return await import("../tui/run-tui.js");
  } finally {
    for (const [k, v] of saved) {
      if (v !== undefined) process.env[k] = v;
      else delete process.env[k];
    }
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UserError(`${flag} must be a positive whole number, got \`${value}\``);
  return n;
}

/** Runs `fn` with a signal that the first Ctrl-C aborts (the run ends canceled); a second one exits. */
async function cancellable<T>(fn: (signal: AbortSignal) => Promise<T>, stopping = "canceling: waiting for running steps"): Promise<T> {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\nfloe: ${stopping} (press Ctrl-C again to exit now)\n`);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Publishes `backfill_finished` for a settled (or canceled) backfill, with its counts from the store. */
async function announceBackfill(notify: Awaited<ReturnType<typeof notifications>>, store: StateStore, graph: AssetGraph, id: string): Promise<void> {
  const [backfill, progress] = await Promise.all([store.getBackfill(id), store.backfillProgress(id)]);
  const succeeded = progress.runs.success ?? 0;
  const assets = [...select(graph, backfill.selection)];
  notify.publish({
    event: "backfill_finished",
    message: `backfill ${shortId(backfill.id)} ${backfill.status}: ${succeeded} of ${progress.total} run(s) succeeded over ${backfill.from}…${backfill.to}`,
    backfillId: backfill.id,
    status: backfill.status,
    assets,
    pipelines: [...new Set(assets.map((a) => graph.node(a).pipeline))],
    failedSteps: [],
    at: new Date().toISOString(),
  }, store);
}

async function driveAndReport(
  io: Io, store: StateStore, graph: AssetGraph, id: string, runs: number, resources: ResourcePool, json: boolean,
  settings: Pick<ProjectSettings, "shutdownGraceMs" | "heartbeatMs" | "pools" | "maxConcurrentRuns">,
  notify: Awaited<ReturnType<typeof notifications>>,
): Promise<number> {
  const { driveBackfill } = await import("../runner/backfill.js");
  const recoveries = runRetries();
  // Progress from the store, so runs other workers execute count too: a line whenever it changes.
  const stopProgress = json ? async () => undefined : await backfillProgressLines(io, store, id, settings.heartbeatMs);
  let settledHere = false; // this process ended the backfill's last run: it announces it
  const outcome = await cancellable((signal) =>
    driveBackfill(store, graph, id, {
      runs, signal, resources, graceMs: settings.shutdownGraceMs, poolLimits: settings.pools, heartbeatMs: settings.heartbeatMs, recoveries,
      onBackfillSettled: () => void (settledHere = true),
      ...(settings.maxConcurrentRuns ? { maxRunning: settings.maxConcurrentRuns } : {}),
      onRun: (r) => {
        if (!json) {
          const parts = [...new Set(r.steps.map((s) => s.partition))];
          const label = parts.length === 1 ? String(parts[0]) : `${parts[0]}…${parts.at(-1)}`;
          io.err(`  ${symbol(r.status === "success" ? "success" : "failed")} ${label}  ${r.status}`);
        }
      },
    }),
  ).finally(stopProgress);
  const { backfill, runs: latest } = outcome;
  // a worker elsewhere that ended the last run announced it; a canceled backfill is announced here
  if (settledHere || backfill.status === "canceled") await announceBackfill(notify, store, graph, backfill.id);
  await notify.drain();
  if (json) {
    const stepsOf = await store.getStepsOfRuns(latest.map((r) => r.id));
    const details = latest.map((r) => ({
      runId: r.id, status: r.status, partitions: r.partitionRange,
      steps: (stepsOf.get(r.id) ?? []).map((s) => ({ asset: s.asset, partition: s.partition, status: s.status, metadata: s.metadata, ...(s.error ? { error: s.error } : {}) })),
    }));
    io.out(JSON.stringify({ backfillId: backfill.id, status: backfill.status, runs: details }, null, 2));
  } else {
    const failed = latest.filter((r) => r.status !== "success");
    io.out(`backfill ${shortId(backfill.id)} ${backfill.status}: ${latest.length - failed.length} of ${latest.length} run(s) succeeded${failed.length ? `; failed partitions: ${failed.map((r) => r.partitionRange).join(", ")} (retry: floe backfill retry ${shortId(backfill.id)})` : ""}`);
  }
  return backfill.status === "success" ? EXIT.ok : EXIT.failed;
}

/**
 * Prints `  progress: 4/10 succeeded, 1 failed, 2 running, 3 queued` whenever a backfill's counts
 * in the store change (woken by state changes, polled at least every heartbeat); returns the stop
 * function, which prints the last change first.
 */
async function backfillProgressLines(io: Io, store: StateStore, id: string, everyMs: number): Promise<() => Promise<void>> {
  let last = "";
  let busy: Promise<void> = Promise.resolve();
  const print = (): Promise<void> =>
    (busy = busy.then(async () => {
      const { total, runs } = await store.backfillProgress(id);
      const extra = (["failed", "canceled", "running", "queued"] as const).filter((s) => (runs[s] ?? 0) > 0).map((s) => `${runs[s]} ${s}`);
      const line = `  progress: ${runs.success ?? 0}/${total} succeeded${extra.length ? `, ${extra.join(", ")}` : ""}`;
      if (line !== last) io.err((last = line));
    }).catch(() => undefined));
  const stopWatching = await store.watchState(() => void print());
  const timer = setInterval(() => void print(), Math.min(everyMs, 1_000));
  await print();
  return async () => {
    clearInterval(timer);
    await stopWatching();
    await print();
  };
}

/** FLOE_RUN_RETRIES: how many times a run whose worker died is requeued (default 1). */
function runRetries(): number {
  const text = process.env.FLOE_RUN_RETRIES;
  if (text === undefined || text === "") return 1;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 100) throw new UserError(`FLOE_RUN_RETRIES must be a whole number from 0 to 100, got \`${text}\``);
  return n;
}

function schedulerLog(io: Io): (schedule: string, tickTime: Date, run: { id: string; partitionRange: string | null }) => void {
  return (schedule, tickTime, run) =>
    io.out(`tick ${schedule} ${time(tickTime)}: run ${shortId(run.id)} queued${run.partitionRange ? ` for partition ${run.partitionRange}` : ""}`);
}

function schedulerError(io: Io): (schedule: string, tickTime: Date, error: unknown) => void {
  return (schedule, tickTime, error) => io.err(`floe: tick ${schedule} ${time(tickTime)} was not recorded: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
}

function progress(io: Io): (e: ProgressEvent) => void {
  return (e) => {
    if (e.type === "step_retry") {
      io.err(`  ↻ ${stepId(e.asset, e.partition || null)}: attempt ${e.attempt} failed (${e.error.split("\n")[0]}); retrying in ${duration(e.delayMs)}`);
    } else if (e.type === "step_finished") {
      const o = e.outcome;
      const name = stepId(o.asset, o.partition || null);
      io.err(`  ${symbol(o.status)} ${name}  ${o.status === "success" ? duration(o.durationMs) : o.status}${o.error ? `: ${o.error.split("\n")[0]}` : ""}`);
    }
  };
}

function report(io: Io, outcome: MaterializeOutcome | RunOutcome, json: boolean, emptyMessage: string): number {
  if (json) {
    io.out(JSON.stringify({
      runId: outcome.runId,
      status: outcome.status,
      steps: outcome.steps.map((s) => ({ asset: s.asset, partition: s.partition, status: s.status, metadata: s.metadata, ...(s.error ? { error: s.error } : {}) })),
      ...(outcome.runId === null ? { message: emptyMessage } : {}),
    }, null, 2));
  } else if (outcome.runId === null) {
    io.out(emptyMessage);
  } else {
    const count = (st: string): number => outcome.steps.filter((s) => s.status === st).length;
    const parts = [`${count("success")} succeeded`, `${count("failed")} failed`];
    if (count("reused") > 0) parts.push(`${count("reused")} reused`);
    if (count("upstream_failed") > 0) parts.push(`${count("upstream_failed")} upstream failed`);
    if (count("skipped") > 0) parts.push(`${count("skipped")} skipped`);
    io.out(`run ${shortId(outcome.runId)} ${outcome.status}: ${parts.join(", ")}${outcome.status === "success" ? "" : `  (details: floe run ${shortId(outcome.runId)})`}`);
  }
  return outcome.status === "success" ? EXIT.ok : EXIT.failed;
}

function runJson(r: RunRecord): Record<string, unknown> {
  return {
    runId: r.id, status: r.status, trigger: r.trigger, selection: r.selection, partitionRange: r.partitionRange, parentRunId: r.parentRunId,
    tags: r.tags, error: r.error, createdAt: r.createdAt.toISOString(), startedAt: r.startedAt?.toISOString() ?? null, endedAt: r.endedAt?.toISOString() ?? null,
  };
}


