import { UserError } from "../errors.js";
import type { ResourceFactory } from "../project/resources.js";
import { resolveSecret } from "../secrets.js";
import { localStorage } from "./local-storage.js";
import type { ObjectStorage } from "./types.js";

/**
 * The warehouse where tables are written: `FLOE_WAREHOUSE` / `warehouse` in the config, a folder
 * by default (`<home>/warehouse`), or `s3://bucket/prefix` reached as `warehouseS3` says.
 *
 * @example
 * const warehouse = await ctx.resource<ObjectStorage>("warehouse");
 * await warehouse.write("tables/orders/_/x.txt", "hello");
 */
export const warehouseResource: ResourceFactory<ObjectStorage> = {
  async create({ settings }) {
    if (!settings.warehouse.startsWith("s3://")) return localStorage({ root: settings.warehouse });
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(settings.warehouse);
    if (!m || m[1] === "") throw new UserError(`warehouse \`${settings.warehouse}\` is not an s3://bucket/prefix URL`);
    const { s3Storage } = await import("./s3-storage.js");
    const s3 = settings.warehouseS3 ?? {};
    return s3Storage({
      bucket: m[1]!,
      prefix: m[2] ?? "",
      ...(s3.endpoint !== undefined ? { endpoint: s3.endpoint } : {}),
      ...(s3.region !== undefined ? { region: s3.region } : {}),
      ...(s3.forcePathStyle !== undefined ? { forcePathStyle: s3.forcePathStyle } : {}),
      ...(s3.credentials ? { credentials: { accessKeyId: resolveSecret(s3.credentials.accessKeyId), secretAccessKey: resolveSecret(s3.credentials.secretAccessKey) } } : {}),
    });
  },
};
