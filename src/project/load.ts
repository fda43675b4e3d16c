import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
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
    if (isUserError(e)) throw new UserError(`${rel}: ${e.message}`);
    throw new UserError(describeLoadError(e, file, rel));
  }
}

function describeLoadError(e: unknown, file: string, rel: string): string {
  const err = e instanceof Error ? e : new Error(String(e));
  const text = `${err.message}\n${err.stack ?? ""}`;
  // esbuild (tsx) syntax errors: "<file>:LINE:COL: ERROR: message"
  const syntax = new RegExp(`${escape(file)}:(\\d+):(\\d+): ERROR: (.*)`).exec(text);
  if (syntax) return `${rel}:${syntax[1]}:${syntax[2]}: syntax error: ${syntax[3]}`;
  // Errors thrown while the module runs: take the first stack frame in that file.
  const frame = new RegExp(`${escape(pathToFileURL(file).href)}:(\\d+):(\\d+)|${escape(file)}:(\\d+):(\\d+)`).exec(err.stack ?? "");
  const where = frame ? `${rel}:${frame[1] ?? frame[3]}` : rel;
  const first = err.message.split("\n").find((l) => l.trim() !== "") ?? err.name;
  if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") return `${rel}: ${first}`;
  return `${where}: failed to load: ${first}`;
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
  for (const file of files) {
    const mod = await importUserModule(file, dir);
    const rel = relative(dir, file);
    const found = [...new Set(Object.values(mod).filter(isPipelineDefinition))];
    if (found.length === 0) {
      throw new UserError(`${rel} exports no pipeline; add \`export default pipeline("name", { assets: [...] })\``);
    }
    for (const pipeline of found) pipelines.push({ pipeline, module: rel });
  }
  const graph = AssetGraph.build(pipelines);
  schedulesOf(graph); // a bad cron or timezone is an error of the project, whatever the command
  return { graph, pipelines };
}
