import { Counter, Registry } from "prom-client";

/**
 * Metrics counted in this process (not in the state store): what only the process that does the
 * work can see. `floe worker|scheduler|dev --metrics-port` serve them beside the store's metrics;
 * `floe serve` shows them at zero (it delivers nothing itself).
 *
 * @example
 * notificationDeliveries.inc({ notifier: "ops", event: "run_failed", outcome: "delivered" });
 */
export const processRegistry = new Registry();

/** Notification deliveries by notifier (a configured name), event and outcome (`delivered`, `retried`, `failed`). */
export const notificationDeliveries = new Counter({
  name: "floe_notification_deliveries_total",
  help: "Notification delivery attempts by notifier, event and outcome (retried: an attempt failed and another follows).",
  labelNames: ["notifier", "event", "outcome"] as const,
  registers: [processRegistry],
});
