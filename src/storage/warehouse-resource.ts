import { UserError } from "../errors.js";
import type { ResourceFactory } from "../project/resources.js";
import { localStorage } from "./local-storage.js";
import type { ObjectStorage } from "./types.js";

/**
 * The warehouse where tables are written: `FLOE_WAREHOUSE` / `warehouse` in the config, a folder
 * by default (`<home>/warehouse`).
 *
 * @example
 * const warehouse = await ctx.resource<ObjectStorage>("warehouse");
 * await warehouse.write("tables/orders/_/x.txt", "hello");
 */
export const warehouseResource: ResourceFactory<ObjectStorage> = {
  async create({ settings }) {
    if (settings.warehouse.startsWith("s3://")) {
      throw new UserError(`warehouse ${settings.warehouse}: S3 warehouses are not supported yet; use a folder`);
    }
    return localStorage({ root: settings.warehouse });
  },
};
