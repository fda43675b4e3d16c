// The terminal UI: lineage in layers, runs, keys. Reads only through a StatusFeed; acts only
// through the callbacks it is given (the same functions the CLI uses).

import { Box, Text, useApp, useInput, useStdout, type Key } from "ink";
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type { AssetGraph } from "../dag/graph.js";
import { select } from "../dag/selection.js";
import type { EventRecord, MaterializationRecord, RunRecord, StepRecord } from "../state/index.js";
import {
  COLOR, LEGEND, MARKER, QUEUED_HINT, RUNNING_BLINK, THROUGH, connector, countsText, defaultPartitions, doneText, foldedLayers, heatmap, keysText, layers,
  partitionRanges, pipeNode, pipeOf, pipelineLayers, routeLongEdges, sortedPartitions, wrapList, type PipelineView, type ViewStatus,
} from "./model.js";
import type { StatusFeed, StatusSnapshot } from "./status-feed.js";
import { stepId } from "../dag/plan.js";
import { checksOf } from "../check-results.js";

/** Beyond this many assets the lineage asks for a selection instead of drawing them all. */
export const MAX_NODES = 5_000;
/** From this many assets on, the lineage starts with pipelines folded (one node each); `c` toggles at any size. */
export const COLLAPSE_AT = 60;

