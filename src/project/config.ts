import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { z as Z } from "zod";
import { UserError } from "../errors.js";
import { NOTIFICATION_EVENTS, isNotifier, type Notifier, type NotificationEvent } from "../notify/notifier.js";
import { loadSecretsFile, stringOrSecret, type SecretRef } from "../secrets.js";
import { importUserModule } from "./load.js";

/** A DuckDB memory size: "512MB", "2GB", "1.5GiB". */
const SIZE = /^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i;

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
          credentials: z.object({ accessKeyId: stringOrSecret(z), secretAccessKey: stringOrSecret(z) }).strict().optional(),
        })
        .strict()
        .optional(),
      /** floe's own folder (embedded store, staging). Default `.floe`. */
      home: z.string().optional(),
      /** DuckDB's memory limit per process, e.g. "2GB"; beyond it DuckDB spills to `<home>/duckdb-tmp` (default 512MB). */
      duckdbMemoryLimit: z.string().regex(SIZE, "expected a size like \"512MB\" or \"2GB\"").optional(),
      /** Steps at once per run (default: cores). */
      concurrency: z.number().int().positive().optional(),
      /** Where notifications go: `[{ notifier: webhook({ url }), events: ["run_failed"], select: "pipeline:orders" }]`. */
      notifications: z
        .array(
          z
            .object({
              notifier: z.custom<Notifier>(isNotifier, { message: "expected a notifier, e.g. webhook({ url }) or slack({ url })" }).superRefine((n, ctx) => {
                // a notifier's own options, checked here so that a bad one names its path
                const parsed = n.schema?.(z).safeParse(n.options);
                for (const issue of parsed?.success === false ? parsed.error.issues : []) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
              }),
              events: z.array(z.enum(NOTIFICATION_EVENTS)).optional(),
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
      /** A file of `NAME=value` lines that secret("NAME") reads when the environment has no NAME (relative to the project). `FLOE_SECRETS_FILE` wins. */
      secretsFile: z.string().min(1).optional(),
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
  /** DuckDB's memory limit (FLOE_DUCKDB_MEMORY_LIMIT, `duckdbMemoryLimit`); undefined: the default. */
  duckdbMemoryLimit?: string | undefined;
  eventRetentionDays: number;
  shutdownGraceMs: number;
  /** How often a process writes its heartbeat (FLOE_HEARTBEAT_MS, 5 s); a run whose process missed three is failed. */
  heartbeatMs: number;
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
  const memory = nonEmpty(env.FLOE_DUCKDB_MEMORY_LIMIT);
  if (memory !== undefined && !SIZE.test(memory)) throw new UserError(`FLOE_DUCKDB_MEMORY_LIMIT must be a size like 512MB or 2GB, got \`${memory}\``);
  const ms = (name: "FLOE_HEARTBEAT_MS" | "FLOE_SHUTDOWN_GRACE_MS", min: 0 | 1): number | undefined => {
    const raw = nonEmpty(env[name]);
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new UserError(`${name} must be a ${min === 1 ? "positive" : "non-negative"} whole number of milliseconds, got \`${raw}\``);
    return v;
  };
  const heartbeatMs = ms("FLOE_HEARTBEAT_MS", 1) ?? 5_000;
  const shutdownGraceMs = ms("FLOE_SHUTDOWN_GRACE_MS", 0) ?? config.shutdownGraceMs ?? 30_000;
  const secrets = nonEmpty(env.FLOE_SECRETS_FILE) ?? config.secretsFile;
  const secretsFile = secrets === undefined ? undefined : resolve(dir, secrets);
  loadSecretsFile(secretsFile, nonEmpty(env.FLOE_SECRETS_FILE) ? "FLOE_SECRETS_FILE:" : "floe.config.ts: secretsFile:");
  return {
    dir,
    home,
    databaseUrl: nonEmpty(env.FLOE_DATABASE_URL) ?? config.databaseUrl,
    warehouse: warehouse.startsWith("s3://") ? warehouse : resolve(dir, warehouse),
    concurrency: config.concurrency,
    duckdbMemoryLimit: memory ?? config.duckdbMemoryLimit,
    eventRetentionDays: config.eventRetentionDays ?? 30,
    shutdownGraceMs,
    heartbeatMs,
    notifications: config.notifications ?? [],
    pools: config.pools ?? {},
    maxConcurrentRuns: config.maxConcurrentRuns,
    warehouseS3: config.warehouseS3,
  };
}
