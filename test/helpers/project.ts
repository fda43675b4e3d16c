import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(repoRoot, "bin", "floe.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A throwaway floe project under test/.tmp (inside the repo, so `import … from "floe"` resolves
 * to this package). Files are given relative to the project.
 */
export function tempProject(files: Record<string, string>): { dir: string; write(files: Record<string, string>): void; remove(): void } {
  const dir = join(repoRoot, "test", ".tmp", `p-${randomUUID().slice(0, 8)}`);
  const write = (fs: Record<string, string>): void => {
    for (const [name, text] of Object.entries(fs)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
  };
  mkdirSync(dir, { recursive: true });
  write(files);
  return { dir, write, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the real `floe` binary (built dist) in `cwd`. */
export function floe(args: readonly string[], opts: { cwd: string; env?: Record<string, string | undefined> }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, FLOE_DATABASE_URL: undefined, ...opts.env };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const child = spawn(process.execPath, [bin, ...args], { cwd: opts.cwd, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A module text defining plain assets: `spec` maps key → deps; every asset returns `{ metadata: { key } }`. */
export function pipelineModule(name: string, spec: Record<string, string[]>, extra = ""): string {
  const assets = Object.entries(spec).map(
    ([key, deps]) => `asset(${JSON.stringify(key)}, { deps: ${JSON.stringify(deps)}, materialize: () => ({ metadata: { key: ${JSON.stringify(key)} } }) })`,
  );
  return `import { asset, pipeline } from "floe";\n${extra}\nexport default pipeline(${JSON.stringify(name)}, { assets: [\n  ${assets.join(",\n  ")},\n] });\n`;
}
