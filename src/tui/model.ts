// What the terminal UI shows, computed without I/O: per-asset status from partition statuses,
// the lineage in layers, and the plain-text snapshot for a non-TTY stdout.

import type { AssetGraph } from "../dag/graph.js";
import type { AssetStatus, PartitionStatus } from "../dag/staleness.js";
import { ranges, rangesText } from "../cli/format.js";

/**
 * What the UI shows for an asset or partition: the store's statuses, plus `queued` (a step of a
 * queued run that no worker has picked up yet; the store reports it as running) and, for a
 * partitioned asset only, `partial` (some partitions materialized and fresh, the rest missing).
 */
export type ViewStatus = AssetStatus | "queued" | "partial";

/** A partition's status as the UI shows it. */
export interface PartitionView extends Omit<PartitionStatus, "status"> {
  status: ViewStatus;
}

/** One asset as the lineage shows it. */
export interface AssetView {
  key: string;
  status: ViewStatus;
  /** Partitions by status, for partitioned assets. */
  counts: Partial<Record<ViewStatus, number>>;
  partitioned: boolean;
  reason?: string;
}

/** Worst first: what an asset shows when its partitions disagree. */
const PRECEDENCE: readonly ViewStatus[] = ["running", "queued", "failed", "stale", "missing", "partial", "materialized"];

/** Rank of a status, worst (0) first. */
export function rank(s: ViewStatus): number {
  return PRECEDENCE.indexOf(s);
}

/** The marker of each status, readable without colour (NO_COLOR); each is used for nothing else. */
export const MARKER: Readonly<Record<ViewStatus, string>> = { materialized: "●", partial: "◔", stale: "◐", failed: "✗", running: "◉", queued: "◷", missing: "○" };
/** The second frame of the running marker, which blinks while anything runs. */
export const RUNNING_BLINK = "◎";
/** The colour of each status when colour is on. */
export const COLOR: Readonly<Record<ViewStatus, string>> = { materialized: "green", partial: "greenBright", stale: "yellow", failed: "red", running: "cyan", queued: "blue", missing: "gray" };
/** The order the legend lists statuses in. */
export const LEGEND_ORDER: readonly ViewStatus[] = ["materialized", "partial", "stale", "failed", "running", "queued", "missing"];
/** `● materialized  ◔ partial  …`: every marker with its meaning. */
export const LEGEND = LEGEND_ORDER.map((s) => `${MARKER[s]} ${s}`).join(" ");
/** What `queued` means, for the legend and the footer. */
export const QUEUED_HINT = "queued: waiting for a worker (floe worker / floe dev)";

/**
 * Partition statuses as the UI shows them: a running step of a run that is still queued is
 * `queued` (the store says running for both).
 *
 * @example
 * viewRows(rows, new Set(runs.filter((r) => r.status === "queued").map((r) => r.id)))
 */
export function viewRows(rows: readonly PartitionStatus[], queuedRuns: ReadonlySet<string>): PartitionView[] {
  return rows.map((r) =>
    r.status === "running" && r.lastRunId !== null && queuedRuns.has(r.lastRunId)
      ? { ...r, status: "queued" as const, reason: `run ${r.lastRunId.slice(0, 8)} is queued, waiting for a worker` }
      : r,
  );
}

/**
 * Per-asset views from partition statuses: the worst status shown, with counts per status. A
 * partitioned asset whose partitions are only materialized or missing, some of each, is
 * `partial` (its counts say how many: `4/7`).
 *
 * @example
 * const views = assetViews(graph, await statusOf(store, graph, graph.keys()));
 */
export function assetViews(graph: AssetGraph, rows: readonly PartitionView[]): Map<string, AssetView> {
  const out = new Map<string, AssetView>();
  for (const key of graph.keys()) out.set(key, { key, status: "missing", counts: {}, partitioned: graph.asset(key).partitions !== undefined });
  const reasons = new Map<string, string>();
  for (const r of rows) {
    const v = out.get(r.asset);
    if (!v) continue;
    v.counts[r.status] = (v.counts[r.status] ?? 0) + 1;
    if (r.reason && !reasons.has(`${r.asset}\0${r.status}`)) reasons.set(`${r.asset}\0${r.status}`, r.reason);
  }
  for (const v of out.values()) {
    const seen = PRECEDENCE.filter((s) => (v.counts[s] ?? 0) > 0);
    v.status = seen[0] ?? "missing";
    if (v.partitioned && v.status === "missing" && (v.counts.materialized ?? 0) > 0) v.status = "partial";
    const reason = reasons.get(`${v.key}\0${v.status}`);
    if (reason) v.reason = reason;
  }
  return out;
}

