import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { checkStorageConfig, createStorage, localStorage, ObjectNotFoundError, s3Storage } from "../../src/storage/index.js";
import type { ObjectInfo, ObjectStorage } from "../../src/storage/index.js";
import { s3Server, type S3TestServer } from "../helpers/s3.js";

const scratch = mkdtempSync(join(tmpdir(), "floe-storage-"));
let server: S3TestServer;
beforeAll(async () => {
  server = await s3Server();
});
afterAll(async () => {
  await server.close();
  rmSync(scratch, { recursive: true, force: true });
});

let serial = 0;
const unique = (name: string): string => `${name}-${++serial}-${Math.random().toString(36).slice(2, 8)}`;
const listAll = async (s: ObjectStorage, prefix = ""): Promise<ObjectInfo[]> => {
  const out: ObjectInfo[] = [];
  for await (const page of s.list(prefix)) out.push(...page);
  return out;
};
const keysOf = async (s: ObjectStorage, prefix = ""): Promise<string[]> => (await listAll(s, prefix)).map((o) => o.key);
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("utf8");
const md5 = (bytes: Uint8Array): string => createHash("md5").update(bytes).digest("hex");
/** The rejection of `p` (fails the test if it resolves). */
const rejection = async (p: Promise<unknown>): Promise<Error> => {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
};
/** Runs `fn` over `items` with at most `limit` in flight. */
const eachBounded = async <T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> => {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => { while (next < items.length) await fn(items[next++]!); }));
};

const storages: Array<[string, () => ObjectStorage]> = [
  ["local", () => localStorage({ root: join(scratch, unique("local")) })],
  ["s3", () => s3Storage({ ...server.config, prefix: unique("suite") })],
];

