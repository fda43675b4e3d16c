/** Plain-text tables and small formatting helpers for the CLI. */

/**
 * Renders rows as an aligned table with a header.
 *
 * @example
 * table(["ASSET", "STATUS"], [["orders", "materialized"]]);
 */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** `120 ms`, `3.4 s`, `2 min 5 s`. */
export function duration(ms: number | null): string {
  if (ms === null) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** ISO 8601 in UTC without milliseconds, or empty. */
export function time(d: Date | null): string {
  return d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : "";
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

/**
 * Collapses consecutive partitions of equal status into ranges, in partition order.
 *
 * @example
 * ranges([{ key: "d1", status: "ok" }, { key: "d2", status: "ok" }]); // [{ from: "d1", to: "d2", status: "ok", count: 2 }]
 */
export function ranges<T extends string>(items: ReadonlyArray<{ key: string; status: T }>): Array<{ from: string; to: string; status: T; count: number }> {
  const out: Array<{ from: string; to: string; status: T; count: number }> = [];
  for (const { key, status } of items) {
    const last = out[out.length - 1];
    if (last && last.status === status) {
      last.to = key;
      last.count++;
    } else out.push({ from: key, to: key, status, count: 1 });
  }
  return out;
}

/**
 * Ranges as one line: `2025-01-01…2025-01-03 materialized (3), 2025-01-04 failed`.
 *
 * @example
 * rangesText(ranges(rows)) // "d1…d2 ok (2)"
 */
export function rangesText(spans: ReadonlyArray<{ from: string; to: string; status: string; count: number }>): string {
  return spans.map((s) => (s.count === 1 ? `${s.from} ${s.status}` : `${s.from}…${s.to} ${s.status} (${s.count})`)).join(", ");
}

const SYMBOLS: Record<string, string> = {
  success: "✓", materialized: "✓", failed: "✗", upstream_failed: "⊘", skipped: "–", reused: "↺", running: "…", stale: "~", missing: "·", pending: "·",
};

export function symbol(status: string): string {
  return SYMBOLS[status] ?? " ";
}
