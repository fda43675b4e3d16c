import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import { UserError } from "../errors.js";
import { ObjectNotFoundError, type ObjectInfo, type ObjectStorage } from "./types.js";

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix inside the bucket; leading and trailing slashes are ignored. */
  prefix?: string;
  /** An S3-compatible endpoint (MinIO, R2, s3rver…); AWS S3 when omitted. */
  endpoint?: string;
  /** Default `us-east-1`; requests to AWS follow region redirects. */
  region?: string;
  forcePathStyle?: boolean;
  /** Resolved values: this source's own credentials. Without them, the AWS default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** Objects above this size are uploaded in parts. */
const MULTIPART_THRESHOLD = 16 * 1024 * 1024;
const DENIED = new Set(["AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled"]);
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EPROTO"]);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  errors?: Array<{ code?: string }>;
  $metadata?: { httpStatusCode?: number };
}

/**
 * An object storage over the S3 protocol, with its own client (and so its own credentials).
 * The AWS SDK is loaded on first use. SDK errors that are the user's to fix (missing bucket,
 * unreachable endpoint, access denied, no credentials) become one-line {@link UserError}s; a
 * missing object is an {@link ObjectNotFoundError}. No message ever contains the secret key.
 *
 * @example
 * const landing = s3Storage({ bucket: "landing", prefix: "orders", endpoint: "http://127.0.0.1:9000", forcePathStyle: true, credentials });
 * for await (const page of landing.list("2025-01-01/")) console.log(page.map((o) => o.key));
 * await landing.download("2025-01-01/a.csv", "/tmp/a.csv");
 */
