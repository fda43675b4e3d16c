import { sql } from "kysely";
import type { Migration } from "./migrations.js";
import type { StateStore } from "./store.js";

/** Notification delivery outcomes, counted per notifier, event and outcome by every process. */
export const deliveryMigrations: readonly Migration[] = [
  {
    id: "deliveries/0001_notification_deliveries",
    async up(db) {
      await sql`create table notification_deliveries (
        notifier text collate "C" not null,
        event text collate "C" not null,
        outcome text collate "C" not null,
        count bigint not null,
        primary key (notifier, event, outcome)
      )`.execute(db);
    },
  },
];

/** One delivery outcome and how many times it happened since the last write. */
export interface DeliveryCount {
  notifier: string;
  event: string;
  outcome: string;
  count: number;
}

/**
 * Adds delivery counts to the totals in the state store, in one statement.
 *
 * @example
 * await recordDeliveries(store, [{ notifier: "ops", event: "run_failed", outcome: "delivered", count: 2 }]);
 */
export async function recordDeliveries(store: StateStore, counts: readonly DeliveryCount[]): Promise<void> {
  if (counts.length === 0) return;
  await sql`insert into notification_deliveries (notifier, event, outcome, count)
    select * from unnest(${counts.map((c) => c.notifier)}::text[], ${counts.map((c) => c.event)}::text[], ${counts.map((c) => c.outcome)}::text[], ${counts.map((c) => c.count)}::bigint[])
    on conflict (notifier, event, outcome) do update set count = notification_deliveries.count + excluded.count`.execute(store.db);
}

/**
 * The delivery totals of every process sharing the store.
 *
 * @example
 * await deliveryTotals(store); // [{ notifier: "ops", event: "run_failed", outcome: "delivered", count: 7 }]
 */
export async function deliveryTotals(store: StateStore): Promise<DeliveryCount[]> {
  const { rows } = await sql<{ notifier: string; event: string; outcome: string; count: string | number | bigint }>`
    select notifier, event, outcome, count from notification_deliveries order by notifier, event, outcome`.execute(store.db);
  return rows.map((r) => ({ notifier: r.notifier, event: r.event, outcome: r.outcome, count: Number(r.count) }));
}
