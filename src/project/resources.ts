import type { Resources } from "../runner/runner.js";
import type { Migration, StateStore } from "../state/index.js";
import type { ProjectSettings } from "./config.js";

/** What a resource factory may use to build its resource. */
export interface ResourceEnv {
  settings: ProjectSettings;
  /** The open state store, for resources that keep state in it (the file ledger, the Iceberg catalog). */
  store: StateStore;
}

/**
 * A named resource that asset kinds ask for with `ctx.resource(name)`: created on first use,
 * once per process, disposed when the process is done with the project.
 *
 * @example
 * const clock: ResourceFactory<() => Date> = { create: async () => () => new Date() };
 */
export interface ResourceFactory<T> {
  create(env: ResourceEnv): Promise<T>;
  dispose?(value: T): Promise<void>;
  /** Tables the resource keeps in the state store; run when the store opens (ids `<plugin>/NNNN_name`). */
  migrations?: readonly Migration[];
}

/**
 * The state-store migrations of a set of resource factories, for `StateStore.open({ extraMigrations })`.
 *
 * @example
 * const store = await StateStore.open({ home, extraMigrations: resourceMigrations(builtinResources) });
 */
export function resourceMigrations(factories: Readonly<Record<string, ResourceFactory<unknown>>>): Migration[] {
  return Object.values(factories).flatMap((f) => f.migrations ?? []);
}

/** Resources backed by factories, plus `close()` that disposes what was created. */
export interface ResourcePool extends Resources {
  close(): Promise<void>;
}

/**
 * Lazily creates resources from factories; `project` (the settings) is always there.
 *
 * @example
 * const pool = resourcePool({ settings }, { duckdb: duckdbResource });
 * const db = await pool.get<DuckDBInstance>("duckdb");
 * await pool.close();
 */
export function resourcePool(env: ResourceEnv, factories: Readonly<Record<string, ResourceFactory<unknown>>>): ResourcePool {
  const created = new Map<string, Promise<unknown>>();
  return {
    get<T>(name: string): Promise<T> {
      if (name === "project") return Promise.resolve(env.settings as T);
      let value = created.get(name);
      if (!value) {
        const factory = factories[name];
        if (!factory) return Promise.reject(new Error(`no resource \`${name}\` is registered (known: project, ${Object.keys(factories).join(", ")})`));
        value = factory.create(env);
        created.set(name, value);
      }
      return value as Promise<T>;
    },
    async close() {
      for (const [name, value] of created) {
        const v = await value.catch(() => undefined);
        if (v !== undefined) await factories[name]?.dispose?.(v);
      }
      created.clear();
    },
  };
}
