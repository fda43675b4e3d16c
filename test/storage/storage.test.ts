import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { localStorage } from "../../src/storage/local-storage.js";
import { ObjectNotFoundError, s3Storage } from "../../src/storage/s3-storage.js";
import type { ObjectStorage } from "../../src/storage/types.js";
import { s3Credentials, s3Server } from "../helpers/s3.js";

const scratch = mkdtempSync(join(tmpdir(), "floe-storage-"));
let server: Awaited<ReturnType<typeof s3Server>>;
beforeAll(async () => {
  server = await s3Server();
});
afterAll(async () => {
  await server.close();
  rmSync(scratch, { recursive: true, force: true });
});
const all = async (s: ObjectStorage, prefix: string) => {
  const out: string[] = [];
  for await (const page of s.list(prefix)) out.push(...page.map((o) => o.key));
  return out;
};

const storages: Array<[string, () => Promise<ObjectStorage>]> = [
  ["local", async () => localStorage({ root: mkdtempSync(join(scratch, "local-")) })],
  ["s3", async () => s3Storage({ bucket: server.bucket, prefix: `p${Math.random().toString(36).slice(2, 8)}`, endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials })],
];

for (const [name, make] of storages) {
  describe(`${name} storage`, () => {
    it("writes, reads, lists by prefix in key order, downloads, uploads and deletes", async () => {
      const s = await make();
      await s.write("orders/2025-01-02/b.csv", "id\n2\n");
      await s.write("orders/2025-01-01/a.csv", "id\n1\n");
      await s.write("customers/c.ndjson", "{}\n");
      expect(await all(s, "orders/")).toEqual(["orders/2025-01-01/a.csv", "orders/2025-01-02/b.csv"]);
      expect(new TextDecoder().decode(await s.read("orders/2025-01-01/a.csv"))).toBe("id\n1\n");
      const head = await s.head("orders/2025-01-01/a.csv");
      expect(head).toMatchObject({ key: "orders/2025-01-01/a.csv", size: 5 });
      expect(await s.head("nope.csv")).toBeUndefined();
      const local = join(scratch, name, "copy.csv");
      expect(await s.download("orders/2025-01-02/b.csv", local)).toMatchObject({ size: 5 });
      expect(readFileSync(local, "utf8")).toBe("id\n2\n");
      writeFileSync(join(scratch, `${name}-up.bin`), Buffer.alloc(1000, 7));
      await s.upload(join(scratch, `${name}-up.bin`), "bin/up.bin");
      expect((await s.head("bin/up.bin"))?.size).toBe(1000);
      await s.write("orders/2025-01-01/a.csv", "id\n1\n10\n");
      expect((await s.head("orders/2025-01-01/a.csv"))?.etag).not.toBe(head!.etag); // content change → new etag
      await s.delete(["orders/2025-01-01/a.csv", "bin/up.bin"]);
      expect(await all(s, "")).toEqual(["customers/c.ndjson", "orders/2025-01-02/b.csv"]);
      expect(s.uriOf("x/y.csv")).toBe(`${s.uri}/x/y.csv`);
    });
  });
}

describe("s3 storage against a real S3 protocol server", () => {
  it("paginates listings over more than 1,000 keys", async () => {
    const s = await s3Storage({ bucket: server.bucket, prefix: "many", endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials });
    const keys = Array.from({ length: 1_050 }, (_, i) => `k/${String(i).padStart(5, "0")}.csv`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => s.write(k, "x")));
    const pages: number[] = [];
    const listed: string[] = [];
    for await (const page of s.list("k/")) {
      pages.push(page.length);
      listed.push(...page.map((o) => o.key));
    }
    expect(pages.length).toBeGreaterThan(1);
    expect(listed).toEqual(keys);
  });

  it("names a missing bucket, an unreachable endpoint, and a key deleted after listing", async () => {
    const missing = await s3Storage({ bucket: "no-such-bucket", endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials });
    await expect(all(missing, "")).rejects.toThrow(new UserError(`S3 bucket \`no-such-bucket\` does not exist (endpoint ${server.endpoint})`));
    const down = await s3Storage({ bucket: "b-b-b", endpoint: "http://127.0.0.1:1", forcePathStyle: true, credentials: { accessKeyId: "AKIA", secretAccessKey: "super-secret-key" } });
    const err = await all(down, "").catch((e: Error) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^cannot reach S3 endpoint http:\/\/127\.0\.0\.1:1 \(/);
    expect((err as Error).message).not.toContain("super-secret-key");
    const s = await s3Storage({ bucket: server.bucket, prefix: "gone", endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials });
    await s.write("f.csv", "x");
    await s.delete(["f.csv"]);
    await expect(s.download("f.csv", join(scratch, "gone.csv"))).rejects.toBeInstanceOf(ObjectNotFoundError);
  });
});
