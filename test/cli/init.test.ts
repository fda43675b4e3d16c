import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floe, repoRoot, type CliResult } from "../helpers/project.js";

// `floe init` in a folder outside this repository: "floe" resolves only through the project's
// node_modules, as it does for a user. npm install is simulated offline by symlinks to the
// packages it would install (floe itself: this repository, which is the package).
const version = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
const pkgOf = (dir: string): Record<string, unknown> & { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> } =>
  JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as never;

/** What `npm install` puts in node_modules for a project made by floe init, without the network. */
function linkInstall(dir: string): void {
  mkdirSync(join(dir, "node_modules", "@types"), { recursive: true });
  symlinkSync(repoRoot, join(dir, "node_modules", "floe"), "dir");
  symlinkSync(join(repoRoot, "node_modules", "typescript"), join(dir, "node_modules", "typescript"), "dir");
  symlinkSync(join(repoRoot, "node_modules", "@types", "node"), join(dir, "node_modules", "@types", "node"), "dir");
}

function expectOneLine(r: CliResult, message: string | RegExp): void {
  expect(r.code, r.stderr + r.stdout).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  if (typeof message === "string") expect(lines[0]).toBe(`floe: ${message}`);
  else expect(lines[0]).toMatch(message);
}

function npmTest(cwd: string): Promise<CliResult> {
  return new Promise((done, fail) => {
    const env: NodeJS.ProcessEnv = { ...process.env, npm_config_update_notifier: "false", npm_config_offline: "true" };
    delete env.FLOE_DATABASE_URL;
    delete env.FLOE_HOME;
    const child = spawn("npm", ["test"], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", fail);
    child.on("close", (code) => done({ code: code ?? -1, stdout, stderr }));
  });
}

let base: string;
beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "floe-init-")));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

