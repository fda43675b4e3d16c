import { sql } from "kysely";
import type { Migration } from "./migrations.js";
import type { StateStore } from "./store.js";

/** Long-lived floe processes (schedulers, workers) and when each last said it was alive. */
export const processMigrations: readonly Migration[] = [
  {
    id: "processes/0001_process_heartbeats",
    async up(db) {
      await sql`create table process_heartbeats (
        id text collate "C" primary key,
        role text not null,
        started_at timestamptz not null default now(),
        seen_at timestamptz not null default now()
      )`.execute(db);
    },
  },
];

/** Records that process `id` (a scheduler or a worker) is alive now; one upsert. */
async function beat(store: StateStore, role: "scheduler" | "worker", id: string): Promise<void> {
  await sql`insert into process_heartbeats (id, role) values (${id}, ${role})
    on conflict (id) do update set seen_at = now(), role = excluded.role`.execute(store.db);
}

/** Forgets a process that stops cleanly, so that its silence is not taken for a failure. */
async function forget(store: StateStore, id: string): Promise<void> {
  await sql`delete from process_heartbeats where id = ${id}`.execute(store.db);
}

/**
 * Per role seen in the last day, the age of its freshest heartbeat.
 *
 * @example
 * const ages = await heartbeatAges(store); // [{ role: "scheduler", ageSeconds: 1.2 }]
 */
export async function heartbeatAges(store: StateStore): Promise<Array<{ role: string; ageSeconds: number }>> {
  const { rows } = await sql<{ role: string; age: number }>`
    select role, extract(epoch from now() - max(seen_at))::float8 as age
    from process_heartbeats where seen_at > now() - interval '1 day' group by role order by role`.execute(store.db);
  return rows.map((r) => ({ role: r.role, ageSeconds: r.age }));
}

/**
 * Beats every `intervalMs` until the returned function is called, which forgets the process.
 * A failed beat (the store unreachable for a while) is ignored: the next one tries again, and
 * /health reports the silence; a beat still waiting for the store is not doubled. On start
 * it removes the rows of processes of its role silent for 3 intervals: it replaces them.
 *
 * @example
 * const stop = keepBeating(store, "scheduler", id, 5_000); … await stop();
 */
export function keepBeating(store: StateStore, role: "scheduler" | "worker", id: string, intervalMs: number): () => Promise<void> {
  // One beat in flight at a time: while the store is unreachable (each try may wait for the
  // connect timeout), beats are skipped rather than piled up; the first one after it is back lands.
  let beating: Promise<void> | undefined;
  const tick = (): Promise<void> => (beating ??= beat(store, role, id).catch(() => undefined).finally(() => (beating = undefined)));
  // A process that starts supersedes the silent ones of its role (they died): their rows go, in
  // the statement that records its own first beat, so /health never sees the role without a process.
  const first = sql`with gone as (
        delete from process_heartbeats where role = ${role} and id <> ${id}
        and seen_at < now() - make_interval(secs => ${(3 * intervalMs) / 1000}::float8)
      )
      insert into process_heartbeats (id, role) values (${id}, ${role})
      on conflict (id) do update set seen_at = now(), role = excluded.role`.execute(store.db).then(() => undefined, tick);
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await first; // a first beat still in flight must not land after the row is forgotten
    await forget(store, id).catch(() => undefined);
  };
}
