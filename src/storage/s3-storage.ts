import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { pipeline as pipe } from "node:stream/promises";
import type { Readable } from "node:stream";
import { UserError } from "../errors.js";
import type { ObjectInfo, ObjectStorage } from "./types.js";

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix inside the bucket, without a leading or trailing slash. */
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Resolved values; the source's own credentials, never process-global ones. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** A key that was listed but is gone when read: the caller fails that one file. */
export class ObjectNotFoundError extends Error {
  override readonly name = "ObjectNotFoundError";
}

/**
 * An object storage over the S3 protocol, with one client per storage. SDK errors that are the
 * user's to fix (missing bucket, unreachable endpoint, access denied) become one-line
 * UserErrors; a secret never appears in a message.
 *
 * @example
 * const landing = await s3Storage({ bucket: "landing", prefix: "orders", endpoint: "http://127.0.0.1:9000", forcePathStyle: true, credentials });
 * for await (const page of landing.list("2025-01-01/")) console.log(page.length);
 */
export async function s3Storage(options: S3StorageOptions): Promise<ObjectStorage> {
  const s3 = await import("@aws-sdk/client-s3"); // loaded only by projects that use S3
  const client = new s3.S3Client({
    region: options.region ?? "us-east-1",
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle ?? false,
    maxAttempts: 3,
    // Checksum trailers (aws-chunked bodies) only where the operation needs them: many
    // S3-compatible servers store a chunked body as it came.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
    ...(options.credentials ? { credentials: options.credentials } : {}),
  });
  const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
  const full = (key: string): string => (prefix === "" ? key : `${prefix}/${key}`);
  const rel = (key: string): string => (prefix === "" ? key : key.slice(prefix.length + 1));
  const where = `s3://${options.bucket}${prefix ? `/${prefix}` : ""}`;
  const explain = (e: unknown, key?: string): Error => {
    const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = err.$metadata?.httpStatusCode;
    if (err.name === "NoSuchBucket") return new UserError(`S3 bucket \`${options.bucket}\` does not exist${options.endpoint ? ` (endpoint ${options.endpoint})` : ""}`);
    if (err.name === "NoSuchKey" || err.name === "NotFound" || (status === 404 && key !== undefined)) return new ObjectNotFoundError(`${full(key ?? "")} no longer exists in s3://${options.bucket}`);
    if (err.name === "AccessDenied" || err.name === "Forbidden" || status === 403) return new UserError(`access denied to ${where}; check the credentials of this source`);
    if (err.code === "ECONNREFUSED" || err.code === "ENOTFOUND" || err.name === "TimeoutError" || /ECONNREFUSED|ENOTFOUND|getaddrinfo/.test(err.message ?? "")) {
      return new UserError(`cannot reach S3 endpoint ${options.endpoint ?? `for region ${options.region ?? "us-east-1"}`} (${err.code ?? err.name ?? "unreachable"})`);
    }
    return e instanceof Error ? e : new Error(String(e));
  };
  const info = (key: string, o: { Size?: number; ETag?: string; LastModified?: Date }): ObjectInfo => ({
    key,
    size: o.Size ?? 0,
    etag: (o.ETag ?? "").replaceAll('"', ""),
    lastModified: o.LastModified ?? new Date(0),
  });
  const put = async (key: string, body: Uint8Array | string): Promise<void> => {
    try {
      await client.send(new s3.PutObjectCommand({ Bucket: options.bucket, Key: full(key), Body: body }));
    } catch (e) {
      throw explain(e);
    }
  };
  return {
    uri: where,
    async *list(listPrefix) {
      let token: string | undefined;
      do {
        let page;
        try {
          page = await client.send(new s3.ListObjectsV2Command({ Bucket: options.bucket, Prefix: full(listPrefix), ...(token ? { ContinuationToken: token } : {}) }));
        } catch (e) {
          throw explain(e);
        }
        yield (page.Contents ?? []).filter((o) => o.Key !== undefined).map((o) => info(rel(o.Key!), o));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
    async head(key) {
      try {
        const o = await client.send(new s3.HeadObjectCommand({ Bucket: options.bucket, Key: full(key) }));
        return info(key, { Size: o.ContentLength ?? 0, ETag: o.ETag ?? "", LastModified: o.LastModified ?? new Date(0) });
      } catch (e) {
        const err = explain(e, key);
        if (err instanceof ObjectNotFoundError) return undefined;
        throw err;
      }
    },
    async read(key) {
      try {
        const o = await client.send(new s3.GetObjectCommand({ Bucket: options.bucket, Key: full(key) }));
        return await o.Body!.transformToByteArray();
      } catch (e) {
        throw explain(e, key);
      }
    },
    async download(key, localPath) {
      await mkdir(dirname(localPath), { recursive: true });
      const tmp = `${localPath}.${randomUUID()}.tmp`;
      try {
        const o = await client.send(new s3.GetObjectCommand({ Bucket: options.bucket, Key: full(key) }));
        await pipe(o.Body as Readable, createWriteStream(tmp));
        const size = (await stat(tmp)).size;
        if (o.ContentLength !== undefined && size !== o.ContentLength) throw new Error(`${full(key)}: got ${size} of ${o.ContentLength} bytes`);
        await rename(tmp, localPath);
        return info(key, { Size: size, ETag: o.ETag ?? "", LastModified: o.LastModified ?? new Date(0) });
      } catch (e) {
        await rm(tmp, { force: true });
        throw explain(e, key);
      }
    },
    write: (key, body) => put(key, body),
    async upload(localPath, key) {
      const { createReadStream } = await import("node:fs");
      const { readFile } = await import("node:fs/promises");
      const { size } = await stat(localPath);
      if (size <= 16 * 1024 * 1024) return put(key, await readFile(localPath));
      const { Upload } = await import("@aws-sdk/lib-storage");
      try {
        await new Upload({ client, params: { Bucket: options.bucket, Key: full(key), Body: createReadStream(localPath) } }).done();
      } catch (e) {
        throw explain(e);
      }
    },
    async delete(keys) {
      for (let i = 0; i < keys.length; i += 1000) {
        const batch = keys.slice(i, i + 1000).map((k) => ({ Key: full(k) }));
        try {
          await client.send(new s3.DeleteObjectsCommand({ Bucket: options.bucket, Delete: { Objects: batch, Quiet: true } }));
        } catch (e) {
          throw explain(e);
        }
      }
    },
    uriOf: (key) => `${where}/${key}`,
  };
}