for (const [name, make] of storages) {
  describe(`${name} storage`, () => {
    it("writes and reads strings and bytes; head gives size, etag and time, or undefined", async () => {
      const s = make();
      const bytes = randomBytes(3000);
      await s.write("a/b.bin", bytes);
      await s.write("a/c.csv", "id\n1\n");
      expect(Buffer.from(await s.read("a/b.bin")).equals(bytes)).toBe(true);
      expect(text(await s.read("a/c.csv"))).toBe("id\n1\n");
      const head = await s.head("a/c.csv");
      expect(head).toMatchObject({ key: "a/c.csv", size: 5 });
      expect(head!.etag).toMatch(/^[^"]+$/);
      expect(Math.abs(head!.lastModified.getTime() - Date.now())).toBeLessThan(60_000);
      expect(await s.head("a/none.csv")).toBeUndefined();
      expect(await s.head("a")).toBeUndefined(); // a folder is not an object
    });

    it("lists every key under a prefix, in ascending order, whatever the write order", async () => {
      const s = make();
      const keys = ["orders/2025-01-02/b.csv", "orders/2025-01-01/z.csv", "orders/2025-01-01/a b+c ü.csv", "orders_all.csv", "ordinal/x.csv", "customers/c.ndjson", "top.csv"];
      for (const k of keys) await s.write(k, k);
      expect(await keysOf(s)).toEqual([...keys].sort());
      expect(await keysOf(s, "orders/")).toEqual(["orders/2025-01-01/a b+c ü.csv", "orders/2025-01-01/z.csv", "orders/2025-01-02/b.csv"]);
      expect(await keysOf(s, "orders/2025-01-0")).toHaveLength(3); // a prefix need not end at a slash
      // (Not `orders.csv`: S3 sorts it before `orders/…` by bytes, but s3rver lists folder by folder.)
      expect(await keysOf(s, "ord")).toEqual(["orders/2025-01-01/a b+c ü.csv", "orders/2025-01-01/z.csv", "orders/2025-01-02/b.csv", "orders_all.csv", "ordinal/x.csv"]);
      expect(await keysOf(s, "nothing/")).toEqual([]);
      const listed = await listAll(s, "customers/");
      expect(listed).toEqual([{ key: "customers/c.ndjson", size: 18, etag: (await s.head("customers/c.ndjson"))!.etag, lastModified: expect.any(Date) }]);
      expect(text(await s.read("orders/2025-01-01/a b+c ü.csv"))).toBe("orders/2025-01-01/a b+c ü.csv");
    });

    it("downloads to a new folder (replacing a file there) and returns what it copied", async () => {
      const s = make();
      const body = randomBytes(100_000);
      await s.write("in/x.bin", body);
      const dir = join(scratch, unique(`${name}-dl`), "deep", "er");
      const target = join(dir, "x.bin");
      const got = await s.download("in/x.bin", target);
      expect(got).toEqual(await s.head("in/x.bin"));
      expect(readFileSync(target).equals(body)).toBe(true);
      await s.write("in/x.bin", "v2");
      expect((await s.download("in/x.bin", target)).size).toBe(2);
      expect(readFileSync(target, "utf8")).toBe("v2");
      expect(readdirSync(dir)).toEqual(["x.bin"]); // no temporary file left behind
    });

    it("uploads a local file", async () => {
      const s = make();
      const path = join(scratch, `${unique(name)}.bin`);
      writeFileSync(path, Buffer.alloc(1000, 7));
      await s.upload(path, "bin/up.bin");
      expect(await s.head("bin/up.bin")).toMatchObject({ key: "bin/up.bin", size: 1000 });
      expect(Buffer.from(await s.read("bin/up.bin")).equals(Buffer.alloc(1000, 7))).toBe(true);
      // the object outlives the local file, and a new file under the local name does not change it
      rmSync(path);
      writeFileSync(path, "other");
      await s.upload(path, "bin/up2.bin");
      expect(Buffer.from(await s.read("bin/up.bin")).equals(Buffer.alloc(1000, 7))).toBe(true);
      expect(Buffer.from(await s.read("bin/up2.bin")).toString()).toBe("other");
      await s.upload(path, "bin/up.bin"); // replaces an existing object
      expect(Buffer.from(await s.read("bin/up.bin")).toString()).toBe("other");
    });

    it("deletes keys, ignoring missing ones and an empty list", async () => {
      const s = make();
      for (const k of ["d/1", "d/2", "d/3"]) await s.write(k, k);
      await s.delete([]);
      await s.delete(["d/1", "d/3", "d/never"]);
      expect(await keysOf(s)).toEqual(["d/2"]);
    });

    it("names its root and keys with absolute URIs", () => {
      const s = make();
      expect(s.uri).toMatch(name === "local" ? /^file:\/\/\/.+[^/]$/ : /^s3:\/\/floe-test\/suite-\d+-\w+$/);
      expect(s.uriOf("x/y.csv")).toBe(`${s.uri}/x/y.csv`);
    });

    it("changes the etag when the content changes, even at the same size", async () => {
      const s = make();
      await s.write("e.csv", "aaaa");
      const first = (await s.head("e.csv"))!.etag;
      await s.write("e.csv", "aaaa");
      if (name === "s3") expect((await s.head("e.csv"))!.etag).toBe(first); // content hash
      await new Promise((r) => setTimeout(r, 20)); // local etags are size + mtime: give the clock a tick
      await s.write("e.csv", "bbbb");
      const second = (await s.head("e.csv"))!.etag;
      expect(second).not.toBe(first);
      await s.write("e.csv", "bbbbb");
      expect((await s.head("e.csv"))!.etag).not.toBe(second);
    });

    // S3 PUTs are atomic by protocol, but s3rver writes objects in place: it cannot show this.
    it.skipIf(name === "s3")("shows a write only whole: readers see the old or the new object, never part of one", async () => {
      const s = make();
      const small = Buffer.alloc(64 * 1024, "a");
      const big = Buffer.alloc(6 * 1024 * 1024, "b");
      await s.write("w/obj.bin", small);
      let done = false;
      const writer = (async () => {
        for (let i = 0; i < 3; i++) await s.write("w/obj.bin", i % 2 === 0 ? big : small);
        await s.write("w/new.bin", big);
        done = true;
      })();
      while (!done) {
        const [listed, bytes, newHead] = await Promise.all([listAll(s, "w/"), s.read("w/obj.bin"), s.head("w/new.bin")]);
        for (const o of listed) expect([small.length, big.length], o.key).toContain(o.size);
        expect(listed.map((o) => o.key).every((k) => k === "w/obj.bin" || k === "w/new.bin")).toBe(true);
        expect(bytes.length === small.length ? bytes.every((b) => b === 97) : bytes.length === big.length && bytes.every((b) => b === 98)).toBe(true);
        expect(newHead === undefined || newHead.size === big.length).toBe(true);
      }
      await writer;
      expect((await s.head("w/new.bin"))?.size).toBe(big.length);
    });

    it("a key deleted after listing fails its download and read with ObjectNotFoundError naming it", async () => {
      const s = make();
      await s.write("gone/f.csv", "x");
      await s.write("gone/g.csv", "y");
      const [listed] = await listAll(s, "gone/");
      await s.delete([listed!.key]);
      const target = join(scratch, unique(`${name}-gone`), "f.csv");
      const err = await rejection(s.download(listed!.key, target));
      expect(err).toBeInstanceOf(ObjectNotFoundError);
      expect((err as ObjectNotFoundError).key).toBe("gone/f.csv");
      expect(err.message).toContain(s.uriOf("gone/f.csv"));
      expect(existsSync(target)).toBe(false);
      expect(await rejection(s.read("gone/f.csv"))).toBeInstanceOf(ObjectNotFoundError);
      expect(text(await s.read("gone/g.csv"))).toBe("y"); // the others are still there
    });
  });
}

describe("s3 storage against an S3 protocol server (s3rver)", () => {
  const secret = "sEcReT/kEy+0123456789abcdefABCDEF";

  it("paginates a listing of more than 1,000 keys a page per response, and deletes in batches of 1,000", async () => {
    const s = s3Storage({ ...server.config, prefix: unique("many") });
    const keys = Array.from({ length: 1_050 }, (_, i) => `k/${String(i).padStart(5, "0")}.csv`);
    await eachBounded(keys, 32, (k) => s.write(k, "x"));
    const pages: number[] = [];
    const listed: string[] = [];
    for await (const page of s.list("k/")) {
      pages.push(page.length);
      listed.push(...page.map((o) => o.key));
    }
    expect(pages).toEqual([1000, 50]);
    expect(listed).toEqual(keys);
    const deletes = server.requests.length;
    await s.delete(keys);
    expect(await keysOf(s)).toEqual([]);
    // Two DeleteObjects answered 200. (s3rver sometimes answers 500 to one: it deletes a batch's keys in
    // parallel and races on removing their emptied folder; the SDK's retry covers that.)
    expect(server.requests.slice(deletes).filter((r) => /^POST \/floe-test\/?\?delete.* 200$/.test(r))).toHaveLength(2);
  });

  it("keeps each storage inside its prefix, and skips folder markers", async () => {
    const base = unique("iso");
    const a = s3Storage({ ...server.config, prefix: `${base}/a` });
    const ab = s3Storage({ ...server.config, prefix: `/${base}/ab/` }); // slashes around a prefix are ignored
    const root = s3Storage({ ...server.config });
    await a.write("1.csv", "1");
    await ab.write("2.csv", "2");
    await root.write(`${base}/a/folder/`, ""); // what consoles make for "Create folder"
    expect(await keysOf(a)).toEqual(["1.csv"]);
    expect(await keysOf(ab)).toEqual(["2.csv"]);
    expect(ab.uri).toBe(`s3://floe-test/${base}/ab`);
    expect((await keysOf(root, `${base}/`)).sort()).toEqual([`${base}/a/1.csv`, `${base}/ab/2.csv`]);
    expect(root.uri).toBe("s3://floe-test");
  });

  it("uploads a file above 16 MiB in parts, and downloads it back byte for byte", async () => {
    const s = s3Storage({ ...server.config, prefix: unique("big") });
    const body = randomBytes(17 * 1024 * 1024);
    const path = join(scratch, `${unique("big")}.bin`);
    writeFileSync(path, body);
    const before = server.requests.length;
    await s.upload(path, "big.bin");
    const parts = server.requests.slice(before).filter((r) => /^PUT .*partNumber=/.test(r));
    expect(parts).toHaveLength(3); // 8 + 8 + 1 MiB (s3rver's multipart etags are plain MD5s, not `…-3`)
    const head = await s.head("big.bin");
    expect(head?.size).toBe(body.length);
    const target = join(scratch, unique("big-back"), "big.bin");
    expect(await s.download("big.bin", target)).toEqual(head);
    expect(md5(readFileSync(target))).toBe(md5(body));
  });

  it("names a missing bucket in every operation, head included", async () => {
    const s = s3Storage({ ...server.config, bucket: "no-such-bucket", credentials: { accessKeyId: "S3RVER", secretAccessKey: secret } });
    const message = `S3 bucket \`no-such-bucket\` does not exist (endpoint ${server.endpoint})`;
    for (const op of [() => keysOf(s), () => s.head("x.csv"), () => s.read("x.csv"), () => s.write("x.csv", "x"), () => s.download("x.csv", join(scratch, "nb.csv")), () => s.delete(["x.csv"])]) {
      const err = await rejection(op());
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toBe(message);
      expect(err.stack).not.toContain(secret);
    }
  });

  it("names an unreachable endpoint without the secret key", async () => {
    const s = s3Storage({ bucket: "b-b-b", endpoint: "http://127.0.0.1:1", forcePathStyle: true, credentials: { accessKeyId: "AKIA", secretAccessKey: secret } });
    for (const op of [() => keysOf(s), () => s.head("x"), () => s.write("x", "x")]) {
      const err = await rejection(op());
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toBe("cannot reach S3 endpoint http://127.0.0.1:1 (ECONNREFUSED)");
      expect(err.stack).not.toContain(secret);
    }
    // The SDK cannot use an endpoint with user:password@ anyway; it is refused without showing them.
    expect(() => s3Storage({ bucket: "b-b-b", endpoint: `http://user:${secret}@127.0.0.1:1` })).toThrow(new UserError("S3 endpoint: remove user:password@ from the URL and give credentials instead"));
  });

  it("says access is denied for unknown credentials, per storage, without the secret key", async () => {
    // s3rver checks the access key id but not V4 signatures: a wrong secret alone passes there.
    const prefix = unique("denied");
    const good = s3Storage({ ...server.config, prefix });
    const bad = s3Storage({ ...server.config, prefix, credentials: { accessKeyId: "NOT-A-KEY", secretAccessKey: secret, sessionToken: `${secret}-token` } });
    await good.write("a.csv", "a");
    for (const op of [() => keysOf(bad), () => bad.head("a.csv"), () => bad.read("a.csv"), () => bad.write("b.csv", "b"), () => bad.download("a.csv", join(scratch, "denied.csv")), () => bad.delete(["a.csv"])]) {
      const err = await rejection(op());
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toMatch(new RegExp(`^access denied to s3://floe-test/${prefix}; check the credentials of this source( \\(InvalidAccessKeyId\\))?$`));
      expect(`${err.message} ${err.stack}`).not.toContain(secret);
    }
    expect(await keysOf(good)).toEqual(["a.csv"]); // the other source's client is unaffected
  });
});

describe("createStorage", () => {
  it("builds a local storage relative to the base folder, and an S3 one", async () => {
    const base = join(scratch, unique("base"));
    mkdirSync(join(base, "landing"), { recursive: true });
    writeFileSync(join(base, "landing", "f.csv"), "x");
    const local = createStorage({ type: "local", root: "landing" }, base);
    expect(await keysOf(local)).toEqual(["f.csv"]);
    const s3 = createStorage({ type: "s3", ...server.config, prefix: unique("cs") }, base);
    await s3.write("f.csv", "y");
    expect(await keysOf(s3)).toEqual(["f.csv"]);
  });

  it("rejects a bad shape naming the field, never echoing a credential", () => {
    const bad = (config: unknown): string => {
      try {
        checkStorageConfig(config, "rawFiles `r` storage");
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      throw new Error("expected a UserError");
    };
    expect(bad(null)).toBe('rawFiles `r` storage: expected { type: "local", root } or { type: "s3", bucket, … }');
    expect(bad({ type: "ftp" })).toBe('rawFiles `r` storage.type: expected "local" or "s3", got `ftp`');
    expect(bad({ type: "local" })).toBe("rawFiles `r` storage.root: expected a folder path");
    expect(bad({ type: "local", root: "x", bucket: "b" })).toBe("rawFiles `r` storage.bucket: unknown field for local storage");
    expect(bad({ type: "s3", bucket: "My_Bucket" })).toBe("rawFiles `r` storage.bucket: expected an S3 bucket name (3-63 of a-z 0-9 . -), got `My_Bucket`");
    expect(bad({ type: "s3", bucket: "s3://bkt/orders" })).toBe("rawFiles `r` storage.bucket: expected a bucket name, got `s3://bkt/orders`; put the path after the bucket in prefix");
    expect(bad({ type: "s3", bucket: "bkt", endpont: "http://x" })).toBe("rawFiles `r` storage.endpont: unknown field for s3 storage; did you mean `endpoint`?");
    expect(bad({ type: "s3", bucket: "bkt", endpoint: "127.0.0.1:9000" })).toBe("rawFiles `r` storage.endpoint: expected an http(s):// URL, got `127.0.0.1:9000`");
    expect(bad({ type: "s3", bucket: "bkt", endpoint: "http://me:hunter22@minio:9000" })).toBe("rawFiles `r` storage.endpoint: remove user:password@ from the URL and give credentials instead");
    expect(bad({ type: "s3", bucket: "bkt", prefix: 3 })).toBe("rawFiles `r` storage.prefix: expected a string");
    expect(bad({ type: "s3", bucket: "bkt", forcePathStyle: "yes" })).toBe("rawFiles `r` storage.forcePathStyle: expected true or false");
    expect(bad({ type: "s3", bucket: "bkt", credentials: "AKIA:secret" })).toBe("rawFiles `r` storage.credentials: expected { accessKeyId, secretAccessKey, sessionToken? }");
    const m = bad({ type: "s3", bucket: "bkt", credentials: { accessKeyId: "AKIA", secretAccesKey: "hunter22" } });
    expect(m).toBe("rawFiles `r` storage.credentials.secretAccesKey: unknown field; did you mean `secretAccessKey`?");
    expect(bad({ type: "s3", bucket: "bkt", credentials: { accessKeyId: "AKIA", secretAccessKey: "" } })).toBe("rawFiles `r` storage.credentials.secretAccessKey: expected a non-empty string");
    expect(() => createStorage({ type: "s3", bucket: "B" }, scratch)).toThrow("storage.bucket: expected an S3 bucket name");
    expect(() => checkStorageConfig({ type: "s3", bucket: "bkt", prefix: "p", endpoint: "https://x.example", region: "eu-west-1", forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b", sessionToken: "c" } })).not.toThrow();
  });
});
