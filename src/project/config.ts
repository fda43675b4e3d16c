import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { z as Z } from "zod";
import { UserError } from "../errors.js";
import { isNotifier, type Notifier, type NotificationEvent } from "../notify/notifier.js";
import { isSecretRef, type SecretRef } from "../secrets.js";
import { importUserModule } from "./load.js";

const isStringOrSecret = (v: unknown): boolean => typeof v === "string" || isSecretRef(v);

/** The config schema; zod is loaded only when a project has a config file. */
async function configSchema() {
  const { z } = await import("zod");
  return z
    .object({
      /** PostgreSQL URL of the state store; default: embedded PGlite under `.floe/`. */
      databaseUrl: z.string().optional(),
      /** Folder (relative to the project) or `s3://bucket/prefix` for tables. Default `.floe/warehouse`. */
      warehouse: z.string().optional(),
      /** How to reach an `s3://` warehouse: endpoint, region, path-style, credentials (use secret()). */
      warehouseS3: z
        .object({
          endpoint: z.string().optional(),
          region: z.string().optional(),
          forcePathStyle: z.boolean().optional(),
          credentials: z.object({ accessKeyId: z.custom<string | SecretRef>(isStringOrSecret), secretAccessKey: z.custom<string | SecretRef>(isStringOrSecret) }).strict().optional(),
        })
        .strict()
        .optional(),
      /** floe's own folder (embedded store, staging). Default `.floe`. */
      home: z.string().optional(),
      /** Steps at once per run (default: cores). */
      concurrency: z.number().int().positive().optional(),
      /** Where notifications go: `[{ notifier: webhook({ url }), events: ["run_failed"], select: "pipeline:orders" }]`. */
      notifications: z
        .array(
          z
            .object({
              notifier: z.custom<Notifier>(isNotifier, { message: "expected a notifier, e.g. webhook({ url }) or slack({ url })" }),
              events: z.array(z.enum(["run_failed", "run_succeeded", "run_canceled", "backfill_finished"])).optional(),
              select: z.string().optional(),
            })
            .strict(),
        )
        .optional(),
      /** Runs running at once across every worker (default: no cap). */
      maxConcurrentRuns: z.number().int().positive().optional(),
      /** Steps at once per pool (an asset's `pool`), across every process: `{ warehouse: 2 }`. */
      pools: z.record(z.string(), z.number().int().positive()).optional(),
      /** On SIGTERM/SIGINT, how long running steps may finish before they are marked interrupted (default 30 000). */
      shutdownGraceMs: z.number().int().nonnegative().optional(),
      /** Days of event log kept; the scheduler deletes older events (default 30; 0 keeps everything). */
      eventRetentionDays: z.number().int().nonnegative().optional(),
    })
    .strict();
}

export type FloeConfig = Z.infer<Awaited<ReturnType<typeof configSchema>>>;

/**
 * Declares the project config in `floe.config.ts` (typed; validated when floe starts).
 *
 * @example
 * export default defineConfig({ warehouse: "s3://lake/warehouse", concurrency: 4 });
 */
export function defineConfig(config: FloeConfig): FloeConfig {
  return config;
}

/** The resolved settings of a project: config file, then environment variables on top. */
export interface ProjectSettings {
  dir: string;
  home: string;
  databaseUrl: string | undefined;
  warehouse: string;
  concurrency: number | undefined;
  eventRetentionDays: number;
  shutdownGraceMs: number;
  pools: Record<string, number>;
  maxConcurrentRuns: number | undefined;
  warehouseS3: { endpoint?: string; region?: string; forcePathStyle?: boolean; credentials?: { accessKeyId: string | SecretRef; secretAccessKey: string | SecretRef } } | undefined;
  notifications: Array<{ notifier: Notifier; events?: NotificationEvent[]; select?: string }>;
}

/**
 * Reads `floe.config.ts` (optional) and the environment (`FLOE_DATABASE_URL`, `FLOE_WAREHOUSE`,
 * `FLOE_HOME` win over the file).
 *
 * @example
 * const settings = await loadSettings("/path/to/project");
 */
export async function loadSettings(projectDir: string, env: NodeJS.ProcessEnv = process.env): Promise<ProjectSettings> {
  const dir = resolve(projectDir);
  if (!existsSync(dir)) throw new UserError(`project folder ${dir} does not exist (--project)`);
  let config: FloeConfig = {};
  const file = ["floe.config.ts", "floe.config.mts", "floe.config.js", "floe.config.mjs"].map((f) => join(dir, f)).find(existsSync);
  if (file) {
    const mod = await importUserModule(file, dir);
    const parsed = (await configSchema()).safeParse(mod.default ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const path = issue.path.join(".") || "(root)";
      throw new UserError(`${file.slice(dir.length + 1)}: ${path}: ${issue.message}`);
    }
    config = parsed.data;
  }
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === "" ? undefined : v);
  const home = resolve(dir, nonEmpty(env.FLOE_HOME) ?? config.home ?? ".floe");
  const warehouse = nonEmpty(env.FLOE_WAREHOUSE) ?? config.warehouse ?? join(home, "warehouse");
  return {
    dir,
    home,
    databaseUrl: nonEmpty(env.FLOE_DATABASE_URL) ?? config.databaseUrl,
    warehouse: warehouse.startsWith("s3://") ? warehouse : resolve(dir, warehouse),
    concurrency: config.concurrency,
    eventRetentionDays: config.eventRetentionDays ?? 30,
    shutdownGraceMs: nonEmpty(env.FLOE_SHUTDOWN_GRACE_MS) !== undefined ? Number(env.FLOE_SHUTDOWN_GRACE_MS) : (config.shutdownGraceMs ?? 30_000),
    notifications: config.notifications ?? [],
    pools: config.pools ?? {},
    maxConcurrentRuns: config.maxConcurrentRuns,
    warehouseS3: config.warehouseS3,
  };
}