export interface TuiActions {
  /**
   * Queues a run of `assets` and returns its id (errors are shown, one line). `partitions` holds
   * the keys chosen for each partitioned asset (the confirmation named them).
   */
  materialize(assets: ReadonlySet<string>, label: string, partitions?: ReadonlyMap<string, readonly string[]>): Promise<string>;
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

/** What `y` queues: assets (with the partitions chosen for each partitioned one), or a rerun. */
interface Pending {
  assets: Set<string>;
  label: string;
  rerun?: string;
  partitions?: Map<string, string[]>;
  /** The partitions named in the confirmation, and whose they are. */
  keys?: string;
  of?: string;
  count?: number;
}

/** Clears the terminal and homes the cursor (then Ink redraws its last frame). */
const CLEAR = "\x1b[2J\x1b[3J\x1b[H";

/** The keys each screen offers, on its last line. */
const KEYS: Record<Mode, string> = {
  lineage: "hjkl move  ⏎ open  / filter  m/M materialize  c/- fold  r runs  ? keys  q quit",
  runs: "j/k move  ⏎ open run  r/Esc lineage  b backfills  ? keys  q quit",
  run: "j/k step  ⏎/e full error  r rerun failed run  Esc runs  ? keys  q quit",
  asset: "m/M materialize  Esc lineage  r runs  b backfills  ? keys  q quit",
  backfills: "b/Esc lineage  r runs  ? keys  q quit",
  help: "?/Esc back  q quit",
  filter: "",
  confirm: "",
};

/** The help screen: every line under 80 columns. */
const HELP = [
  "←↓↑→ or h j k l  move between assets",
  "/                filter by a selection: +lake.orders, pipeline:orders, kind:x",
  "                 (opens empty; Enter on an empty line shows every asset)",
  "c                fold every pipeline into one node / show every asset",
  "Enter / -        on a folded pipeline: unfold it / fold the asset's pipeline",
  "m / M            materialize the asset / with its upstream (asks first); a",
  "                 partitioned asset: its missing, stale and failed partitions",
  "Enter            open the asset (partitions, materializations, checks)",
  "r                runs, newest first; in a failed run: rerun from failure",
  "Enter / e        in runs: open the run; in a run: the step's full error",
  "b                backfills: progress and failed partitions",
  "? / Esc          these keys / back        q  quit",
  "",
  "lineage: ─▶ edges; a line crossing a layer carries an edge that skips it;",
  "  N/M after a partitioned asset: materialized partitions of all of them",
];

/**
 * The floe terminal UI.
 *
 * @example
 * render(<App graph={graph} feed={feed} initial={await feed.refresh()} actions={actions} width={80} height={24} />);
 */
export function App({ graph, feed, initial, actions, details, width, height, color = true }: AppProps) {
  const { exit } = useApp();
  const { write } = useStdout();
  const [snapshot, setSnapshot] = useState(initial);
  const [mode, setMode, modeRef] = useRefState<Mode>("lineage");
  const [filter, setFilter] = useState("");
  const [draft, setDraft, draftRef] = useRefState("");
  const [cursor, setCursor] = useState({ col: 0, row: 0 });
  const [message, setMessage] = useState("");
  const [pending, setPending] = useState<Pending | undefined>();
  const [runCursor, setRunCursor] = useState(0);
  const [runSel, setRunSel] = useState<string | undefined>();
  const [assetKey, setAssetKey] = useState<string | undefined>();
  const [assetDetail, setAssetDetail] = useState<Awaited<ReturnType<TuiDetails["asset"]>> | undefined>();
  const [runId, setRunId] = useState<string | undefined>();
  const [runDetail, setRunDetail] = useState<Awaited<ReturnType<TuiDetails["run"]>> | undefined>();
  const [stepCursor, setStepCursor] = useState(0);
  const [showError, setShowError] = useState(false);
  const [back, setBack] = useState<Mode>("lineage");
  const [helpBack, setHelpBack] = useState<Mode>("lineage");
  // folded: pipelines drawn as one node each, but those in `open`
  const [fold, setFold] = useState(graph.keys().length >= COLLAPSE_AT);
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const [focus, setFocus] = useState<string | undefined>();
  /** A screen change clears the last screen's message. */
  const go = (next: Mode): void => {
    setMode(next);
    setMessage("");
  };

  useEffect(() => feed.subscribe(setSnapshot), [feed]);
  // on a resize, clear the screen once the new frame is drawn, so no old frame stays behind
  const sized = useRef(`${width}x${height}`);
  useEffect(() => {
    if (sized.current === `${width}x${height}`) return;
    sized.current = `${width}x${height}`;
    const t = setTimeout(() => write(CLEAR), 60);
    return () => clearTimeout(t);
  }, [width, height, write]);
  // the asset and run screens re-read on every snapshot, like the lineage
  useEffect(() => {
    if (mode !== "asset" || !assetKey || !details) return;
    let live = true;
    details.asset(assetKey).then((d) => live && setAssetDetail(d), (e: unknown) => live && setMessage(String(e)));
    return () => void (live = false);
  }, [mode, assetKey, details, snapshot]);
  useEffect(() => {
    if (mode !== "run" || !runId || !details) return;
    let live = true;
    details.run(runId).then((d) => live && setRunDetail(d), (e: unknown) => live && setMessage(String(e)));
    return () => void (live = false);
  }, [mode, runId, details, snapshot]);
  // running assets blink between two markers while anything runs
  const running = [...snapshot.assets.values()].some((v) => v.status === "running") || (mode === "run" && runDetail?.steps.some((s) => s.status === "running") === true);
  const [spin, setSpin] = useState(false);
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => setSpin((x) => !x), 300);
    return () => clearInterval(t);
  }, [running]);
  const marker = (s: ViewStatus): string => (s === "running" && spin ? RUNNING_BLINK : MARKER[s]);

  const selected = useMemo(() => {
    if (filter === "") return undefined;
    try {
      return select(graph, filter);
    } catch {
      return undefined;
    }
  }, [graph, filter]);
  const visible = useMemo(() => selected ?? new Set(graph.keys()), [selected, graph]);
  const folded = filter === "" && fold;
  const tooMany = !folded && visible.size > MAX_NODES;
  const layout = useMemo(() => {
    if (folded) {
      const f = foldedLayers(graph, new Map(), open);
      return { columns: f.layers, parents: (n: string): readonly string[] => f.parents.get(n) ?? [] };
    }
    if (tooMany) return { columns: [] as string[][], parents: (): readonly string[] => [] };
    return { columns: layers(graph, visible), parents: (k: string): readonly string[] => graph.parents(k).filter((p) => visible.has(p)) };
  }, [folded, graph, open, visible, tooMany]);
  const pipeViews = useMemo(() => (folded ? pipelineLayers(graph, snapshot.assets).views : undefined), [folded, graph, snapshot]);
  const routed = useMemo(() => routeLongEdges(layout.columns, layout.parents), [layout]);
  const columns = layout.columns;
  const col = Math.min(cursor.col, Math.max(0, columns.length - 1));
  const row = Math.min(cursor.row, Math.max(0, (columns[col]?.length ?? 1) - 1));
  const current = columns[col]?.[row];
  // after unfolding or folding a pipeline, the cursor follows the node it was on
  useEffect(() => {
    if (focus === undefined) return;
    setFocus(undefined);
    columns.forEach((layer, c) => {
      const r = layer.indexOf(focus);
      if (r >= 0) setCursor({ col: c, row: r });
    });
  }, [focus, columns]);

  /** The partitions `m` queues for each partitioned asset: the target's defaults for its definition. */
  function choosePartitions(assets: ReadonlySet<string>, target: string): { partitions: Map<string, string[]>; keys: string; count: number; of?: string } | undefined {
    const now = new Date();
    const rowsOf = (a: string) => (snapshot.partitions ?? []).filter((r) => r.asset === a);
    const defaults = (a: string): string[] => {
      const all = graph.asset(a).partitions!.keys(now);
      return snapshot.partitions === undefined ? all.slice(-1) : defaultPartitions(all, rowsOf(a));
    };
    const targetDef = graph.asset(target).partitions;
    const targetKeys = targetDef ? defaults(target) : undefined;
    const out = new Map<string, string[]>();
    for (const a of assets) {
      const def = graph.asset(a).partitions;
      if (!def) continue;
      out.set(a, targetDef && targetKeys && def.id === targetDef.id ? targetKeys : defaults(a));
    }
    if (out.size === 0) return undefined;
    const shownAsset = targetDef ? target : [...out.keys()][0]!;
    const shown = out.get(shownAsset)!;
    return { partitions: out, keys: keysText(shown, graph.asset(shownAsset).partitions!.keys(now)), count: shown.length, ...(shownAsset === target ? {} : { of: shownAsset }) };
  }
  function askMaterialize(input: string, key: string, from: Mode): void {
    const assets = input === "M" ? new Set([key, ...graph.upstream(key)]) : new Set([key]);
    const chosen = choosePartitions(assets, key);
    setPending({ assets, label: input === "M" ? `+${key}` : key, ...(chosen ?? {}) });
    setBack(from);
    setMode("confirm");
  }

  // A chunk of several keys (a paste, a fast terminal) is handled one key at a time. Ink
  // subscribes once; each key goes to the handler of the latest render.
  const handleRef = useRef(handle);
  handleRef.current = handle;
  const onInput = useCallback((input: string, key: Key) => {
    if (input.length > 1 && !key.ctrl && !key.meta) {
      for (const ch of input) handleRef.current(ch === "\r" || ch === "\n" ? "" : ch, ch === "\r" || ch === "\n" ? { ...key, return: true } : key);
    } else handleRef.current(input, key);
  }, []);
  useInput(onInput);
  function handle(input: string, key: Key): void {
    const mode = modeRef.current;
    if (mode === "filter") {
      if (key.return) {
        const text = draftRef.current.trim();
        try {
          if (text !== "") select(graph, text);
          setFilter(text);
          setCursor({ col: 0, row: 0 });
          go("lineage");
          setMessage(text === "" ? "showing every asset" : `showing ${text}`);
        } catch (e) {
          go("lineage");
          setMessage(e instanceof Error ? e.message.split("\n")[0]! : String(e));
        }
      } else if (key.escape) go("lineage");
      else if (key.backspace || key.delete) setDraft((d) => d.slice(0, -1));
      else if (input && !key.ctrl && !key.meta) setDraft((d) => d + input);
      return;
    }
    if (mode === "confirm") {
      if (input === "y" && pending) {
        go(back);
        setMessage("queueing…");
        const queued = pending.rerun !== undefined && actions.rerun ? actions.rerun(pending.rerun) : actions.materialize(pending.assets, pending.label, pending.partitions);
        queued.then(
          (id) => {
            // show the new run appearing: the runs list, with it selected
            setRunSel(id);
            setMode("runs");
            setMessage(`run ${id.slice(0, 8)} queued for ${pending.label}`);
          },
          (e: unknown) => setMessage(e instanceof Error ? e.message.split("\n")[0]! : String(e)),
        );
      } else if (input === "n" || key.escape) {
        go(back);
        setMessage("nothing queued");
      }
      return;
    }
    if (input === "q") return void exit();
    if (input === "?") {
      if (mode === "help") return go(helpBack);
      setHelpBack(mode);
      return go("help");
    }
    if (mode === "help") {
      if (key.escape) go(helpBack);
      return;
    }
    if (mode === "run" && input === "r" && runDetail) {
      if (runDetail.run.status !== "failed" || !actions.rerun) return setMessage("only a failed run is rerun from failure");
      setPending({ assets: new Set(), label: `run ${runDetail.run.id.slice(0, 8)} from failure`, rerun: runDetail.run.id });
      setBack("run");
      return setMode("confirm");
    }
    if (input === "r") return go(mode === "runs" ? "lineage" : "runs");
    if (input === "b") return go(mode === "backfills" ? "lineage" : "backfills");
    if (mode === "run") {
      const steps = runDetail?.steps ?? [];
      if (key.escape && showError) return setShowError(false);
      if (key.escape) return go("runs");
      if (key.upArrow || input === "k") setStepCursor((c) => Math.max(0, c - 1));
      else if (key.downArrow || input === "j") setStepCursor((c) => Math.min(Math.max(0, steps.length - 1), c + 1));
      else if (key.return || input === "e") {
        const st = steps[Math.min(stepCursor, steps.length - 1)];
        if (!st?.error) return setMessage("this step has no error");
        setShowError((x) => !x);
      }
      return;
    }
    if (key.escape) return go("lineage");
    if (mode === "runs") {
      const at = runSel !== undefined ? snapshot.runs.findIndex((r) => r.id === runSel) : -1;
      const idx = at >= 0 ? at : Math.min(runCursor, snapshot.runs.length - 1);
      const moveTo = (i: number) => {
        const j = Math.max(0, Math.min(snapshot.runs.length - 1, i));
        setRunCursor(j);
        setRunSel(snapshot.runs[j]?.id);
      };
      if (key.upArrow || input === "k") moveTo(idx - 1);
      else if (key.downArrow || input === "j") moveTo(idx + 1);
      else if (key.return && details) {
        const r = snapshot.runs[idx];
        if (!r) return;
        setRunDetail(undefined);
        setRunId(r.id);
        setStepCursor(0);
        setShowError(false);
        go("run");
      }
      return;
    }
    if (mode === "asset") {
      if ((input === "m" || input === "M") && assetKey) askMaterialize(input, assetKey, "asset");
      return;
    }
    if (input === "/") {
      setDraft("");
      return setMode("filter");
    }
    if (mode !== "lineage") return;
    if (input === "c") {
      setFold(!folded);
      setOpen(new Set());
      setFilter("");
      setCursor({ col: 0, row: 0 });
      return setMessage(folded ? "every asset shown (c folds every pipeline)" : "pipelines folded (Enter unfolds one, c shows every asset)");
    }
    const pipe = current === undefined ? undefined : pipeOf(current);
    if (input === "-" && current) {
      if (pipe !== undefined) return setMessage(`pipeline ${pipe} is folded (Enter unfolds it)`);
      const name = graph.node(current).pipeline;
      setOpen(folded ? new Set([...open].filter((p) => p !== name)) : new Set(pipelineLayers(graph, snapshot.assets).layers.flat().filter((p) => p !== name)));
      setFold(true);
      setFilter("");
      setFocus(pipeNode(name));
      return setMessage(`pipeline ${name} folded (Enter unfolds it)`);
    }
    if (key.return && pipe !== undefined) {
      setOpen(new Set([...open, pipe]));
      const first = graph.keys().find((k) => graph.node(k).pipeline === pipe);
      if (first) setFocus(first);
      return setMessage(`pipeline ${pipe} unfolded (- folds it again)`);
    }
    if (key.return && current && details) {
      setAssetDetail(undefined);
      setAssetKey(current);
      return go("asset");
    }
    if ((input === "m" || input === "M") && pipe !== undefined) return setMessage("unfold the pipeline (Enter) to materialize its assets");
    if ((input === "m" || input === "M") && current) return askMaterialize(input, current, "lineage");
    const move = (dc: number, dr: number) => setCursor({ col: Math.max(0, Math.min(columns.length - 1, col + dc)), row: Math.max(0, row + dr) });
    if (key.leftArrow || input === "h") move(-1, 0);
    else if (key.rightArrow || input === "l") move(1, 0);
    else if (key.upArrow || input === "k") move(0, -1);
    else if (key.downArrow || input === "j") move(0, 1);
  }

  const paint = (status: ViewStatus) => (color ? { color: COLOR[status] } : {});
  const title = mode === "runs" ? "· runs" : mode === "help" ? "· keys" : mode === "asset" ? `· ${assetKey ?? ""}` : mode === "run" ? `· run ${runId?.slice(0, 8) ?? ""}` : mode === "backfills" ? "· backfills" : "· lineage";
  const header = (
    <Box justifyContent="space-between" width={width}>
      <Text wrap="truncate">{`floe ${title}${filter && (mode === "lineage" || mode === "filter" || mode === "confirm") ? ` · ${filter}` : ""}`}</Text>
      <Text dimColor>{` ${snapshot.at.toISOString().slice(11, 19)}`}</Text>
    </Box>
  );
  const promptText = (): [string, string] => {
    if (mode === "filter") return [`/${draft}▏`, `Enter apply (empty: every asset)  Esc keep ${filter || "every asset"}`];
    if (mode === "confirm" && pending) {
      const what = pending.rerun ? `rerun ${pending.label}` : `materialize ${pending.label}`;
      if (pending.count === undefined) return [`${what}? (y/n)`, "y queue a run for a worker  n/Esc cancel"];
      const n = `${pending.count} partition${pending.count === 1 ? "" : "s"}`;
      return [`${what}, ${n}${pending.of ? ` of ${pending.of}` : ""}? (y/n)`, `partitions: ${pending.keys ?? ""}`];
    }
    return [message || " ", KEYS[mode]];
  };
  const [line1, line2] = promptText();
  const footer = (
    <Box flexDirection="column" width={width}>
      <Text wrap="truncate">{line1}</Text>
      <Text dimColor wrap="truncate">{line2 || " "}</Text>
    </Box>
  );

  if (mode === "help") {
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {HELP.slice(0, Math.max(1, height - 6)).map((l, i) => (
          <Text key={i} wrap="truncate">{l || " "}</Text>
        ))}
        <Text wrap="truncate">{`legend: ${LEGEND}`}</Text>
        <Text dimColor wrap="truncate">{`${MARKER.queued} ${QUEUED_HINT}`}</Text>
        {footer}
      </Box>
    );
  }

  const screen = mode === "filter" ? "lineage" : mode === "confirm" ? back : mode;

  if (screen === "runs") {
    const rows = snapshot.runs.slice(0, Math.max(1, height - 5));
    const at = runSel !== undefined ? snapshot.runs.findIndex((r) => r.id === runSel) : -1;
    // a run just queued is selected once the feed shows it
    const sel = runSel !== undefined && at < 0 ? undefined : snapshot.runs[at >= 0 ? at : Math.min(runCursor, snapshot.runs.length - 1)]?.id;
    return (
      <Box flexDirection="column" width={width}>
        {header}
        <Text bold wrap="truncate">{"  RUN       STATUS    TRIGGER   STARTED   DURATION  SELECTION"}</Text>
        {rows.length === 0 ? <Text>no runs yet: select an asset and press m</Text> : null}
        {rows.map((r) => {
          const started = r.startedAt ?? r.createdAt;
          const ms = r.startedAt ? (r.endedAt ?? snapshot.at).getTime() - r.startedAt.getTime() : null;
          const line = `${r.id === sel ? "›" : " "} ${r.id.slice(0, 8)}  ${r.status.padEnd(8)}  ${r.trigger.padEnd(8)}  ${started.toISOString().slice(11, 19)}  ${(ms === null ? "—" : `${(ms / 1000).toFixed(1)} s`).padEnd(8)}  ${r.selection ?? ""}`;
          const status: ViewStatus = r.status === "success" ? "materialized" : r.status === "failed" ? "failed" : r.status === "running" ? "running" : r.status === "queued" ? "queued" : "missing";
          return (
            <Text key={r.id} {...paint(status)} inverse={r.id === sel} wrap="truncate">
              {line.slice(0, width)}
            </Text>
          );
        })}
        {snapshot.runs.some((r) => r.status === "queued") ? <Text dimColor wrap="truncate">{`${MARKER.queued} ${QUEUED_HINT}`}</Text> : null}
        {footer}
      </Box>
    );
  }

  if (screen === "asset" && assetKey) {
    const v = snapshot.assets.get(assetKey);
    const mine = (snapshot.partitions ?? []).filter((r) => r.asset === assetKey);
    const mats = assetDetail?.materializations ?? [];
    const latest = mats[0];
    const checks = checksOf(latest?.metadata);
    const facts = (m: MaterializationRecord): string =>
      ["rows", "addedRecords", "snapshotId", "files", "invalidRows"].filter((k) => typeof m.metadata[k] === "number" || typeof m.metadata[k] === "string").map((k) => `${k} ${String(m.metadata[k])}`).join("  ");
    const partLines: ReactNode[] = [];
    if (v?.partitioned) {
      const sorted = sortedPartitions(mine);
      const rangeLines = wrapList(partitionRanges(mine), width - 12, 4);
      if (rangeLines.length === 0) partLines.push(<Text key="p0">partitions: none yet</Text>);
      rangeLines.forEach((l, i) => partLines.push(<Text key={`p${i}`} wrap="truncate">{`${i === 0 ? "partitions: " : "            "}${l}`}</Text>));
      if (sorted.length > 0 && sorted.length <= width - 8) {
        partLines.push(
          <Text key="strip">
            <Text>{"strip: "}</Text>
            {sorted.map((r) => (
              <Text key={r.partition ?? ""} {...paint(r.status)}>{MARKER[r.status]}</Text>
            ))}
          </Text>,
        );
      } else if (sorted.length > 0) {
        const map = heatmap(sorted, width - 8);
        partLines.push(
          <Text key="heat">
            <Text>{"map:   "}</Text>
            {map.cells.map((s, i) => (
              <Text key={i} {...paint(s)}>{MARKER[s]}</Text>
            ))}
          </Text>,
          <Text key="heat-axis" dimColor wrap="truncate">{`       ${sorted[0]!.partition!} … ${sorted[sorted.length - 1]!.partition!}, ${map.per} partitions a mark (worst shown)`}</Text>,
        );
      }
    }
    const room = Math.max(1, height - 8 - partLines.length - (checks.length > 0 ? 1 : 0));
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {v ? (
          <Text wrap="truncate">
            <Text bold>{assetKey}</Text>
            <Text {...paint(v.status)}>{` ${marker(v.status)} ${v.status}`}</Text>
            <Text>{`${v.partitioned && countsText(v) ? ` (${countsText(v)})` : ""}${v.reason ? ` — ${v.reason}` : ""}`}</Text>
          </Text>
        ) : null}
        {partLines}
        <Text bold>last materializations</Text>
        {assetDetail === undefined ? <Text dimColor>reading…</Text> : mats.length === 0 ? <Text>none yet: press m</Text> : null}
        {mats.slice(0, room).map((m) => (
          <Text key={`${m.runId}-${m.partition ?? ""}`} wrap="truncate">{`${m.materializedAt.toISOString().slice(0, 16).replace("T", " ")}  ${m.partition ?? ""}  run ${m.runId.slice(0, 8)}  ${facts(m)}`}</Text>
        ))}
        {checks.length > 0 ? <Text wrap="truncate">{`checks: ${checks.map((c) => `${c.passed ? "✓" : c.severity === "warn" ? "!" : "✗"} ${c.name}${c.passed ? "" : `: ${c.message}`}`).join("  ")}`}</Text> : null}
        {footer}
      </Box>
    );
  }

  if (screen === "backfills") {
    const list = snapshot.backfills ?? [];
    const barWidth = 20;
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {list.length === 0 ? <Text wrap="truncate">no backfills yet: floe backfill --select SEL --from K --to K</Text> : null}
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

  if (screen === "run") {
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
    const stepStatus = (st: StepRecord): ViewStatus =>
      st.status === "success" ? "materialized" : st.status === "failed" || st.status === "upstream_failed" ? "failed" : st.status === "running" ? "running" : st.status === "pending" ? "queued" : "missing";
    const stepText = (st: StepRecord): string => (st.status === "pending" && d?.run.status === "queued" ? "queued" : st.status);
    const steps = d?.steps ?? [];
    const sc = Math.min(stepCursor, Math.max(0, steps.length - 1));
    const picked = steps[sc];
    const errorLines = showError && picked?.error ? wrapText(picked.error, width - 2) : [];
    const errorShown = errorLines.slice(0, Math.max(1, Math.floor((height - 8) / 2)));
    const room = Math.max(2, height - 7 - (errorShown.length > 0 ? errorShown.length + 1 : 0));
    const stepRoom = Math.max(1, Math.ceil(room / 2));
    const stepTop = Math.max(0, Math.min(sc - stepRoom + 1, steps.length - stepRoom));
    return (
      <Box flexDirection="column" width={width}>
        {header}
        {!d ? <Text dimColor>reading…</Text> : (
          <>
            <Text wrap="truncate">{`${d.run.status}  ${d.run.trigger}  ${d.run.selection ?? ""}  ${((t1 - t0) / 1000).toFixed(1)} s${d.run.status === "failed" ? "   r: rerun from failure" : ""}`}</Text>
            {steps.slice(stepTop, stepTop + stepRoom).map((st, i) => (
              <Text key={`${st.asset}-${st.partition ?? ""}`} {...paint(stepStatus(st))} wrap="truncate" inverse={stepTop + i === sc && steps.length > 1}>
                {`${steps.length > 1 ? (stepTop + i === sc ? "›" : " ") : ""}${marker(stepStatus(st))} ${stepId(st.asset, st.partition || null).padEnd(24).slice(0, 24)} ${bar(st)} ${stepText(st)}${st.error ? `: ${st.error.split("\n")[0]}` : ""}`}
              </Text>
            ))}
            {errorShown.length > 0 ? (
              <>
                <Text bold wrap="truncate">{`error of ${stepId(picked!.asset, picked!.partition || null)}${errorLines.length > errorShown.length ? ` (first ${errorShown.length} of ${errorLines.length} lines)` : ""}, Esc closes`}</Text>
                {errorShown.map((l, i) => (
                  <Text key={`err${i}`} {...paint("failed")}>{`  ${l}`}</Text>
                ))}
              </>
            ) : null}
            <Text bold>events</Text>
            {d.events.slice(-Math.max(1, Math.floor(room / 2))).map((e) => (
              <Text key={e.id} wrap="truncate" dimColor={e.level === "debug" || e.level === "info"}>{`${e.createdAt.toISOString().slice(11, 19)} ${e.level.padEnd(5)} ${e.asset ?? ""} ${e.message}`}</Text>
            ))}
          </>
        )}
        {footer}
      </Box>
    );
  }

  // Lineage: as many layers as fit, scrolled so that the cursor's layer shows.
  const pipeView = (k: string): PipelineView | undefined => {
    const p = pipeOf(k);
    return p === undefined ? undefined : pipeViews?.get(p);
  };
  const labelOf = (k: string): { text: string; status: ViewStatus } => {
    const p = pipeView(k);
    if (p) return { text: `${p.name} (${p.assets})`, status: p.status };
    const v = snapshot.assets.get(k);
    const status = v?.status ?? "missing";
    const total = v ? Object.values(v.counts).reduce((a, n) => a + (n ?? 0), 0) : 0;
    return { text: `${k}${v?.partitioned && total > 0 ? ` ${doneText(v)}` : ""}`, status };
  };
  const drawn = routed.columns;
  const colWidth = Math.min(28, Math.max(8, ...columns.flat().map((k) => labelOf(k).text.length + 2)));
  const fit = Math.max(1, Math.floor((width + 5) / (colWidth + 5)));
  const first = Math.max(0, Math.min(col - Math.floor(fit / 2), drawn.length - fit));
  const shown = drawn.slice(first, first + fit);
  const queuedAny = [...snapshot.assets.values()].some((v) => v.status === "queued");
  const rowsFit = Math.max(1, height - 7 - (queuedAny ? 1 : 0));
  const top = Math.max(0, row - rowsFit + 1);
  // the rows each shown layer draws (the cursor's layer scrolls), and who feeds whom between them
  const visibleRows = (c: number): string[] => {
    const start = c === col ? top : 0;
    return (drawn[c] ?? []).slice(start, start + rowsFit);
  };
  const view = current && pipeOf(current) === undefined ? snapshot.assets.get(current) : undefined;
  const pv = current ? pipeView(current) : undefined;
  return (
    <Box flexDirection="column" width={width}>
      {header}
      {tooMany ? (
        <Text wrap="wrap">{`${visible.size} assets are more than the lineage draws at once (${MAX_NODES}): press / and type a selection, e.g. pipeline:orders`}</Text>
      ) : (
        <Box flexDirection="row">
          {first > 0 ? <Text dimColor>{"◀ "}</Text> : null}
          {shown.map((layer, i) => (
            <Box key={first + i} flexDirection="row">
              {i > 0 ? (
                <Box flexDirection="column" width={5}>
                  {connector(visibleRows(first + i - 1), visibleRows(first + i), routed.feeds).map((c, r) => (
                    <Text key={r} dimColor>{` ${c} `}</Text>
                  ))}
                </Box>
              ) : null}
              <Box flexDirection="column" width={colWidth}>
                {visibleRows(first + i).map((k, j) => {
                  if (k.startsWith(THROUGH)) {
                    return (
                      <Text key={k} dimColor wrap="truncate">
                        {`── ${pipeOf(k.slice(1)) ?? k.slice(1)} `.padEnd(colWidth, "─")}
                      </Text>
                    );
                  }
                  const { text, status } = labelOf(k);
                  const isCursor = first + i === col && (first + i === col ? top : 0) + j === row;
                  return (
                    <Text key={k} inverse={isCursor} {...paint(status)} wrap="truncate">
                      {`${marker(status)} ${text}`}
                    </Text>
                  );
                })}
              </Box>
            </Box>
          ))}
          {first + fit < drawn.length ? <Text dimColor>{" »"}</Text> : null}
        </Box>
      )}
      {pv ? (
        <Box flexDirection="column">
          <Text wrap="truncate">
            <Text bold>{`pipeline ${pv.name}`}</Text>
            <Text {...paint(pv.status)}>{` ${marker(pv.status)} ${pv.status}`}</Text>
            <Text>{` (${pv.assets} assets; Enter unfolds, c shows all)`}</Text>
          </Text>
          <Text dimColor wrap="truncate">{`◀ ${pv.upstream.join(", ") || "—"}`}</Text>
        </Box>
      ) : null}
      {current && view ? (
        <Box flexDirection="column">
          <Text wrap="truncate">
            <Text bold>{current}</Text>
            <Text {...paint(view.status)}>{` ${marker(view.status)} ${view.status}`}</Text>
            <Text>{view.partitioned ? ` (${countsText(view) || "no partitions yet"})` : view.reason ? ` (${view.reason})` : ""}</Text>
          </Text>
          <Text dimColor wrap="truncate">{`◀ ${[...graph.upstream(current, 1)].join(", ") || "—"}   ▶ ${[...graph.downstream(current, 1)].join(", ") || "—"}`}</Text>
        </Box>
      ) : null}
      <Text dimColor wrap="truncate">{`legend: ${LEGEND}`}</Text>
      {queuedAny ? <Text dimColor wrap="truncate">{`${MARKER.queued} ${QUEUED_HINT}`}</Text> : null}
      {footer}
    </Box>
  );
}

/** Text wrapped to `width`, keeping its own line breaks. */
function wrapText(text: string, width: number): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") out.push("");
    for (let i = 0; i < line.length; i += Math.max(1, width)) out.push(line.slice(i, i + Math.max(1, width)));
  }
  return out;
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