export function s3Storage(options: S3StorageOptions): ObjectStorage {
  const Bucket = options.bucket;
  const region = options.region ?? "us-east-1";
  const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
  const uri = `s3://${Bucket}${prefix === "" ? "" : `/${prefix}`}`;
  const uriOf = (key: string): string => `${uri}/${key}`;
  const full = (key: string): string => (prefix === "" ? key : `${prefix}/${key}`);
  const rel = (key: string): string => (prefix === "" ? key : key.slice(prefix.length + 1));
  const endpoint = options.endpoint === undefined ? `https://s3.${region}.amazonaws.com` : checkEndpoint(options.endpoint);
  const creds = options.credentials;
  const secrets = [creds?.secretAccessKey, creds?.sessionToken].filter((s): s is string => s !== undefined && s.length >= 4);
  const redact = (text: string): string => secrets.reduce((t, s) => t.split(s).join("***"), text);

  let connection: Promise<{ sdk: typeof import("@aws-sdk/client-s3"); client: S3Client }> | undefined;
  const connect = () =>
    (connection ??= import("@aws-sdk/client-s3").then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        region,
        ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
        forcePathStyle: options.forcePathStyle ?? false,
        followRegionRedirects: true,
        // A copy: the SDK annotates the object it is given.
        ...(creds === undefined ? {} : { credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken } }),
        maxAttempts: 4, // standard retry mode: throttling, 5xx and network errors, with jittered backoff
        // Limits on the time to connect, of silence on the socket (body streams included), and to
        // the response headers (which a PUT gets after sending its whole body, up to 16 MiB).
        requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000, requestTimeout: 300_000, throwOnRequestTimeout: true },
        // No aws-chunked checksum trailers unless an operation needs them: several S3-compatible
        // servers store such bodies as they came.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      }),
    })));

  /** The error to throw for an SDK failure of `op` (on `key`, if any). */
  const explain = (e: unknown, op: string, key?: string): Error => {
    if (e instanceof UserError || e instanceof ObjectNotFoundError) return e;
    const err: SdkError = typeof e === "object" && e !== null ? (e as SdkError) : {};
    const status = err.$metadata?.httpStatusCode;
    const name = err.name ?? "";
    if (name === "NoSuchBucket" || (op === "HeadBucket" && status === 404)) return new UserError(`S3 bucket \`${Bucket}\` does not exist (endpoint ${endpoint})`);
    if (key !== undefined && (name === "NoSuchKey" || name === "NotFound" || status === 404)) return new ObjectNotFoundError(key, redact(uriOf(key)));
    if (DENIED.has(name) || status === 403) return new UserError(redact(`access denied to ${uri}; check the credentials of this source${DENIED.has(name) ? ` (${name})` : ""}`));
    const net = [err.code, ...(err.errors ?? []).map((x) => x.code)].find((c) => c !== undefined && UNREACHABLE.has(c));
    if (net !== undefined) return new UserError(`cannot reach S3 endpoint ${endpoint} (${net})`);
    if (name === "TimeoutError" && /establish a connection/.test(err.message ?? "")) return new UserError(`cannot reach S3 endpoint ${endpoint} (connection timed out)`);
    if (name === "CredentialsProviderError") return new UserError(`no credentials for ${uri}: give this source credentials, or set up the AWS default credential chain`);
    const message = redact(`S3 ${op} ${key === undefined ? uri : uriOf(key)} failed: ${err.message ?? String(e)}`.replace(/\s+/g, " "));
    return new Error(message, { cause: e });
  };
  /** Runs one SDK call, translating its errors. */
  const call = async <T>(op: string, key: string | undefined, run: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> => {
    try {
      return await run(await connect());
    } catch (e) {
      throw explain(e, op, key);
    }
  };
  const info = (key: string, o: { Size?: number; ContentLength?: number; ETag?: string; LastModified?: Date }): ObjectInfo => ({
    key,
    size: o.Size ?? o.ContentLength ?? 0,
    etag: (o.ETag ?? "").replaceAll('"', ""),
    lastModified: o.LastModified ?? new Date(0),
  });
  const put = (key: string, Body: Uint8Array | string): Promise<void> =>
    call("PutObject", key, async ({ sdk, client }) => void (await client.send(new sdk.PutObjectCommand({ Bucket, Key: full(key), Body }))));
  // A 404 on HEAD has no body: it is a missing key only if the bucket exists (checked once).
  let bucketChecked: Promise<unknown> | undefined;
  const checkBucket = (): Promise<unknown> =>
    (bucketChecked ??= call("HeadBucket", undefined, ({ sdk, client }) => client.send(new sdk.HeadBucketCommand({ Bucket }))).catch((e: unknown) => {
      bucketChecked = undefined; // checked again next time
      throw e;
    }));

  const head = async (key: string): Promise<ObjectInfo | undefined> => {
    try {
      const o = await call("HeadObject", key, ({ sdk, client }) => client.send(new sdk.HeadObjectCommand({ Bucket, Key: full(key) })));
      return info(key, o);
    } catch (e) {
      if (!(e instanceof ObjectNotFoundError)) throw e;
      await checkBucket();
      return undefined;
    }
  };

  return {
    uri,
    async *list(listPrefix) {
      let token: string | undefined;
      do {
        const page = await call("ListObjectsV2", undefined, ({ sdk, client }) =>
          client.send(new sdk.ListObjectsV2Command({ Bucket, Prefix: full(listPrefix), ContinuationToken: token })),
        );
        // Keys ending in "/" are folder markers made by consoles, not files.
        yield (page.Contents ?? []).flatMap((o) => (o.Key === undefined || o.Key.endsWith("/") ? [] : [info(rel(o.Key), o)]));
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    },
    head,
    read: (key) =>
      call("GetObject", key, async ({ sdk, client }) => {
        const o = await client.send(new sdk.GetObjectCommand({ Bucket, Key: full(key) }));
        if (o.Body === undefined) throw new Error("the response has no body");
        return o.Body.transformToByteArray();
      }),
    async download(key, localPath) {
      await mkdir(dirname(localPath), { recursive: true });
      const tmp = `${localPath}.${randomUUID()}.tmp`;
      try {
        return await call("GetObject", key, async ({ sdk, client }) => {
          const o = await client.send(new sdk.GetObjectCommand({ Bucket, Key: full(key) }));
          if (!(o.Body instanceof Readable)) throw new Error("the response has no body stream");
          await pipeline(o.Body, createWriteStream(tmp));
          const { size } = await stat(tmp);
          if (o.ContentLength !== undefined && size !== o.ContentLength) throw new Error(`got ${size} of ${o.ContentLength} bytes`);
          await rename(tmp, localPath);
          return info(key, { ...o, ContentLength: size });
        });
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
    },
    write: put,
    // `If-None-Match: *` makes S3 (and MinIO, R2) refuse the PUT with 412 when the key exists, or
    // 409 when a concurrent conditional write to it is in flight. Some servers ignore the header
    // (s3rver does): the HEAD before it keeps them from replacing an object that was already there.
    async writeIfAbsent(key, Body) {
      if ((await head(key)) !== undefined) return false;
      try {
        const { sdk, client } = await connect();
        await client.send(new sdk.PutObjectCommand({ Bucket, Key: full(key), Body, IfNoneMatch: "*" }));
        return true;
      } catch (e) {
        const err: SdkError = typeof e === "object" && e !== null ? (e as SdkError) : {};
        const status = err.$metadata?.httpStatusCode;
        if (status === 412 || status === 409 || err.name === "PreconditionFailed" || err.name === "ConditionalRequestConflict") return false;
        throw explain(e, "PutObject", key);
      }
    },
    async upload(localPath, key) {
      const { size } = await stat(localPath);
      // A buffered body can be retried by the SDK; a big file goes in parts, each retried alone.
      if (size <= MULTIPART_THRESHOLD) return put(key, await readFile(localPath));
      const { Upload } = await import("@aws-sdk/lib-storage");
      await call("Upload", key, async ({ client }) => {
        const upload = new Upload({ client, params: { Bucket, Key: full(key), Body: createReadStream(localPath) }, partSize: 8 * 1024 * 1024, queueSize: 4 });
        await upload.done();
      });
    },
    async delete(keys) {
      for (let i = 0; i < keys.length; i += 1000) {
        const batch = keys.slice(i, i + 1000);
        const out = await call("DeleteObjects", undefined, ({ sdk, client }) =>
          client.send(new sdk.DeleteObjectsCommand({ Bucket, Delete: { Objects: batch.map((k) => ({ Key: full(k) })), Quiet: true } })),
        );
        const failed = out.Errors?.[0];
        if (failed !== undefined) {
          throw explain({ name: failed.Code, message: `${out.Errors?.length} of ${batch.length} keys not deleted, e.g. ${failed.Key}: ${failed.Code} ${failed.Message}` }, "DeleteObjects");
        }
      }
    },
    uriOf,
  };
}

/** The endpoint as shown in messages; one with `user:password@` is refused (it would show them). */
function checkEndpoint(endpoint: string): string {
  if (endpoint.includes("@")) throw new UserError("S3 endpoint: remove user:password@ from the URL and give credentials instead");
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new UserError(`S3 endpoint \`${endpoint}\` is not a URL; expected http(s)://host[:port]`);
  }
  return url.href.replace(/\/$/, "");
}
