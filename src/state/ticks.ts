import { sql } from "kysely";
import type { Migration } from "./migrations.js";

/**
 * Schedule ticks: one row per (schedule, tick time), the key that keeps two schedulers on one
 * database from running a tick twice.
 */
export const schedulerMigrations: readonly Migration[] = [
  {
    id: "scheduler/0001_schedule_ticks",
    async up(db) {
      await sql`create table schedule_ticks (
        schedule text collate "C" not null,
        tick_time timestamptz not null,
        run_id text collate "C" not null,
        created_at timestamptz not null default now(),
        primary key (schedule, tick_time)
      )`.execute(db);
    },
  },
];