/** `4/7`: a partitioned asset's materialized partitions (fresh or stale) out of all of them. */
export function doneText(v: AssetView): string {
  const total = Object.values(v.counts).reduce((a, n) => a + (n ?? 0), 0);
  return `${(v.counts.materialized ?? 0) + (v.counts.stale ?? 0)}/${total}`;
}

/**
 * The lineage as layers, left to right: each asset after everything it reads.
 *
 * @example
 * layers(graph, new Set(["raw", "orders"])) // [["raw"], ["orders"]]
 */
export function layers(graph: AssetGraph, keys?: ReadonlySet<string>): string[][] {
  return graph.generations(keys);
}

/** One line per status of a partitioned asset's counts: `5 materialized, 1 failed`. */
export function countsText(v: AssetView): string {
  return PRECEDENCE.filter((s) => (v.counts[s] ?? 0) > 0)
    .map((s) => `${v.counts[s]} ${s}`)
    .join(", ");
}

/**
 * The plain-text snapshot `floe tui` prints when stdout is not a terminal: the lineage layer by
 * layer, each asset with its marker, status and upstream.
 *
 * @example
 * process.stdout.write(snapshotText(graph, assetViews(graph, rows)));
 */
export function snapshotText(graph: AssetGraph, views: ReadonlyMap<string, AssetView>, keys?: ReadonlySet<string>): string {
  const lines: string[] = [];
  layers(graph, keys).forEach((layer, i) => {
    lines.push(`layer ${i}`);
    for (const key of layer) {
      const v = views.get(key)!;
      const up = [...graph.upstream(key, 1)].filter((u) => !keys || keys.has(u));
      const detail = v.partitioned ? ` (${countsText(v) || "no partitions yet"})` : v.reason ? ` (${v.reason})` : "";
      lines.push(`  ${MARKER[v.status]} ${key}  ${v.status}${detail}${up.length > 0 ? `  ◀ ${up.join(", ")}` : ""}`);
    }
  });
  lines.push("", `legend: ${LEGEND}`);
  return `${lines.join("\n")}\n`;
}

/** A pipeline drawn as one node when the lineage is collapsed. */
export interface PipelineView {
  name: string;
  assets: number;
  status: ViewStatus;
  /** Pipelines it reads from. */
  upstream: string[];
}

/**
 * Pipelines as nodes, in layers (a pipeline after those it reads from), each with the worst
 * status of its assets: the collapsed lineage of a big graph. Pipelines that read each other
 * share a layer.
 *
 * @example
 * const { layers, views } = pipelineLayers(graph, assetViews(graph, rows));
 */
export function pipelineLayers(graph: AssetGraph, views: ReadonlyMap<string, AssetView>): { layers: string[][]; views: Map<string, PipelineView> } {
  const out = new Map<string, PipelineView>();
  for (const key of graph.keys()) {
    const name = graph.node(key).pipeline;
    const v = out.get(name) ?? { name, assets: 0, status: "materialized" as ViewStatus, upstream: [] };
    v.assets++;
    const s = views.get(key)?.status ?? "missing";
    if (rank(s) < rank(v.status)) v.status = s;
    for (const u of graph.upstream(key, 1)) {
      const p = graph.node(u).pipeline;
      if (p !== name && !v.upstream.includes(p)) v.upstream.push(p);
    }
    out.set(name, v);
  }
  // longest path from a source pipeline; a cycle between pipelines stops at the number of pipelines
  const depth = new Map<string, number>();
  const visit = (name: string, seen: Set<string>): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0;
    seen.add(name);
    const d = Math.max(0, ...out.get(name)!.upstream.map((u) => visit(u, seen) + 1));
    seen.delete(name);
    depth.set(name, d);
    return d;
  };
  const layersOut: string[][] = [];
  for (const name of [...out.keys()].sort()) {
    const d = visit(name, new Set());
    (layersOut[d] ??= []).push(name);
  }
  return { layers: layersOut.filter((l) => l !== undefined), views: out };
}

const BOX: Record<string, string> = {
  "1111": "┼", "1110": "┤", "1101": "├", "1100": "│", "1011": "┴", "0111": "┬", "1010": "┘", "1001": "└",
  "0110": "┐", "0101": "┌", "0011": "─", "1000": "│", "0100": "│", "0010": "─", "0001": "─", "0000": " ",
};

/**
 * The connector drawn between two adjacent layers, one 3-character string per row: `─` leaves
 * each row whose asset feeds the next layer, a box-drawing bus joins them, and `▶` enters each
 * row whose asset reads from this layer. Rows are the visible rows of both columns.
 *
 * @example
 * connector(["raw", "other"], ["clean"], (a, b) => a === "raw" && b === "clean") // ["──▶", "   "]
 */
