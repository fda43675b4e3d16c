import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { register } from "tsx/esm/api";
import { UserError, isUserError } from "../errors.js";
import { AssetGraph, type LoadedPipeline } from "../dag/graph.js";
import { isPipelineDefinition } from "../dag/types.js";
import { schedulesOf } from "../scheduler/schedules.js";

const MODULE_FILE = /^[^._].*\.(ts|mts|js|mjs)$/;

let registered = false;
/** Lets plain Node import TypeScript modules (the user's pipelines and config), once per process. */
export function enableTypeScript(): void {
  if (registered) return;
  register();
  registered = true;
}

/**
 * Imports a user module, turning any failure into a one-line UserError that names the file
 * (and the line, for syntax errors).
 *
 * @example
 * const mod = await importUserModule("/proj/pipelines/orders.ts", "/proj");
 */
export async function importUserModule(file: string, projectDir: string): Promise<Record<string, unknown>> {
  enableTypeScript();
  const rel = relative(projectDir, file);
  try {
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    const at = frameIn(e, file);
    if (isUserError(e)) throw new ModuleError(`${rel}: ${e.message}`, rel, e.message, at);
    const { message, detail, where } = describeLoadError(e, file, rel);
    throw new ModuleError(message, rel, detail, where ?? at);
  }
}

/**
 * A pipeline module or config file that did not load: the one-line message the CLI prints, plus
 * where it went wrong (`file`, and `line`/`col` when known) and the message without the file, so
 * `floe check` can print `file:line:col message`.
 *
 * @example
 * try { await importUserModule(file, dir); } catch (e) { if (e instanceof ModuleError) console.log(e.file, e.line, e.detail); }
 */
export class ModuleError extends UserError {
  readonly line: number | undefined;
  readonly col: number | undefined;
  constructor(message: string, readonly file: string, readonly detail: string, at?: { line: number; col: number | undefined }) {
    super(message);
    this.line = at?.line;
    this.col = at?.col;
  }
}

/** The first stack frame of `e` in `file` (mapped to the TypeScript source by tsx). */
function frameIn(e: unknown, file: string): { line: number; col: number } | undefined {
  const stack = e instanceof Error ? (e.stack ?? "") : "";
  const m = new RegExp(`${escape(pathToFileURL(file).href)}:(\\d+):(\\d+)|${escape(file)}:(\\d+):(\\d+)`).exec(stack);
  return m ? { line: Number(m[1] ?? m[3]), col: Number(m[2] ?? m[4]) } : undefined;
}

function describeLoadError(e: unknown, file: string, rel: string): { message: string; detail: string; where?: { line: number; col: number | undefined } } {
  const err = e instanceof Error ? e : new Error(String(e));
  const text = `${err.message}\n${err.stack ?? ""}`;
  // esbuild (tsx) syntax errors: "<file>:LINE:COL: ERROR: message"
  const syntax = new RegExp(`${escape(file)}:(\\d+):(\\d+): ERROR: (.*)`).exec(text);
  if (syntax) {
    const detail = `syntax error: ${syntax[3]}`;
    const col = Number(syntax[2]) + 1; // esbuild counts columns from 0, editors and tsc from 1
    return { message: `${rel}:${syntax[1]}:${col}: ${detail}`, detail, where: { line: Number(syntax[1]), col } };
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ERR_REQUIRE_CYCLE_MODULE" || code === "ERR_REQUIRE_ESM") {
    // Node read the module as CommonJS: no package.json says "type": "module" (`npm init -y` writes "commonjs").
    const detail = `loaded as CommonJS, but floe pipeline modules are ES modules: set "type": "module" in ${packageJsonOf(file) ?? "a package.json of the project"} (floe init does)`;
    return { message: `${rel}: ${detail}`, detail };
  }
  // Errors thrown while the module runs: take the first stack frame in that file.
  const frame = frameIn(err, file);
  const where = frame ? `${rel}:${frame.line}` : rel;
  const first = err.message.split("\n").find((l) => l.trim() !== "") ?? err.name;
  if (code === "ERR_MODULE_NOT_FOUND") return { message: `${rel}: ${first}`, detail: first };
  return { message: `${where}: failed to load: ${first}`, detail: `failed to load: ${first}` };
}

/** The nearest package.json above `file` (the one that decides how Node reads it), if any. */
function packageJsonOf(file: string): string | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "package.json");
    if (dirname(dir) === dir) return undefined;
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The module files of `<project>/pipelines`, sorted. */
export function pipelineFiles(projectDir: string): string[] {
  const dir = join(projectDir, "pipelines");
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(`no pipelines/ folder in ${projectDir}; create pipelines/<name>.ts exporting a pipeline (or pass --project DIR)`);
  }
  return readdirSync(dir)
    .filter((f) => MODULE_FILE.test(f) && !f.endsWith(".d.ts") && !/\.test\.[mc]?[tj]s$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Loads every module under `<project>/pipelines/` and resolves the asset graph.
 *
 * @example
 * const { graph, pipelines } = await loadProject("/path/to/project");
 */
export async function loadProject(projectDir: string): Promise<{ graph: AssetGraph; pipelines: LoadedPipeline[] }> {
  const dir = resolve(projectDir);
  const files = pipelineFiles(dir);
  if (files.length === 0) {
    throw new UserError(`pipelines/ in ${dir} holds no module; add pipelines/<name>.ts exporting a pipeline`);
  }
  const pipelines: LoadedPipeline[] = [];
  for (const file of files) pipelines.push(...(await loadPipelineModule(file, dir)));
  const graph = AssetGraph.build(pipelines);
  schedulesOf(graph); // a bad cron or timezone is an error of the project, whatever the command
  return { graph, pipelines };
}

/**
 * Imports one module of `pipelines/` and returns the pipelines it exports; a module that fails to
 * load or exports none is a {@link ModuleError}.
 *
 * @example
 * const loaded = await loadPipelineModule("/proj/pipelines/orders.ts", "/proj"); // [{ pipeline, module: "pipelines/orders.ts" }]
 */
export async function loadPipelineModule(file: string, projectDir: string): Promise<LoadedPipeline[]> {
  const dir = resolve(projectDir);
  const mod = await importUserModule(file, dir);
  const rel = relative(dir, file);
  const found = [...new Set(Object.values(mod).filter(isPipelineDefinition))];
  if (found.length === 0) {
    const detail = `exports no pipeline; add \`export default pipeline("name", { assets: [...] })\``;
    throw new ModuleError(`${rel} ${detail}`, rel, detail);
  }
  return found.map((pipeline) => ({ pipeline, module: rel }));
}
