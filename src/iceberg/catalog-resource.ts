import type { ResourceFactory } from "../project/resources.js";
import type { Catalog } from "./catalog.js";
import { icebergCatalogMigration, sqlCatalog } from "./sql-catalog.js";

/**
 * The `iceberg` resource: the SQL catalog in the state database (its tables are created when the
 * store opens), shared by every `icebergTable` of the project.
 *
 * @example
 * const catalog = await ctx.resource<Catalog>("iceberg");
 * const pointer = await catalog.loadTable({ namespace: ["lake"], name: "orders" });
 */
export const icebergCatalogResource: ResourceFactory<Catalog> = {
  migrations: [icebergCatalogMigration],
  create: async ({ store }) => sqlCatalog(store.db, "floe"),
};
