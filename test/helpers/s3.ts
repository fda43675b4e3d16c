import { createCipheriv } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import type { S3StorageOptions } from "../../src/storage/s3-storage.js";

/** The one key pair s3rver knows. It checks the access key id, not V4 signatures. */
export const s3Credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3TestServer {
  endpoint: string;
  bucket: string;
  /** Options for `s3Storage` (or an S3Client) against this server and bucket. */
  config: S3StorageOptions & { endpoint: string; region: string; forcePathStyle: true; credentials: typeof s3Credentials };
  /** Every request answered, as `METHOD /path?query status`, in the order of the answers. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * A local S3-compatible server (s3rver) on 127.0.0.1 at a free port, storing in a temp folder,
 * with one bucket. `close()` stops it and removes the folder.
 *
 * s3rver encrypts list continuation tokens with DES, which OpenSSL 3 has only in its legacy
 * provider: without `--openssl-legacy-provider` (vitest.config.ts `execArgv`) every truncated
 * ListObjectsV2 answers 500, so this fails fast instead.
 *
 * @example
 * const server = await s3Server("landing");
 * const s3 = s3Storage({ ...server.config, prefix: "drop" });
 * await server.close();
 */
export async function s3Server(bucket = "floe-test"): Promise<S3TestServer> {
  try {
    createCipheriv("des", Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    throw new Error("s3rver needs Node's --openssl-legacy-provider for list pagination: run through vitest.config.ts (execArgv) or set NODE_OPTIONS=--openssl-legacy-provider");
  }
  const dir = mkdtempSync(join(tmpdir(), "floe-s3-"));
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  const { port } = (await server.run()) as { port: number };
  const requests: string[] = [];
  (server as unknown as { httpServer: Server }).httpServer.on("request", (req, res) => res.on("finish", () => requests.push(`${req.method} ${req.url} ${res.statusCode}`)));
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    requests,
    config: { bucket, endpoint, region: "us-east-1", forcePathStyle: true, credentials: s3Credentials },
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
