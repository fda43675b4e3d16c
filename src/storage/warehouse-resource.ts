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
    const { createStorage } = await import("./index.js");
    const { credentials, ...s3 } = settings.warehouseS3 ?? {};
    return createStorage(
      {
        type: "s3",
        bucket: m[1]!,
        prefix: m[2] ?? "",
        ...s3,
        ...(credentials ? { credentials: { accessKeyId: resolveSecret(credentials.accessKeyId), secretAccessKey: resolveSecret(credentials.secretAccessKey) } } : {}),
      },
      settings.dir,
      "warehouseS3",
    );
  },
};
