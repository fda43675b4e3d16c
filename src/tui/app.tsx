// The terminal UI: lineage in layers, runs, keys. Reads only through a StatusFeed; acts only
// through the callbacks it is given (the same functions the CLI uses).

import { Box, Text, useApp, useInput, type Key } from "ink";
import { useEffect, useMemo, useRef, useState } from "react";
import type { AssetGraph } from "../dag/graph.js";
import { select } from "../dag/selection.js";
import type { AssetStatus } from "../dag/staleness.js";
import type { EventRecord, MaterializationRecord, RunRecord, StepRecord } from "../state/index.js";
import { COLOR, MARKER, connector, countsText, layers, partitionRangesText, pipelineLayers } from "./model.js";
import type { StatusFeed, StatusSnapshot } from "./status-feed.js";
import { stepId } from "../dag/plan.js";

/** Beyond this many assets the lineage asks for a selection instead of drawing them all. */
export const MAX_NODES = 5_000;
/** From this many assets on, the lineage starts with pipelines collapsed (one node each). */
export const COLLAPSE_AT = 60;

export interface TuiActions {
  /** Queues a run of `assets` and returns its id (errors are shown, one line). */
  materialize(assets: ReadonlySet<string>, label: string): Promise<string>;
  /** Queues a rerun of a run's failed steps and returns the new run's id. */
  rerun?(runId: string): Promise<string>;
}

/** What the asset and run screens read when opened. */
export interface TuiDetails {
  asset(key: string): Promise<{ materializations: MaterializationRecord[] }>;
  run(id: string): Promise<{ run: RunRecord; steps: StepRecord[]; events: EventRecord[] }>;
}

export interface AppProps {
  graph: AssetGraph;
  feed: Pick<StatusFeed, "subscribe">;
  initial: StatusSnapshot;
  actions: TuiActions;
  details?: TuiDetails;
  width: number;
  height: number;
  color?: boolean;
}

type Mode = "lineage" | "runs" | "help" | "filter" | "confirm" | "asset" | "run" | "backfills";

/**
 * The floe terminal UI.
 *
 * @example
 * render(<App graph={graph} feed={feed} initial={await feed.refresh()} actions={actions} width={80} height={24} />);
 */
