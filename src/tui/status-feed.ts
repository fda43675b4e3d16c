// The TUI's only I/O: it reads the state store and tells the screens what changed. It never
// writes and never blocks a runner: reads are set-based, one per kind of thing.

import type { AssetGraph } from "../dag/graph.js";
import { statusOf } from "../runner/launch.js";
import type { BackfillRecord, RunRecord, StateStore } from "../state/index.js";
import { assetViews, viewRows, type AssetView, type PartitionView } from "./model.js";

/** What the screens show, as of `at`. */
export interface StatusSnapshot {
  at: Date;
  assets: Map<string, AssetView>;
  runs: RunRecord[];
  /** Every asset partition's status, for the asset screen's ranges. */
  partitions?: PartitionView[];
  /** The newest backfills, with the partitions of their failed runs. */
  backfills?: Array<BackfillRecord & { failedPartitions: string[] }>;
}

export interface StatusFeed {
  /** Reads the store now. */
  refresh(): Promise<StatusSnapshot>;
  /** Calls `fn` with every new snapshot until the returned function is called. */
  subscribe(fn: (s: StatusSnapshot) => void): () => void;
  close(): Promise<void>;
}

/**
 * A status feed over the store. It re-reads when runs or steps change (LISTEN/NOTIFY on
 * PostgreSQL, in-process events on the embedded store), and every `intervalMs` (default 2 s) as a
 * fallback. Bursts coalesce: one read at a time, and a change during a read triggers one more.
 *
 * @example
 * const feed = await statusFeed(store, graph);
 * const stop = feed.subscribe((s) => render(s));
 */
export async function statusFeed(store: StateStore, graph: AssetGraph, options: { intervalMs?: number; runs?: number } = {}): Promise<StatusFeed> {
  const listeners = new Set<(s: StatusSnapshot) => void>();
  let reading: Promise<StatusSnapshot> | undefined;
  const refresh = (): Promise<StatusSnapshot> =>
    (reading ??= (async () => {
      try {
        const [rows, runs, queued, backfills] = await Promise.all([
          statusOf(store, graph, graph.keys()), store.listRuns({ limit: options.runs ?? 50 }), store.listRuns({ status: ["queued"] }), store.listBackfills(10),
        ]);
        // the store says running for a step of a queued run too (however old the run): the UI says queued
        const views = viewRows(rows, new Set(queued.map((r) => r.id)));
        const snapshot = { at: new Date(), assets: assetViews(graph, views), runs, partitions: views, backfills };
        for (const l of listeners) l(snapshot);
        return snapshot;
      } finally {
        reading = undefined;
      }
    })());
  let again = false;
  const poke = (): void => {
    if (reading) {
      again = true;
      return;
    }
    void refresh()
      .catch(() => undefined)
      .then(() => {
        if (again) {
          again = false;
          poke();
        }
      });
  };
  const stopWatching = await store.watchState(poke);
  // polling only as a fallback (a lost listener, the embedded store written by nobody here)
  const timer = setInterval(poke, options.intervalMs ?? 2_000);
  timer.unref();
  return {
    refresh,
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      clearInterval(timer);
      listeners.clear();
      await stopWatching();
      await reading?.catch(() => undefined);
    },
  };
}
