import { duckdbResource } from "../duckdb/duckdb-resource.js";
import { icebergCatalogResource } from "../iceberg/catalog-resource.js";
import { FileLedger } from "../state/files.js";
import { warehouseResource } from "../storage/warehouse-resource.js";
import type { ResourceFactory } from "./resources.js";

/**
 * The resources floe's built-in asset kinds use, registered the way a plugin registers its own.
 *
 * @example
 * const pool = resourcePool({ settings }, builtinResources);
 */
export const builtinResources: Readonly<Record<string, ResourceFactory<unknown>>> = {
  duckdb: duckdbResource as ResourceFactory<unknown>,
  warehouse: warehouseResource as ResourceFactory<unknown>,
  files: { create: async ({ store }) => new FileLedger(store) },
  iceberg: icebergCatalogResource as ResourceFactory<unknown>,
};
