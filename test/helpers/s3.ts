import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";

/** A local S3-compatible server (s3rver) on 127.0.0.1 with one bucket; `close()` removes everything. */
export async function s3Server(bucket = "floe-test"): Promise<{ endpoint: string; bucket: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "floe-s3-"));
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  const address = (await server.run()) as { port: number };
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const s3Credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
