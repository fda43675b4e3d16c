import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";

// Storage profiles of floe.config.ts, named by a rawFiles asset, through the real CLI (embedded store).
const pipeline = (storage: string): string => `import { pipeline, rawFiles } from "floe";
export default pipeline("p", { assets: [rawFiles("raw", { storage: ${storage}, glob: "orders/*.csv", format: "csv" })] });
`;
const config = (storage: string): string => `import { defineConfig, secret } from "floe";
void secret;
export default defineConfig({ storage: ${storage} });
`;
const projects: Array<ReturnType<typeof tempProject>> = [];
const project = (files: Record<string, string>) => {
  const p = tempProject(files);
  projects.push(p);
  return p;
};
afterAll(() => {
  for (const p of projects) p.remove();
});

describe("storage profiles", () => {
  it("a rawFiles asset reads a local profile by name, its root relative to the project", async () => {
    const p = project({
      "data/landing/orders/a.csv": "id,amount\n1,10\n2,20\n",
      "floe.config.ts": config(`{ landing: { type: "local", root: "data/landing" }, archive: { type: "s3", bucket: "archive", region: "eu-west-1", credentials: { accessKeyId: secret("K"), secretAccessKey: secret("S") } } }`),
      "pipelines/p.ts": pipeline(`"landing"`),
    });
    const r = await floe(["materialize", "--select", "raw", "--json"], { cwd: p.dir });
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const out = JSON.parse(r.stdout) as { status: string; steps: Array<{ status: string; metadata: { rows: number; files: number } }> };
    expect(out.status).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ rows: 2, files: 1 });
  });

  it("an unknown profile name is a one-line error with a did-you-mean", async () => {
    const p = project({
      "floe.config.ts": config(`{ landing: { type: "local", root: "data/landing" } }`),
      "pipelines/p.ts": pipeline(`"landng"`),
    });
    const r = await floe(["materialize", "--select", "raw"], { cwd: p.dir });
    expect([r.code, r.stderr.trim()]).toEqual([2, "floe: pipelines/p.ts: rawFiles `raw` storage: unknown storage profile `landng`; did you mean `landing`?"]);
    const none = project({ "pipelines/p.ts": pipeline(`"landing"`) });
    const n = await floe(["list"], { cwd: none.dir });
    expect([n.code, n.stderr.trim()]).toEqual([2, 'floe: pipelines/p.ts: rawFiles `raw` storage: unknown storage profile `landing`; floe.config.ts defines none (add storage: { landing: { type: "local", root: "…" } })']);
  });

  it("a bad profile is a one-line error naming its path and what was expected", async () => {
    const cases: Array<[string, string]> = [
      [`{ landing: { type: "s3", bucket: "landing", region: 5 } }`, "storage.landing.region: expected string, got number"],
      [`{ landing: { type: "s3", bucket: "landing", forcePathStyle: "yes" } }`, "storage.landing.forcePathStyle: expected boolean, got string"],
      [`{ landing: { type: "ftp", root: "x" } }`, 'storage.landing.type: expected type "local" or "s3", got "ftp"'],
      [`{ landing: "data/landing" }`, 'storage.landing: expected { type: "local", root } or { type: "s3", bucket, … }, got string'],
      [`{ landing: { type: "local", root: "x", bucket: "b" } }`, 'storage.landing: Unrecognized key: "bucket"'],
      [`{ landing: { type: "s3", bucket: "My_Bucket" } }`, "storage.landing.bucket: expected an S3 bucket name (3-63 of a-z 0-9 . -), got `My_Bucket`"],
      [`{ landing: { type: "s3", bucket: "landing", credentials: { accessKeyId: secret("K") } } }`, 'storage.landing.credentials.secretAccessKey: expected a string or secret("NAME")'],
    ];
    for (const [storage, message] of cases) {
      const p = project({ "floe.config.ts": config(storage), "pipelines/p.ts": pipeline(`"landing"`) });
      const r = await floe(["list"], { cwd: p.dir });
      expect([r.code, r.stderr.trim()], storage).toEqual([2, `floe: floe.config.ts: ${message}`]);
    }
  });
});
