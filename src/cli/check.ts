import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { isUserError } from "../errors.js";
import { AssetGraph, type LoadedPipeline } from "../dag/graph.js";
import { loadSettings } from "../project/config.js";
import { ModuleError, loadPipelineModule, pipelineFiles } from "../project/load.js";
import { schedulesOf } from "../scheduler/schedules.js";

/** One problem `floe check` found. `file` is relative to the project; null for a project-wide one. */
export interface Problem {
  file: string | null;
  line: number;
  col: number;
  message: string;
  /** `typescript`: from `tsc --noEmit`; `floe`: from loading the project as every command does. */
  source: "typescript" | "floe";
}

/** Which TypeScript checked the types: the project's own (its node_modules), else floe's. */
export interface TypeScriptUsed {
  version: string;
  from: "project" | "floe";
  tsc: string;
}

export interface CheckReport {
  dir: string;
  problems: Problem[];
  typescript: TypeScriptUsed | null;
  modules: number;
  pipelines: number;
  assets: number;
}

/**
 * Finds `tsc`: the TypeScript the project resolves (its own devDependency), else the one beside
 * floe (floe's devDependency, present in a checkout). Undefined when neither is installed.
 *
 * @example
 * findTypeScript("/home/me/shop"); // { version: "5.9.3", from: "project", tsc: "/home/me/shop/node_modules/typescript/bin/tsc" }
 */
export function findTypeScript(dir: string): TypeScriptUsed | undefined {
  const bases: Array<[TypeScriptUsed["from"], string]> = [["project", join(dir, "package.json")], ["floe", fileURLToPath(import.meta.url)]];
  for (const [from, base] of bases) {
    try {
      const pkgPath = createRequire(base).resolve("typescript/package.json");
      const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { version?: string; bin?: Record<string, string> };
      const tsc = join(dirname(pkgPath), pkg.bin?.tsc ?? "bin/tsc");
      if (existsSync(tsc)) return { version: pkg.version ?? "?", from, tsc };
    } catch {
      // not resolvable from there: try the next place
    }
  }
  return undefined;
}

/** The files tsc checks when the project has no tsconfig.json: pipelines/ (tests included) and the config. */
function defaultFiles(dir: string): string[] {
  const pipelines = join(dir, "pipelines");
  const modules = existsSync(pipelines)
    ? readdirSync(pipelines, { recursive: true, encoding: "utf8" })
        .filter((f) => /\.(ts|mts|cts|tsx)$/.test(f) && !/\.d\.[mc]?ts$/.test(f) && !f.split(/[\\/]/).includes("node_modules"))
        .map((f) => join("pipelines", f))
    : [];
  const config = ["floe.config.ts", "floe.config.mts"].filter((f) => existsSync(join(dir, f)));
  return [...modules.sort(), ...config];
}