describe("floe init", () => {
  it("writes a project that materializes and tests itself offline, found from its subfolders", async () => {
    const r = await floe(["init", "shop"], { cwd: base });
    expect(r.code, r.stderr).toBe(0);
    const dir = join(base, "shop");
    // what it wrote
    for (const f of ["package.json", "tsconfig.json", "floe.config.ts", ".gitignore", "pipelines/orders.ts", "pipelines/orders.test.ts", "data/landing/orders/2025-01-02/orders.csv"]) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    const pkg = pkgOf(dir);
    expect(pkg.type).toBe("module");
    expect(pkg.name).toBe("shop");
    // run from a checkout, floe is a file: dependency on it (what `npm i /path/to/floe` writes)
    expect(pkg.dependencies.floe).toMatch(/^file:/);
    expect(resolve(dir, (pkg.dependencies.floe ?? "").slice("file:".length))).toBe(resolve(repoRoot));
    expect(Object.keys(pkg.devDependencies).sort()).toEqual(["@types/node", "typescript"]);
    expect(pkg.scripts.test).toBe("node --import floe/register --test pipelines/*.test.ts");
    const tsconfig = JSON.parse(readFileSync(join(dir, "tsconfig.json"), "utf8")) as { compilerOptions: Record<string, unknown> };
    expect(tsconfig.compilerOptions).toMatchObject({ strict: true, module: "NodeNext", moduleResolution: "NodeNext", noEmit: true });
    expect(readFileSync(join(dir, ".gitignore"), "utf8").split("\n")).toEqual(expect.arrayContaining([".floe/", "node_modules/"]));
    // the next commands, from where it ran
    expect(r.stdout).toContain("\n  cd shop\n");
    expect(r.stdout).toMatch(/\n {2}npm install +# floe from file:/);
    expect(r.stdout).toContain('npx floe materialize --select "+daily_revenue" --from 2025-01-01 --to 2025-01-03');
    expect(r.stdout).toContain("npm test");

    linkInstall(dir);
    // the example runs as printed, from the project folder
    const run = await floe(["materialize", "--select", "+daily_revenue", "--from", "2025-01-01", "--to", "2025-01-03", "--json"], { cwd: dir });
    expect(run.code, run.stderr + run.stdout).toBe(0);
    const steps = (JSON.parse(run.stdout) as { steps: Array<{ asset: string; partition: string; status: string; metadata: Record<string, unknown> }> }).steps;
    expect(steps.filter((s) => s.status !== "success")).toEqual([]);
    expect(steps.filter((s) => s.asset === "daily_revenue").map((s) => [s.partition, s.metadata.orders, s.metadata.revenue]).sort()).toEqual([
      ["2025-01-01", 3, 49.75],
      ["2025-01-02", 2, 23.75],
      ["2025-01-03", 4, 42],
    ]);
    expect(existsSync(join(dir, ".floe"))).toBe(true);

    // a subfolder finds the project (and its store): what just ran is materialized
    const status = await floe(["status", "--select", "daily_revenue", "--json"], { cwd: join(dir, "data", "landing", "orders") });
    expect(status.code, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout) as Array<{ partition: string; status: string }>;
    expect(rows.filter((x) => ["2025-01-01", "2025-01-02", "2025-01-03"].includes(x.partition)).map((x) => x.status)).toEqual(["materialized", "materialized", "materialized"]);
    const list = await floe(["list", "--json"], { cwd: join(dir, "pipelines") });
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { assets: Array<{ key: string }> }).assets.map((a) => a.key).sort()).toEqual(["daily_revenue", "orders", "raw_orders"]);
    expect(existsSync(join(dir, "pipelines", ".floe"))).toBe(false); // no second store in the subfolder

    // the example's own test, with the project's npm test
    const test = await npmTest(dir);
    expect(test.code, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/^# pass 2$/m);
    expect(test.stdout).toMatch(/^# fail 0$/m);
  }, 300_000);

  it("--project wins over the project found upward; a folder in no project says so in one line", async () => {
    const outer = join(base, "outer");
    const inner = join(base, "other");
    mkdirSync(join(outer, "pipelines", "deep"), { recursive: true });
    mkdirSync(join(inner, "pipelines"), { recursive: true });
    // "floe" resolves from these modules through the repository's node_modules link below
    mkdirSync(join(base, "node_modules"), { recursive: true });
    if (!existsSync(join(base, "node_modules", "floe"))) symlinkSync(repoRoot, join(base, "node_modules", "floe"), "dir");
    const module = (key: string): string => `import { asset, pipeline } from "floe";\nexport default pipeline("p", { assets: [asset("${key}", { materialize: () => ({}) })] });\n`;
    writeFileSync(join(base, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(outer, "pipelines", "p.ts"), module("outer_asset"));
    writeFileSync(join(inner, "pipelines", "p.ts"), module("inner_asset"));
    const keys = (r: CliResult): string[] => (JSON.parse(r.stdout) as { assets: Array<{ key: string }> }).assets.map((a) => a.key);
    const found = await floe(["list", "--json"], { cwd: join(outer, "pipelines", "deep") });
    expect(found.code, found.stderr).toBe(0);
    expect(keys(found)).toEqual(["outer_asset"]);
    const flag = await floe(["list", "--json", "--project", inner], { cwd: join(outer, "pipelines", "deep") });
    expect(flag.code, flag.stderr).toBe(0);
    expect(keys(flag)).toEqual(["inner_asset"]);

    const nowhere = join(base, "nowhere", "sub");
    mkdirSync(nowhere, { recursive: true });
    for (const args of [["list"], ["runs"], ["check"]]) {
      expectOneLine(await floe(args, { cwd: nowhere }), `no floe project in ${nowhere} or any folder above it (a project has a pipelines/ folder or floe.config.ts); start one with \`floe init\`, or pass --project DIR`);
    }
    expect(existsSync(join(nowhere, ".floe"))).toBe(false);
  });

  it("--version and -V print the version of package.json", async () => {
    for (const flag of ["--version", "-V"]) {
      const r = await floe([flag], { cwd: base });
      expect([r.code, r.stdout, r.stderr]).toEqual([0, `${version}\n`, ""]);
    }
  });

  it("refuses, in one line and with nothing written, a folder that is a project or holds a file it would write", async () => {
    const dir = join(base, "twice");
    expect((await floe(["init", dir], { cwd: base })).code).toBe(0);
    const before = readFileSync(join(dir, "pipelines", "orders.ts"), "utf8");
    writeFileSync(join(dir, "pipelines", "orders.ts"), `${before}// mine\n`);
    expectOneLine(await floe(["init", dir], { cwd: base }), `${dir} is already a floe project (it has pipelines/); floe init writes into a new or empty folder and never overwrites: pick another folder`);
    expect(readFileSync(join(dir, "pipelines", "orders.ts"), "utf8")).toBe(`${before}// mine\n`);

    const configOnly = join(base, "config-only");
    mkdirSync(configOnly);
    writeFileSync(join(configOnly, "floe.config.ts"), "export default {};\n");
    expectOneLine(await floe(["init"], { cwd: configOnly }), `${configOnly} is already a floe project (it has floe.config.ts); floe init writes into a new or empty folder and never overwrites: pick another folder`);

    // a sample file in the way: refused before anything is written (no package.json either)
    const clash = join(base, "clash");
    mkdirSync(join(clash, "data", "landing", "orders", "2025-01-01"), { recursive: true });
    writeFileSync(join(clash, "data", "landing", "orders", "2025-01-01", "orders.csv"), "id\n1\n");
    expectOneLine(await floe(["init", "clash"], { cwd: base }), `${join(clash, "data/landing/orders/2025-01-01/orders.csv")} exists; floe init never overwrites a file: move it or pick another folder`);
    expect(existsSync(join(clash, "package.json"))).toBe(false);
    expect(existsSync(join(clash, "pipelines"))).toBe(false);
    expect(readFileSync(join(clash, "data", "landing", "orders", "2025-01-01", "orders.csv"), "utf8")).toBe("id\n1\n");

    expectOneLine(await floe(["init", join(dir, "package.json")], { cwd: base }), `${join(dir, "package.json")} is a file; give floe init a folder`);
    const badPkg = join(base, "bad-pkg");
    mkdirSync(badPkg);
    writeFileSync(join(badPkg, "package.json"), "{ not json");
    expectOneLine(await floe(["init", badPkg], { cwd: base }), new RegExp(`^floe: ${badPkg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/package\\.json is not a JSON object \\(.+\\); fix it or pick another folder$`));
    expect(readFileSync(join(badPkg, "package.json"), "utf8")).toBe("{ not json");
    expectOneLine(await floe(["init", "x", "--force"], { cwd: base }), /^floe: unknown option '--force'/);
  });

  it("merges what npm init -y and npm i wrote: type becomes module, their fields and floe dependency stay", async () => {
    const dir = join(base, "npm-first");
    mkdirSync(dir);
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({
      name: "npm-first", version: "1.0.0", main: "index.js", license: "ISC", type: "commonjs",
      scripts: { test: 'echo "Error: no test specified" && exit 1' }, dependencies: { floe: "file:floe-0.1.0.tgz" },
    }, null, 2)}\n`);
    writeFileSync(join(dir, ".gitignore"), "dist\nnode_modules\n");
    const r = await floe(["init"], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('package.json: "type" was "commonjs", now "module": floe pipeline modules are ES modules');
    expect(r.stdout).toContain("updated: package.json, .gitignore");
    expect(r.stdout).not.toContain("cd "); // it ran in the project folder
    const pkg = pkgOf(dir);
    expect(pkg).toMatchObject({ name: "npm-first", version: "1.0.0", main: "index.js", license: "ISC", type: "module", dependencies: { floe: "file:floe-0.1.0.tgz" } });
    expect(pkg.private).toBeUndefined(); // not ours to decide for an existing package
    expect(pkg.scripts.test).toBe("node --import floe/register --test pipelines/*.test.ts");
    expect(readFileSync(join(dir, ".gitignore"), "utf8")).toBe("dist\nnode_modules\n.floe/\n"); // node_modules is there already
  });

  it("a project that Node reads as CommonJS gets one line naming the package.json to fix", async () => {
    const dir = join(base, "cjs");
    mkdirSync(join(dir, "pipelines"), { recursive: true });
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(repoRoot, join(dir, "node_modules", "floe"), "dir");
    writeFileSync(join(dir, "package.json"), '{ "type": "commonjs" }\n');
    writeFileSync(join(dir, "pipelines", "p.ts"), 'import { asset, pipeline } from "floe";\nexport default pipeline("p", { assets: [asset("a", { materialize: () => ({}) })] });\n');
    expectOneLine(await floe(["list"], { cwd: dir }), `pipelines/p.ts: loaded as CommonJS, but floe pipeline modules are ES modules: set "type": "module" in ${join(dir, "package.json")} (floe init does)`);
  });
});
