import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { z as Z } from "zod";
import { UserError } from "../errors.js";
import { NOTIFICATION_EVENTS, isNotifier, type Notifier, type NotificationEvent } from "../notify/notifier.js";
import { isSecretRef, loadSecretsFile, stringOrSecret, type SecretRef } from "../secrets.js";
import { checkStorageConfig, setStorageProfiles, type StorageProfile } from "../storage/index.js";
import { importUserModule } from "./load.js";

/** A DuckDB memory size: "512MB", "2GB", "1.5GiB". */
const SIZE = /^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i;

/** What a value is, for "expected string, got number". */
function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** Zod's error for a value of the wrong type, as floe words it: `expected string, got number`. */
const typed = {
  error: (iss: { code?: string; expected?: unknown; input?: unknown }): string | undefined =>
    iss.code === "invalid_type" ? `expected ${String(iss.expected)}, got ${kindOf(iss.input)}` : undefined,
};

/** A storage profile: the same shape as a rawFiles `storage` (local folder or S3 prefix). */
function storageSchema(z: typeof Z) {
  const str = () => z.string(typed);
  return z.discriminatedUnion(
    "type",
    [
      z.object({ type: z.literal("local"), root: str().min(1, "expected a folder path") }, typed).strict(),
      z
        .object(
          {
            type: z.literal("s3"),
            bucket: str(),
            prefix: str().optional(),
            endpoint: str().optional(),
            region: str().optional(),
            forcePathStyle: z.boolean(typed).optional(),
            credentials: z
              .object({ accessKeyId: stringOrSecret(z), secretAccessKey: stringOrSecret(z), sessionToken: stringOrSecret(z).optional() }, typed)
              .strict()
              .optional(),
          },
          typed,
        )
        .strict(),
    ],
    { error: (iss) => (typeof iss.input === "object" && iss.input !== null && !Array.isArray(iss.input) ? `expected type "local" or "s3", got ${JSON.stringify((iss.input as { type?: unknown }).type) ?? "none"}` : `expected { type: "local", root } or { type: "s3", bucket, … }, got ${kindOf(iss.input)}`) },
  );
}

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
      /**
       * Named storages that a rawFiles asset refers to by name (`storage: "landing"`), same shape as
       * an inline one: `{ landing: { type: "s3", bucket: "landing", credentials: { accessKeyId: secret("…"), … } } }`.
       */
      storage: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, "expected a profile name of letters, digits, _ and -"), storageSchema(z), typed).optional(),
      /** Port of /metrics, /health and /ready for dev, worker and scheduler when --metrics-port is not given, and for serve without --port. */
      metricsPort: z.number(typed).int("expected a whole number").min(0, "expected a port number (0-65535)").max(65535, "expected a port number (0-65535)").optional(),
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

/** The config files floe reads, in this order; any of them (or `pipelines/`) marks a project folder. */
const CONFIG_FILES = ["floe.config.ts", "floe.config.mts", "floe.config.js", "floe.config.mjs"] as const;

function isProjectDir(dir: string): boolean {
  const pipelines = join(dir, "pipelines");
  if (existsSync(pipelines) && statSync(pipelines).isDirectory()) return true;
  return CONFIG_FILES.some((f) => existsSync(join(dir, f)));
}

/**
 * The nearest folder, from `start` upward, that holds a `pipelines/` folder or a floe.config
 * file (as git finds its repository from a subfolder); undefined when no ancestor does.
 *
 * @example
 * findProjectDir("/home/me/shop/pipelines/sql"); // "/home/me/shop"
 */
export function findProjectDir(start: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    if (isProjectDir(dir)) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The project folder a command works on: `--project DIR` when given (as it is), else the nearest
 * project folder from `cwd` upward. None found is a UserError that suggests `floe init`.
 *
 * @example
 * const dir = resolveProjectDir(opts.project); // --project wins; else found upward from the current folder
 */
export function resolveProjectDir(flag: string | undefined, cwd: string = process.cwd()): string {
  if (flag !== undefined) return resolve(cwd, flag);
  const found = findProjectDir(cwd);
  if (found === undefined) {
    throw new UserError(`no floe project in ${resolve(cwd)} or any folder above it (a project has a pipelines/ folder or floe.config.ts); start one with \`floe init\`, or pass --project DIR`);
  }
  return found;
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
  /** Storage profiles (`storage` in floe.config.ts), by name. */
  storage?: Record<string, StorageProfile>;
  /** Port for /metrics, /health, /ready when no flag gives one (FLOE_METRICS_PORT, `metricsPort`); undefined: none. */
  metricsPort?: number | undefined;
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
  let configName = "floe.config.ts";
  const file = CONFIG_FILES.map((f) => join(dir, f)).find(existsSync);
  if (file) {
    const mod = await importUserModule(file, dir);
    const parsed = (await configSchema()).safeParse(mod.default ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const path = issue.path.join(".") || "(root)";
      throw new UserError(`${file.slice(dir.length + 1)}: ${path}: ${issue.message}`);
    }
    config = parsed.data;
    configName = file.slice(dir.length + 1);
  }
  // Deeper than the schema (bucket names, endpoint URLs): the checks an inline rawFiles storage gets.
  for (const [name, profile] of Object.entries(config.storage ?? {})) {
    const shaped = profile.type === "s3" && profile.credentials
      ? { ...profile, credentials: Object.fromEntries(Object.entries(profile.credentials).map(([k, v]) => [k, isSecretRef(v) ? "secret" : v])) }
      : profile;
    checkStorageConfig(shaped, `${configName}: storage.${name}`);
  }
  setStorageProfiles(config.storage ?? {});
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
  const rawPort = nonEmpty(env.FLOE_METRICS_PORT);
  if (rawPort !== undefined && !/^\d+$/.test(rawPort)) throw new UserError(`FLOE_METRICS_PORT must be a port number (0-65535), got \`${rawPort}\``);
  const envPort = rawPort === undefined ? undefined : Number(rawPort);
  if (envPort !== undefined && envPort > 65535) throw new UserError(`FLOE_METRICS_PORT must be a port number (0-65535), got \`${rawPort}\``);
  const shutdownGraceMs = ms("FLOE_SHUTDOWN_GRACE_MS", 0) ?? config.shutdownGraceMs ?? 30_000;
  const secrets = nonEmpty(env.FLOE_SECRETS_FILE) ?? config.secretsFile;
  const secretsFile = secrets === undefined ? undefined : resolve(dir, secrets);
  loadSecretsFile(secretsFile, nonEmpty(env.FLOE_SECRETS_FILE) ? "FLOE_SECRETS_FILE:" : `${configName}: secretsFile:`);
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
    storage: config.storage ?? {},
    metricsPort: envPort ?? config.metricsPort,
  };
}