/** Options tsc gets when the project has no tsconfig.json: what `floe init` writes, minus `types`. */
const DEFAULT_TSC_OPTIONS = ["--strict", "--target", "ES2022", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--lib", "ES2023", "--isolatedModules", "--skipLibCheck", "--allowImportingTsExtensions"];

/** `file(line,col): error TS2322: message` and `error TS2688: message`, as tsc prints them with --pretty false. */
const TSC_AT = /^(.+?)\((\d+),(\d+)\): (?:error|warning) (TS\d+): (.*)$/;
const TSC_GLOBAL = /^(?:error|warning) (TS\d+): (.*)$/;

/**
 * Parses the output of `tsc --pretty false` into problems; a message's indented continuation
 * lines are joined to it. Problems without a file are put on `fallbackFile` (the tsconfig.json).
 *
 * @example
 * parseTscOutput("pipelines/a.ts(3,5): error TS2322: Type 'number' is not assignable to type 'string'.\n", null);
 * // [{ file: "pipelines/a.ts", line: 3, col: 5, message: "Type 'number' is not assignable to type 'string'. (TS2322)", source: "typescript" }]
 */
export function parseTscOutput(output: string, fallbackFile: string | null): Problem[] {
  const problems: Array<Problem & { code: string }> = [];
  for (const raw of output.split(/\r?\n/)) {
    if (raw.trim() === "") continue;
    const at = TSC_AT.exec(raw);
    const global = at ? null : TSC_GLOBAL.exec(raw);
    if (at) problems.push({ file: at[1]!.split("\\").join("/"), line: Number(at[2]), col: Number(at[3]), message: at[5]!, code: at[4]!, source: "typescript" });
    else if (global) problems.push({ file: fallbackFile, line: 1, col: 1, message: global[2]!, code: global[1]!, source: "typescript" });
    else if (/^\s/.test(raw) && problems.length > 0) problems[problems.length - 1]!.message += ` ${raw.trim()}`;
  }
  return problems.map(({ code, ...p }) => ({ ...p, message: `${p.message} (${code})` }));
}

/** Runs tsc --noEmit in the project folder and resolves to its output. */
function runTsc(ts: TypeScriptUsed, dir: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ts.tsc, "--noEmit", "--pretty", "false", ...args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

async function typeProblems(dir: string, ts: TypeScriptUsed | undefined): Promise<Problem[]> {
  if (ts === undefined) {
    return [{ file: "package.json", line: 1, col: 1, source: "typescript", message: "TypeScript is not installed in the project (nor beside floe), so types were not checked; run `npm i -D typescript`" }];
  }
  const hasConfig = existsSync(join(dir, "tsconfig.json"));
  const args = hasConfig ? ["-p", "tsconfig.json"] : [...DEFAULT_TSC_OPTIONS, ...defaultFiles(dir)];
  if (!hasConfig && args.length === DEFAULT_TSC_OPTIONS.length) return []; // no TypeScript file to check
  const { code, output } = await runTsc(ts, dir, args);
  const problems = parseTscOutput(output, hasConfig ? "tsconfig.json" : null);
  if (code !== 0 && problems.length === 0) {
    const first = output.split("\n").find((l) => l.trim() !== "") ?? `exit code ${code}`;
    problems.push({ file: hasConfig ? "tsconfig.json" : null, line: 1, col: 1, source: "typescript", message: `tsc failed: ${first.trim()}` });
  }
  return problems;
}

/** Line and column (1-based) of `index` in `text`. */
function position(text: string, index: number): { line: number; col: number } {
  const before = text.slice(0, index).split("\n");
  return { line: before.length, col: (before.at(-1)?.length ?? 0) + 1 };
}

/** Where a quoted name (`"orders"`, `'orders'`, `` `orders` ``) first appears in a file: how an asset key is found again. */
function findQuoted(dir: string, file: string, name: string): { line: number; col: number } | undefined {
  const path = join(dir, file);
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, "utf8");
  const m = new RegExp(`(["'\`])${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\1`).exec(text);
  return m ? position(text, m.index) : undefined;
}

/** Where a config path (`storage.landing.region`) is written in the config file: each key after the one before. */
function findPath(dir: string, file: string, path: string): { line: number; col: number } | undefined {
  const full = join(dir, file);
  if (!existsSync(full)) return undefined;
  const text = readFileSync(full, "utf8");
  let from = 0;
  let found: number | undefined;
  for (const key of path.split(".").filter((k) => !/^\d+$/.test(k))) {
    const re = new RegExp(`["']?\\b${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b["']?\\s*:`, "g");
    re.lastIndex = from;
    const m = re.exec(text);
    if (!m) break;
    found = m.index;
    from = m.index + m[0].length;
  }
  return found === undefined ? undefined : position(text, found);
}

const FILE_PREFIX = /^((?:pipelines\/)?[^\s:]+\.(?:m|c)?[tj]sx?)(?::(\d+)(?::(\d+))?)?:? /;

/**
 * A floe error (one line, as the CLI prints it) as a problem with a place: the file it names
 * first, at the line it gives, else where the asset key it names (or the config key) is written.
 */
function floeProblem(dir: string, e: Error, files: readonly string[]): Problem {
  const message = e.message;
  const prefix = e instanceof ModuleError ? null : FILE_PREFIX.exec(message);
  let file: string | null = e instanceof ModuleError ? e.file.split("\\").join("/") : (prefix?.[1] ?? null);
  const detail = e instanceof ModuleError ? e.detail : prefix ? message.slice(prefix[0].length) : message;
  if (e instanceof ModuleError && e.line !== undefined) return { file, line: e.line, col: e.col ?? 1, message: detail, source: "floe" };
  if (prefix?.[2] !== undefined) return { file, line: Number(prefix[2]), col: Number(prefix[3] ?? 1), message: detail, source: "floe" };
  if (file === null) file = /\b(pipelines\/[^\s:,)]+\.(?:m|c)?[tj]sx?)\b/.exec(message)?.[1] ?? null;
  const key = /`([^`]+)`/.exec(detail)?.[1];
  if (file !== null && /^floe\.config\./.test(file)) {
    const path = /^([A-Za-z_$][\w$.-]*): /.exec(detail)?.[1];
    const at = path === undefined ? undefined : findPath(dir, file, path);
    return { file, ...(at ?? { line: 1, col: 1 }), message: detail, source: "floe" };
  }
  if (key !== undefined) {
    for (const f of file !== null ? [file] : files) {
      const at = findQuoted(dir, f, key);
      if (at) return { file: f, ...at, message: detail, source: "floe" };
    }
  }
  return { file, line: 1, col: 1, message: detail, source: "floe" };
}

/**
 * Checks a project without running anything: `tsc --noEmit` over it (its tsconfig.json, else
 * floe init's options over pipelines/ and floe.config.ts), and floe's own validation as every
 * command does it (floe.config.ts, each pipeline module, then the asset graph and schedules).
 * Each module is loaded on its own, so one broken module does not hide the problems of another.
 *
 * @example
 * const report = await checkProject("/home/me/shop");
 * for (const p of report.problems) console.log(formatProblem(p));
 */
export async function checkProject(dir: string): Promise<CheckReport> {
  const ts = findTypeScript(dir);
  const types = typeProblems(dir, ts); // tsc runs in its own process while the modules load here
  const problems: Problem[] = [];
  let files: string[] = [];
  try {
    files = pipelineFiles(dir).map((f) => relative(dir, f).split("\\").join("/"));
  } catch (e) {
    if (!isUserError(e)) throw e;
    problems.push({ file: null, line: 1, col: 1, message: e.message, source: "floe" });
  }
  try {
    await loadSettings(dir); // storage profiles that modules name are set here
  } catch (e) {
    if (!isUserError(e)) throw e;
    problems.push(floeProblem(dir, e, files));
  }
  const loaded: LoadedPipeline[] = [];
  let failed = 0;
  for (const file of files) {
    try {
      loaded.push(...(await loadPipelineModule(join(dir, file), dir)));
    } catch (e) {
      if (!isUserError(e)) throw e;
      failed++;
      problems.push(floeProblem(dir, e, files));
    }
  }
  let assets = 0;
  // The graph is built only over every module: with one missing, its assets would look undeclared.
  if (failed === 0 && loaded.length > 0) {
    try {
      const graph = AssetGraph.build(loaded);
      schedulesOf(graph);
      assets = graph.keys().length;
    } catch (e) {
      if (!isUserError(e)) throw e;
      problems.push(floeProblem(dir, e, files));
    }
  }
  problems.push(...(await types));
  problems.sort((a, b) => (a.file ?? "").localeCompare(b.file ?? "") || a.line - b.line || a.col - b.col);
  return { dir, problems, typescript: ts ?? null, modules: files.length, pipelines: loaded.length, assets };
}

/**
 * One problem as `floe check` prints it: `file:line:col message` (a project-wide one: the message).
 *
 * @example
 * formatProblem({ file: "pipelines/a.ts", line: 3, col: 5, message: "codeVersion …", source: "floe" }); // "pipelines/a.ts:3:5 codeVersion …"
 */
export function formatProblem(p: Problem): string {
  return p.file === null ? p.message : `${p.file}:${p.line}:${p.col} ${p.message}`;
}

/**
 * The closing line of `floe check`: how many problems, or what was found clean.
 *
 * @example
 * checkSummary(report); // "no problems: 1 module, 1 pipeline, 3 assets; types checked by TypeScript 5.9.3 (the project's)"
 */
export function checkSummary(r: CheckReport): string {
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
  const ts = r.typescript ? `types checked by TypeScript ${r.typescript.version} (${r.typescript.from === "project" ? "the project's" : "floe's own"})` : "types not checked (no TypeScript)";
  if (r.problems.length === 0) return `no problems: ${plural(r.modules, "module")}, ${plural(r.pipelines, "pipeline")}, ${plural(r.assets, "asset")}; ${ts}`;
  const files = new Set(r.problems.flatMap((p) => (p.file === null ? [] : [p.file])));
  return `${plural(r.problems.length, "problem")}${files.size > 0 ? ` in ${plural(files.size, "file")}` : ""}; ${ts}`;
}
