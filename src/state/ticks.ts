import { sql } from "kysely";
import type { Migration } from "./migrations.js";

/**
 * Schedule ticks: one row per (schedule, tick time), the key that keeps two schedulers on one
 * database from running a tick twice. Backfills: a range of partitions of a selection, whose
 * runs carry its id.
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
  {
    id: "scheduler/0002_backfills",
    async up(db) {
      await sql`create table backfills (
        id text collate "C" primary key,
        selection text not null,
        range_from text not null,
        range_to text not null,
        policy text not null,
        status text not null,
        created_at timestamptz not null default now()
      )`.execute(db);
      await sql`alter table runs add column backfill_id text collate "C"`.execute(db);
      await sql`create index runs_backfill_idx on runs (backfill_id) where backfill_id is not null`.execute(db);
    },
  },
  {
    id: "scheduler/0003_pool_slots",
    async up(db) {
      await sql`create table pool_slots (
        pool text collate "C" not null,
        slot int not null,
        run_id text collate "C",
        step text,
        acquired_at timestamptz,
        primary key (pool, slot)
      )`.execute(db);
    },
  },
];