export function App({ graph, feed, initial, actions, details, width, height, color = true }: AppProps) {
  const { exit } = useApp();
  const [snapshot, setSnapshot] = useState(initial);
  const [mode, setMode, modeRef] = useRefState<Mode>("lineage");
  const [filter, setFilter] = useState("");
  const [draft, setDraft, draftRef] = useRefState("");
  const [cursor, setCursor] = useState({ col: 0, row: 0 });
  const [message, setMessage] = useState("");
  const [pending, setPending] = useState<{ assets: Set<string>; label: string; rerun?: string } | undefined>();
  const [runCursor, setRunCursor] = useState(0);
  const [assetDetail, setAssetDetail] = useState<Awaited<ReturnType<TuiDetails["asset"]>> | undefined>();
  const [runDetail, setRunDetail] = useState<Awaited<ReturnType<TuiDetails["run"]>> | undefined>();
  const [back, setBack] = useState<Mode>("lineage");

  useEffect(() => feed.subscribe(setSnapshot), [feed]);
  // running assets blink between two markers while anything runs
  const running = [...snapshot.assets.values()].some((v) => v.status === "running");
  const [spin, setSpin] = useState(false);
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => setSpin((x) => !x), 300);
    return () => clearInterval(t);
  }, [running]);

  const selected = useMemo(() => {
    if (filter === "") return undefined;
    try {
      return select(graph, filter);
    } catch {
      return undefined;
    }
  }, [graph, filter]);
  const visible = selected ?? new Set(graph.keys());
  const [expandAll, setExpandAll] = useState(false);
  const collapsed = filter === "" && !expandAll && graph.keys().length >= COLLAPSE_AT;
  const tooMany = !collapsed && visible.size > MAX_NODES;
  const pipes = useMemo(() => (collapsed ? pipelineLayers(graph, snapshot.assets) : undefined), [collapsed, graph, snapshot]);
  const columns = useMemo(() => (pipes ? pipes.layers : tooMany ? [] : layers(graph, visible)), [graph, visible, tooMany, pipes]);
  const col = Math.min(cursor.col, Math.max(0, columns.length - 1));
  const row = Math.min(cursor.row, Math.max(0, (columns[col]?.length ?? 1) - 1));
  const current = columns[col]?.[row];

  // A chunk of several keys (a paste, a fast terminal) is handled one key at a time.
  useInput((input, key) => {
    if (input.length > 1 && !key.ctrl && !key.meta) {
      for (const ch of input) handle(ch === "\r" || ch === "\n" ? "" : ch, ch === "\r" || ch === "\n" ? { ...key, return: true } : key);
    } else handle(input, key);
  });
  function handle(input: string, key: Key): void {
    const mode = modeRef.current;
    if (mode === "filter") {
      if (key.return) {
        const text = draftRef.current.trim();
        try {
          if (text !== "") select(graph, text);
          setFilter(text);
          setCursor({ col: 0, row: 0 });
          setMessage(text === "" ? "showing every asset" : `showing ${text}`);
        } catch (e) {
          setMessage(e instanceof Error ? e.message.split("\n")[0]! : String(e));
        }
        setMode("lineage");
      } else if (key.escape) setMode("lineage");
      else if (key.backspace || key.delete) setDraft((d) => d.slice(0, -1));
      else if (input && !key.ctrl && !key.meta) setDraft((d) => d + input);
      return;
    }
    if (mode === "confirm") {
      if (input === "y" && pending) {
        setMode(back);
        const queued = pending.rerun !== undefined && actions.rerun ? actions.rerun(pending.rerun) : actions.materialize(pending.assets, pending.label);
        queued.then(
          (id) => setMessage(`run ${id.slice(0, 8)} queued for ${pending.label}; it appears in runs (r)`),
          (e: unknown) => setMessage(e instanceof Error ? e.message.split("\n")[0]! : String(e)),
        );
      } else if (input === "n" || key.escape) {
        setMode(back);
        setMessage("nothing queued");
      }
      return;
    }
    if (input === "q") return void exit();
    if (input === "?") return setMode(mode === "help" ? "lineage" : "help");
    if (mode === "run" && input === "r" && runDetail) {
      if (runDetail.run.status !== "failed" || !actions.rerun) return setMessage("only a failed run is rerun from failure");
      setPending({ assets: new Set(), label: `run ${runDetail.run.id.slice(0, 8)} from failure`, rerun: runDetail.run.id });
      setBack("run");
      return setMode("confirm");
    }
    if (input === "r") return setMode(mode === "runs" ? "lineage" : "runs");
    if (input === "b") return setMode(mode === "backfills" ? "lineage" : "backfills");
    if (key.escape) return setMode(mode === "run" ? "runs" : "lineage");
    if (mode === "runs") {
      const open = snapshot.runs[Math.min(runCursor, snapshot.runs.length - 1)];
      if (key.upArrow || input === "k") setRunCursor((c) => Math.max(0, c - 1));
      else if (key.downArrow || input === "j") setRunCursor((c) => Math.min(snapshot.runs.length - 1, c + 1));
      else if (key.return && open && details) {
        setRunDetail(undefined);
        setMode("run");
        details.run(open.id).then(setRunDetail, (e: unknown) => setMessage(String(e)));
      }
      return;
    }
    if (mode === "lineage" && input === "c") {
      setExpandAll(collapsed);
      setFilter("");
      setCursor({ col: 0, row: 0 });
      return setMessage(collapsed ? "every asset shown (c collapses pipelines again)" : "pipelines collapsed (Enter expands one)");
    }
    if (mode === "lineage" && key.return && current && pipes) {
      setFilter(`pipeline:${current}`);
      setCursor({ col: 0, row: 0 });
      return setMessage(`pipeline ${current} expanded (/ then Enter on an empty line shows all)`);
    }
    if (mode === "lineage" && key.return && current && details) {
      setAssetDetail(undefined);
      setMode("asset");
      details.asset(current).then(setAssetDetail, (e: unknown) => setMessage(String(e)));
      return;
    }
    if (input === "/") {
      setDraft(filter);
      return setMode("filter");
    }
    if (mode !== "lineage") return;
    if ((input === "m" || input === "M") && current && pipes) return setMessage("expand a pipeline (Enter) to materialize its assets");
    if ((input === "m" || input === "M") && current) {
      const assets = input === "M" ? new Set([current, ...graph.upstream(current)]) : new Set([current]);
      setPending({ assets, label: input === "M" ? `+${current}` : current });
      setBack("lineage");
      return setMode("confirm");
    }
    const move = (dc: number, dr: number) => setCursor({ col: Math.max(0, Math.min(columns.length - 1, col + dc)), row: Math.max(0, row + dr) });
    if (key.leftArrow || input === "h") move(-1, 0);
    else if (key.rightArrow || input === "l") move(1, 0);
    else if (key.upArrow || input === "k") move(0, -1);
    else if (key.downArrow || input === "j") move(0, 1);
  }

  const paint = (status: AssetStatus) => (color ? { color: COLOR[status] } : {});
  const header = (
    <Box justifyContent="space-between">
      <Text bold>floe {mode === "runs" ? "· runs" : mode === "help" ? "· keys" : mode === "asset" ? `· ${current ?? ""}` : mode === "run" ? `· run ${runDetail?.run.id.slice(0, 8) ?? ""}` : mode === "backfills" ? "· backfills" : "· lineage"}{filter ? ` · ${filter}` : ""}</Text>
      <Text dimColor>{snapshot.at.toISOString().slice(11, 19)}</Text>
    </Box>
  );
  const footer = (
    <Box flexDirection="column">
      <Text>{mode === "filter" ? `/${draft}▏  (Enter apply, Esc cancel)` : mode === "confirm" && pending ? `${pending.rerun ? "rerun" : "materialize"} ${pending.label}? (y/n)` : message || " "}</Text>
      <Text dimColor>{"hjkl move  ⏎ open  / select  m/M run  r runs  b backfills  ? keys  q quit".slice(0, width)}</Text>
    </Box>
  );

  if (mode === "help") {
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {[
          "←↓↑→ or h j k l   move between assets",
          "/                 filter by selection (e.g. +lake.orders, pipeline:orders, kind:iceberg)",
          "c                 collapse pipelines into one node each / show every asset",
          "m / M             materialize the asset / with its upstream (asks first)",
          "Enter             the asset: partitions, materializations, checks; or the run under the cursor",
          "r                 runs, newest first (r again: lineage); in a failed run: rerun from failure",
          "b                 backfills: progress and failed partitions (b again: lineage)",
          "? / Esc           these keys / back",
          "q                 quit",
          "",
          `legend: ${(Object.keys(MARKER) as AssetStatus[]).map((s) => `${MARKER[s]} ${s}`).join("  ")}`,
        ].map((l) => (
          <Text key={l}>{l}</Text>
        ))}
      </Box>
    );
  }

  if (mode === "runs") {
    const rows = snapshot.runs.slice(0, Math.max(1, height - 5));
    return (
      <Box flexDirection="column" width={width}>
        {header}
        <Text bold>{"RUN       STATUS    TRIGGER   STARTED   DURATION  SELECTION"}</Text>
        {rows.length === 0 ? <Text>no runs yet: select an asset and press m</Text> : null}
        {rows.map((r) => {
          const started = r.startedAt ?? r.createdAt;
          const ms = r.startedAt ? (r.endedAt ?? snapshot.at).getTime() - r.startedAt.getTime() : null;
          const line = `${r.id.slice(0, 8)}  ${r.status.padEnd(8)}  ${r.trigger.padEnd(8)}  ${started.toISOString().slice(11, 19)}  ${(ms === null ? "—" : `${(ms / 1000).toFixed(1)} s`).padEnd(8)}  ${r.selection ?? ""}`;
          const status: AssetStatus = r.status === "success" ? "materialized" : r.status === "failed" ? "failed" : r.status === "running" ? "running" : "missing";
          return (
            <Text key={r.id} {...paint(status)} inverse={r.id === snapshot.runs[Math.min(runCursor, snapshot.runs.length - 1)]?.id}>
              {line.slice(0, width)}
            </Text>
          );
        })}
        {footer}
      </Box>
    );
  }

  if (mode === "asset" && current) {
    const v = snapshot.assets.get(current);
    const mine = (snapshot.partitions ?? []).filter((r) => r.asset === current);
    const mats = assetDetail?.materializations ?? [];
    const latest = mats[0];
    const checks = Array.isArray(latest?.metadata.checks) ? (latest!.metadata.checks as Array<{ name?: unknown; passed?: unknown; message?: unknown }>) : [];
    const facts = (m: MaterializationRecord): string =>
      ["rows", "addedRecords", "snapshotId", "files", "invalidRows"].filter((k) => typeof m.metadata[k] === "number" || typeof m.metadata[k] === "string").map((k) => `${k} ${String(m.metadata[k])}`).join("  ");
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {v ? <Text><Text bold>{current}</Text><Text {...paint(v.status)}>{` ${MARKER[v.status]} ${v.status}`}</Text>{v.reason ? <Text>{` — ${v.reason}`}</Text> : null}</Text> : null}
        {v?.partitioned ? <Text wrap="truncate">{`partitions: ${partitionRangesText(mine) || "none yet"}`}</Text> : null}
        {v?.partitioned && mine.length > 0 && mine.length <= width - 8 ? (
          <Text>
            <Text>{"strip: "}</Text>
            {[...mine].sort((a, b) => ((a.partition ?? "") < (b.partition ?? "") ? -1 : 1)).map((r) => (
              <Text key={r.partition ?? ""} {...paint(r.status)}>{MARKER[r.status]}</Text>
            ))}
          </Text>
        ) : null}
        <Text bold>last materializations</Text>
        {assetDetail === undefined ? <Text dimColor>reading…</Text> : mats.length === 0 ? <Text>none yet: press Esc, then m</Text> : null}
        {mats.slice(0, Math.max(1, height - 12)).map((m) => (
          <Text key={`${m.runId}-${m.partition ?? ""}`} wrap="truncate">{`${m.materializedAt.toISOString().slice(0, 16).replace("T", " ")}  ${m.partition ?? ""}  run ${m.runId.slice(0, 8)}  ${facts(m)}`}</Text>
        ))}
        {checks.length > 0 ? <Text wrap="truncate">{`checks: ${checks.map((c) => `${c.passed ? "✓" : "✗"} ${String(c.name)}${c.passed ? "" : `: ${String(c.message ?? "")}`}`).join("  ")}`}</Text> : null}
        {footer}
      </Box>
    );
  }

  if (mode === "backfills") {
    const list = snapshot.backfills ?? [];
    const barWidth = 20;
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {list.length === 0 ? <Text>no backfills yet: floe backfill --select SEL --from K --to K</Text> : null}
        {list.slice(0, Math.max(1, Math.floor((height - 4) / 2))).map((b) => {
          const total = Object.values(b.runs).reduce((a, n) => a + n, 0);
          const done = b.runs.success ?? 0;
          const failed = b.runs.failed ?? 0;
          const filled = total === 0 ? 0 : Math.round((done / total) * barWidth);
          const red = total === 0 ? 0 : Math.min(barWidth - filled, Math.round((failed / total) * barWidth));
          return (
            <Box key={b.id} flexDirection="column">
              <Text wrap="truncate">
                <Text>{`${b.id.slice(0, 8)} ${b.selection} ${b.from}…${b.to} `}</Text>
                <Text {...paint("materialized")}>{"█".repeat(filled)}</Text>
                <Text {...paint("failed")}>{"█".repeat(red)}</Text>
                <Text dimColor>{"░".repeat(barWidth - filled - red)}</Text>
                <Text>{` ${done}/${total}`}</Text>
              </Text>
              <Text wrap="truncate" {...(b.failedPartitions.length > 0 ? paint("failed") : {})}>{`  ${b.status}${b.failedPartitions.length > 0 ? `, failed: ${b.failedPartitions.join(", ")}  (floe backfill retry ${b.id.slice(0, 8)})` : ", no failed partitions"}`}</Text>
            </Box>
          );
        })}
        {footer}
      </Box>
    );
  }

  if (mode === "run") {
    const d = runDetail;
    const t0 = d?.run.startedAt?.getTime() ?? 0;
    const t1 = (d?.run.endedAt ?? snapshot.at).getTime();
    const span = Math.max(1, t1 - t0);
    const barWidth = 20;
    const bar = (st: StepRecord): string => {
      if (!st.startedAt) return " ".repeat(barWidth);
      const a = Math.floor(((st.startedAt.getTime() - t0) / span) * barWidth);
      const b = Math.max(a + 1, Math.ceil((((st.endedAt ?? snapshot.at).getTime() - t0) / span) * barWidth));
      return (" ".repeat(a) + "█".repeat(Math.min(barWidth, b) - a)).padEnd(barWidth);
    };
    const stepStatus = (st: StepRecord): AssetStatus => (st.status === "success" ? "materialized" : st.status === "failed" || st.status === "upstream_failed" ? "failed" : st.status === "running" ? "running" : "missing");
    const room = Math.max(2, height - 8);
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {!d ? <Text dimColor>reading…</Text> : (
          <>
            <Text>{`${d.run.status}  ${d.run.trigger}  ${d.run.selection ?? ""}  ${((t1 - t0) / 1000).toFixed(1)} s${d.run.status === "failed" ? "   r: rerun from failure" : ""}`}</Text>
            {d.steps.slice(0, Math.ceil(room / 2)).map((st) => (
              <Text key={`${st.asset}-${st.partition ?? ""}`} {...paint(stepStatus(st))} wrap="truncate">
                {`${MARKER[stepStatus(st)]} ${stepId(st.asset, st.partition || null).padEnd(24).slice(0, 24)} ${bar(st)} ${st.status}${st.error ? `: ${st.error.split("\n")[0]}` : ""}`}
              </Text>
            ))}
            <Text bold>events</Text>
            {d.events.slice(-Math.floor(room / 2)).map((e) => (
              <Text key={e.id} wrap="truncate" dimColor={e.level === "debug" || e.level === "info"}>{`${e.createdAt.toISOString().slice(11, 19)} ${e.level.padEnd(5)} ${e.asset ?? ""} ${e.message}`}</Text>
            ))}
          </>
        )}
        {footer}
      </Box>
    );
  }

  // Lineage: as many layers as fit, scrolled so that the cursor's layer shows.
  const colWidth = Math.min(28, Math.max(8, ...columns.flat().map((k) => k.length + (pipes ? String(pipes.views.get(k)?.assets ?? "").length + 5 : 2))));
  const fit = Math.max(1, Math.floor((width + 5) / (colWidth + 5)));
  const first = Math.max(0, Math.min(col - Math.floor(fit / 2), columns.length - fit));
  const shown = columns.slice(first, first + fit);
  const rowsFit = Math.max(1, height - 7);
  const top = Math.max(0, row - rowsFit + 1);
  // the rows each shown layer draws (the cursor's layer scrolls), and who feeds whom between them
  const visibleRows = (c: number): string[] => {
    const start = c === col ? top : 0;
    return (columns[c] ?? []).slice(start, start + rowsFit);
  };
  const feeds = (from: string, to: string): boolean =>
    pipes ? (pipes.views.get(to)?.upstream.includes(from) ?? false) : graph.children(from).includes(to);
  const view = current && !pipes ? snapshot.assets.get(current) : undefined;
  const pipeView = current ? pipes?.views.get(current) : undefined;
  return (
    <Box flexDirection="column" width={width}>
      {header}
      {tooMany ? (
        <Text>{`${visible.size} assets are more than the lineage draws at once (${MAX_NODES}): press / and type a selection, e.g. pipeline:orders`}</Text>
      ) : (
        <Box flexDirection="row">
          {first > 0 ? <Text dimColor>{"◀ "}</Text> : null}
          {shown.map((layer, i) => (
            <Box key={first + i} flexDirection="row">
              {i > 0 ? (
                <Box flexDirection="column" width={5}>
                  {connector(visibleRows(first + i - 1), visibleRows(first + i), feeds).map((c, r) => (
                    <Text key={r} dimColor>{` ${c} `}</Text>
                  ))}
                </Box>
              ) : null}
              <Box flexDirection="column" width={colWidth}>
                {layer.slice(first + i === col ? top : 0, (first + i === col ? top : 0) + rowsFit).map((k, j) => {
                  const p = pipes?.views.get(k);
                  const status = p?.status ?? snapshot.assets.get(k)?.status ?? "missing";
                  const isCursor = first + i === col && (first + i === col ? top : 0) + j === row;
                  const label = `${status === "running" && spin ? "▷" : MARKER[status]} ${k}${p ? ` (${p.assets})` : ""}`;
                  return (
                    <Text key={k} inverse={isCursor} {...paint(status)} wrap="truncate">
                      {label}
                    </Text>
                  );
                })}
              </Box>
            </Box>
          ))}
          {first + fit < columns.length ? <Text dimColor>{" ▶"}</Text> : null}
        </Box>
      )}
      {pipeView ? (
        <Box flexDirection="column">
          <Text>
            <Text bold>{`pipeline ${pipeView.name}`}</Text>
            <Text {...paint(pipeView.status)}>{` ${MARKER[pipeView.status]} ${pipeView.status}`}</Text>
            <Text>{` (${pipeView.assets} assets; Enter expands, c shows all)`}</Text>
          </Text>
          <Text dimColor wrap="truncate">{`◀ ${pipeView.upstream.join(", ") || "—"}`}</Text>
        </Box>
      ) : null}
      {current && view ? (
        <Box flexDirection="column">
          <Text>
            <Text bold>{current}</Text>
            <Text {...paint(view.status)}>{` ${MARKER[view.status]} ${view.status}`}</Text>
            <Text>{view.partitioned ? ` (${countsText(view) || "no partitions yet"})` : view.reason ? ` (${view.reason})` : ""}</Text>
          </Text>
          <Text dimColor wrap="truncate">{`◀ ${[...graph.upstream(current, 1)].join(", ") || "—"}   ▶ ${[...graph.downstream(current, 1)].join(", ") || "—"}`}</Text>
        </Box>
      ) : null}
      <Text dimColor>{`legend: ${(Object.keys(MARKER) as AssetStatus[]).map((s) => `${MARKER[s]} ${s}`).join("  ")}`.slice(0, width)}</Text>
      {footer}
    </Box>
  );
}

/**
 * State that the input handler reads through a ref: keys can arrive faster than React renders
 * (a paste, tmux send-keys), and a handler closed over the last render would miss the change.
 */
function useRefState<T>(initial: T): [T, (next: T | ((v: T) => T)) => void, { readonly current: T }] {
  const [value, setValue] = useState(initial);
  const ref = useRef(initial);
  const set = (next: T | ((v: T) => T)): void => {
    ref.current = typeof next === "function" ? (next as (v: T) => T)(ref.current) : next;
    setValue(ref.current);
  };
  return [value, set, ref];
}
