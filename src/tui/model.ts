// What the terminal UI shows, computed without I/O: per-asset status from partition statuses,
// the lineage in layers, and the plain-text snapshot for a non-TTY stdout.

import type { AssetGraph } from "../dag/graph.js";
import type { AssetStatus, PartitionStatus } from "../dag/staleness.js";
import { ranges, rangesText } from "../cli/format.js";

/** One asset as the lineage shows it. */
export interface AssetView {
  key: string;
  status: AssetStatus;
  /** Partitions by status, for partitioned assets. */
  counts: Partial<Record<AssetStatus, number>>;
  partitioned: boolean;
  reason?: string;
}

/** Worst first: what an asset shows when its partitions disagree. */
const PRECEDENCE: readonly AssetStatus[] = ["running", "failed", "stale", "missing", "materialized"];

/** The marker of each status, readable without colour (NO_COLOR). */
export const MARKER: Readonly<Record<AssetStatus, string>> = { materialized: "●", stale: "◐", failed: "✗", running: "▶", missing: "○" };
/** The colour of each status when colour is on. */
export const COLOR: Readonly<Record<AssetStatus, string>> = { materialized: "green", stale: "yellow", failed: "red", running: "cyan", missing: "gray" };

/**
 * Per-asset views from partition statuses: the worst status shown, with counts per status.
 *
 * @example
 * const views = assetViews(graph, await statusOf(store, graph, graph.keys()));
 */
export function assetViews(graph: AssetGraph, rows: readonly PartitionStatus[]): Map<string, AssetView> {
  const out = new Map<string, AssetView>();
  for (const key of graph.keys()) out.set(key, { key, status: "missing", counts: {}, partitioned: graph.asset(key).partitions !== undefined });
  for (const r of rows) {
    const v = out.get(r.asset);
    if (!v) continue;
    v.counts[r.status] = (v.counts[r.status] ?? 0) + 1;
  }
  for (const v of out.values()) {
    const seen = PRECEDENCE.filter((s) => (v.counts[s] ?? 0) > 0);
    v.status = seen[0] ?? "missing";
    const reason = rows.find((r) => r.asset === v.key && r.status === v.status)?.reason;
    if (reason) v.reason = reason;
  }
  return out;
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
  lines.push("", `legend: ${(Object.keys(MARKER) as AssetStatus[]).map((s) => `${MARKER[s]} ${s}`).join("  ")}`);
  return `${lines.join("\n")}\n`;
}

/**
 * A partitioned asset's partitions as status ranges, in key order:
 * `2025-01-01…2025-01-03 materialized (3), 2025-01-04 failed`.
 *
 * @example
 * partitionRangesText(rows.filter((r) => r.asset === "orders"))
 */
export function partitionRangesText(rows: readonly PartitionStatus[]): string {
  const keyed = rows.filter((r) => r.partition !== null).map((r) => ({ key: r.partition!, status: r.status }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return rangesText(ranges(keyed));
}

/** A pipeline drawn as one node when the lineage is collapsed. */
export interface PipelineView {
  name: string;
  assets: number;
  status: AssetStatus;
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
    const v = out.get(name) ?? { name, assets: 0, status: "materialized" as AssetStatus, upstream: [] };
    v.assets++;
    const s = views.get(key)?.status ?? "missing";
    if (PRECEDENCE.indexOf(s) < PRECEDENCE.indexOf(v.status)) v.status = s;
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
