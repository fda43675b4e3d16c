import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinResources } from "../../src/project/plugins.js";
import type { ProjectSettings } from "../../src/project/config.js";
import { resourceMigrations, resourcePool, type ResourcePool } from "../../src/project/resources.js";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "./pg.js";

/**
 * What a step needs to run in a test: a temporary project home with a folder warehouse, a state
 * store (real PostgreSQL when reachable, else embedded PGlite) and the built-in resources.
 */
export async function testEngine(prefix: string): Promise<{ home: string; settings: ProjectSettings; store: StateStore; pool: ResourcePool; close(): Promise<void> }> {
  const home = mkdtempSync(join(tmpdir(), `floe-${prefix}-`));
  const settings: ProjectSettings = {
    dir: home, home, databaseUrl: undefined, warehouse: join(home, "warehouse"), concurrency: undefined,
    eventRetentionDays: 30, shutdownGraceMs: 30_000, heartbeatMs: 5_000, notifications: [], pools: {}, maxConcurrentRuns: undefined, warehouseS3: undefined,
  };
  const db = await testDatabase();
  const extraMigrations = resourceMigrations(builtinResources);
  const store = await StateStore.open(db ? { url: db.url, home, extraMigrations } : { home, extraMigrations });
  const pool = resourcePool({ settings, store }, builtinResources);
  return {
    home, settings, store, pool,
    async close() {
      await pool.close();
      await store.close();
      await db?.drop();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