export function connector(left: ReadonlyArray<string | undefined>, right: ReadonlyArray<string | undefined>, feeds: (from: string, to: string) => boolean): string[] {
  const rows = Math.max(left.length, right.length);
  // one bus per group of rows joined by edges, so unrelated straight edges stay straight
  const edges: Array<[number, number]> = [];
  for (let a = 0; a < left.length; a++) for (let b = 0; b < right.length; b++) if (left[a] !== undefined && right[b] !== undefined && feeds(left[a]!, right[b]!)) edges.push([a, b]);
  const parent = Array.from({ length: 2 * rows }, (_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  for (const [a, b] of edges) parent[find(a)] = find(rows + b);
  const out = Array.from({ length: rows }, () => [" ", " ", " "]);
  const groups = new Map<number, Array<[number, number]>>();
  for (const e of edges) groups.set(find(e[0]), [...(groups.get(find(e[0])) ?? []), e]);
  for (const group of groups.values()) {
    const src = new Set(group.map((e) => e[0]));
    const tgt = new Set(group.map((e) => e[1]));
    const lo = Math.min(...src, ...tgt);
    const hi = Math.max(...src, ...tgt);
    for (let r = lo; r <= hi; r++) {
      const key = `${r > lo ? 1 : 0}${r < hi ? 1 : 0}${src.has(r) ? 1 : 0}${tgt.has(r) ? 1 : 0}`;
      const cell = out[r]!;
      if (src.has(r)) cell[0] = "─";
      cell[1] = BOX[key] ?? cell[1]!;
      if (tgt.has(r)) cell[2] = "▶";
    }
  }
  return out.map((c) => c.join(""));
}

/** The id of a pipeline drawn as one node: also the selection of its assets. */
export function pipeNode(name: string): string {
  return `pipeline:${name}`;
}
/** The pipeline a node id stands for, or undefined for an asset. */
export function pipeOf(node: string): string | undefined {
  return node.startsWith("pipeline:") ? node.slice("pipeline:".length) : undefined;
}

/**
 * The lineage with some pipelines folded into one node each (`pipeline:NAME`) and the assets of
 * the `open` pipelines drawn one by one, in layers (a node after everything it reads; nodes that
 * read each other through a folded pipeline share the deeper layer), with who reads whom.
 *
 * @example
 * const { layers, parents } = foldedLayers(graph, views, new Set(["orders"]));
 */
export function foldedLayers(
  graph: AssetGraph,
  views: ReadonlyMap<string, AssetView>,
  open: ReadonlySet<string>,
): { layers: string[][]; parents: Map<string, string[]>; pipes: Map<string, PipelineView> } {
  const pipes = pipelineLayers(graph, views).views;
  const nodeOf = (key: string): string => {
    const p = graph.node(key).pipeline;
    return open.has(p) ? key : pipeNode(p);
  };
  const parents = new Map<string, string[]>();
  const order: string[] = [];
  for (const key of graph.keys()) {
    const n = nodeOf(key);
    let list = parents.get(n);
    if (!list) {
      parents.set(n, (list = []));
      order.push(n);
    }
    for (const u of graph.parents(key)) {
      const m = nodeOf(u);
      if (m !== n && !list.includes(m)) list.push(m);
    }
  }
  const depth = new Map<string, number>();
  const visit = (n: string, seen: Set<string>): number => {
    const known = depth.get(n);
    if (known !== undefined) return known;
    if (seen.has(n)) return 0;
    seen.add(n);
    const d = Math.max(0, ...parents.get(n)!.map((u) => visit(u, seen) + 1));
    seen.delete(n);
    depth.set(n, d);
    return d;
  };
  const out: string[][] = [];
  for (const n of order) (out[visit(n, new Set())] ??= []).push(n);
  return { layers: out.filter((l) => l !== undefined), parents, pipes };
}

/** Prefix of a pass-through row: `\u0000raw` is the line of `raw` crossing a layer. */
export const THROUGH = "\u0000";

/**
 * Edges that skip layers, routed through the layers between as pass-through rows (`THROUGH` +
 * the source, appended below each layer's nodes, so the cursor's rows do not move), and who
 * feeds whom between adjacent layers once routed.
 *
 * @example
 * routeLongEdges([["a"], ["b"], ["c"]], (k) => ({ b: ["a"], c: ["a", "b"] })[k] ?? [])
 * // columns [["a"], ["b", "\u0000a"], ["c"]]
 */
export function routeLongEdges(
  columns: readonly string[][],
  parents: (node: string) => readonly string[],
): { columns: string[][]; feeds: (from: string, to: string) => boolean } {
  const layerOf = new Map<string, number>();
  columns.forEach((layer, i) => layer.forEach((k) => layerOf.set(k, i)));
  const through = columns.map(() => new Set<string>());
  columns.forEach((layer, j) => {
    for (const k of layer) {
      for (const p of parents(k)) {
        const i = layerOf.get(p);
        if (i === undefined) continue;
        for (let l = i + 1; l < j; l++) through[l]!.add(p);
      }
    }
  });
  const routed = columns.map((layer, i) => [...layer, ...[...through[i]!].map((p) => THROUGH + p)]);
  const feeds = (from: string, to: string): boolean => {
    const src = from.startsWith(THROUGH) ? from.slice(1) : from;
    if (to.startsWith(THROUGH)) return to.slice(1) === src;
    return parents(to).includes(src);
  };
  return { columns: routed, feeds };
}

/**
 * Keys as ranges over the definition's order: `2025-01-02, 2025-01-04…2025-01-07`.
 *
 * @example
 * keysText(["d1", "d2", "d4"], ["d1", "d2", "d3", "d4"]) // "d1…d2, d4"
 */
export function keysText(keys: readonly string[], all: readonly string[]): string {
  const index = new Map(all.map((k, i) => [k, i]));
  const sorted = [...keys].sort((a, b) => (index.get(a) ?? 0) - (index.get(b) ?? 0));
  const spans: Array<[string, string, number]> = [];
  let prev = -2;
  for (const k of sorted) {
    const i = index.get(k) ?? -5;
    const last = spans[spans.length - 1];
    if (last && i === prev + 1) last[1] = k;
    else spans.push([k, k, i]);
    prev = i;
  }
  return spans.map(([a, b]) => (a === b ? a : `${a}…${b}`)).join(", ");
}

/**
 * The partitions `m` materializes by default: those missing, stale, failed or partly done (every
 * status but materialized, running and queued); when there are none, the latest key.
 *
 * @example
 * defaultPartitions(["d1", "d2", "d3"], rows) // ["d2"] when only d2 failed
 */
export function defaultPartitions(all: readonly string[], rows: readonly PartitionView[]): string[] {
  const status = new Map(rows.map((r) => [r.partition, r.status]));
  const todo = all.filter((k) => {
    const s = status.get(k) ?? "missing";
    return s === "missing" || s === "stale" || s === "failed";
  });
  if (todo.length > 0) return todo;
  const latest = all[all.length - 1];
  return latest === undefined ? [] : [latest];
}

/**
 * Partitions in key order as a heatmap of at most `cells` characters: each character stands for
 * `per` consecutive partitions and shows the worst status among them.
 *
 * @example
 * heatmap(rows, 60) // { cells: ["materialized", …], per: 34 }
 */
export function heatmap(rows: readonly PartitionView[], cells: number): { cells: ViewStatus[]; per: number } {
  const sorted = sortedPartitions(rows);
  const per = Math.max(1, Math.ceil(sorted.length / Math.max(1, cells)));
  const out: ViewStatus[] = [];
  for (let i = 0; i < sorted.length; i += per) {
    let worst: ViewStatus = "materialized";
    for (const r of sorted.slice(i, i + per)) if (rank(r.status) < rank(worst)) worst = r.status;
    out.push(worst);
  }
  return { cells: out, per };
}

/** Partitions in key order. */
export function sortedPartitions(rows: readonly PartitionView[]): PartitionView[] {
  // the rows come in the definition's key order (time, or a static list as declared): keep it
  return rows.filter((r) => r.partition !== null);
}

/**
 * Items joined with `, ` and wrapped to `width`, at most `lines` lines; what does not fit is
 * counted on the last line as `+N more`.
 *
 * @example
 * wrapList(["a", "b", "c"], 6, 1) // ["a, b", …] → ["a +2 more"]
 */
export function wrapList(items: readonly string[], width: number, lines: number): string[] {
  const out: string[] = [];
  let line = "";
  let i = 0;
  for (; i < items.length; i++) {
    const piece = line === "" ? items[i]! : `${line}, ${items[i]!}`;
    if (piece.length <= width || line === "") {
      line = piece.slice(0, width);
      continue;
    }
    if (out.length + 1 >= lines) break;
    out.push(`${line},`);
    line = items[i]!.slice(0, width);
  }
  if (i < items.length) {
    const more = ` +${items.length - i} more`;
    while (line.length + more.length > width && line.includes(", ")) {
      line = line.slice(0, line.lastIndexOf(", "));
      i--;
    }
    line = `${line} +${items.length - i} more`.slice(0, width);
  }
  if (line !== "") out.push(line);
  return out;
}

/** A partitioned asset's status ranges, one item each, in key order. */
export function partitionRanges(rows: readonly PartitionView[]): string[] {
  const keyed = sortedPartitions(rows).map((r) => ({ key: r.partition!, status: r.status }));
  return ranges(keyed).map((s) => rangesText([s]));
}
