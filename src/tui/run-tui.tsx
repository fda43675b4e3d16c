import { render } from "ink";
import type { AssetGraph } from "../dag/graph.js";
import { linkSteps, plan, type StepKey } from "../dag/plan.js";
import type { StateStore } from "../state/index.js";
import { App } from "./app.js";
import { assetViews, keysText, snapshotText } from "./model.js";
import { statusFeed } from "./status-feed.js";
import { rerunOf, statusOf } from "../runner/launch.js";

/**
 * Runs the terminal UI on a TTY until the user quits. `m` queues runs the way
 * `floe materialize --queue` does: a `floe worker` (or `floe dev`) executes them.
 *
 * @example
 * await runTui(store, graph);
 */
export async function runTui(store: StateStore, graph: AssetGraph): Promise<void> {
  const feed = await statusFeed(store, graph);
  try {
    const initial = await feed.refresh();
    const actions = {
      async materialize(assets: ReadonlySet<string>, label: string, partitions?: ReadonlyMap<string, readonly string[]>): Promise<string> {
        // the partitions the UI chose for each partitioned asset (the confirmation named them)
        const keys: StepKey[] = [];
        let range: string | null = null;
        if (partitions) {
          for (const key of assets) {
            const def = graph.asset(key).partitions;
            if (!def) keys.push({ asset: key, partition: null });
            else for (const partition of partitions.get(key) ?? []) keys.push({ asset: key, partition });
          }
          // one contiguous range shared by every partitioned asset is the run's partition range
          const [first] = [...partitions];
          const same = [...partitions.values()].every((l) => l.join("\n") === first?.[1].join("\n"));
          const text = first && same ? keysText(first[1], graph.asset(first[0]).partitions?.keys() ?? []) : "";
          if (text !== "" && !text.includes(", ")) range = text;
        }
        const planned = partitions ? linkSteps(graph, keys) : plan(graph, assets);
        const run = await store.createRun({ trigger: "manual", selection: label, partitionRange: range, status: "queued", steps: planned.steps.map((s) => ({ asset: s.asset, partition: s.partition })) });
        void feed.refresh().catch(() => undefined);
        return run.id;
      },
      async rerun(runId: string): Promise<string> {
        const parent = await store.getRun(runId);
        const next = rerunOf(graph, parent, await store.getSteps(parent.id), { fromFailure: true }, {});
        if (!next) throw new Error(`run ${runId.slice(0, 8)} has no failed step to rerun`);
        const run = await store.createRun(next);
        void feed.refresh().catch(() => undefined);
        return run.id;
      },
    };
    const details = {
      async asset(key: string) {
        const mats = await store.latestMaterializations([key]);
        return { materializations: mats.sort((a, b) => b.materializedAt.getTime() - a.materializedAt.getTime()) };
      },
      async run(id: string) {
        const [run, steps, events] = await Promise.all([store.getRun(id), store.getSteps(id), store.getEvents(id)]);
        return { run, steps, events: events.slice(-50) };
      },
    };
    const size = () => ({ width: process.stdout.columns || 80, height: process.stdout.rows || 24 });
    const element = () => <App graph={graph} feed={feed} initial={initial} actions={actions} details={details} {...size()} color={!process.env.NO_COLOR} />;
    const app = render(element());
    const onResize = () => app.rerender(element());
    process.stdout.on("resize", onResize);
    await app.waitUntilExit();
    process.stdout.off("resize", onResize);
  } finally {
    await feed.close();
  }
}

/**
 * The plain-text lineage and statuses, for a stdout that is not a terminal.
 *
 * @example
 * process.stdout.write(await tuiSnapshot(store, graph));
 */
export async function tuiSnapshot(store: StateStore, graph: AssetGraph): Promise<string> {
  return snapshotText(graph, assetViews(graph, await statusOf(store, graph, graph.keys())));
}
