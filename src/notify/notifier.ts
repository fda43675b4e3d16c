import { redactDeep } from "../secrets.js";

export type NotificationEvent = "run_failed" | "run_succeeded" | "run_canceled" | "backfill_finished";
export const NOTIFICATION_EVENTS: readonly NotificationEvent[] = ["run_failed", "run_succeeded", "run_canceled", "backfill_finished"];

/** What a notifier is told. Secrets are redacted before any notifier sees it. */
export interface Notification {
  event: NotificationEvent;
  /** One line for people: `run 3f2a9c1e failed: orders[2025-01-02]: bad rows`. */
  message: string;
  runId?: string;
  backfillId?: string;
  status: string;
  assets: string[];
  pipelines: string[];
  failedSteps: Array<{ asset: string; partition: string | null; error: string }>;
  at: string;
}

export const NOTIFIER_BRAND = Symbol.for("floe.notifier");

/**
 * A notification channel: one method. Built-ins: `webhook`, `slack`; a plugin adds its own.
 *
 * @example
 * const stdout: Notifier = { [NOTIFIER_BRAND]: true, name: "stdout", send: async (n) => console.log(n.message) };
 */
export interface Notifier {
  readonly [NOTIFIER_BRAND]: true;
  readonly name: string;
  send(notification: Notification, signal: AbortSignal): Promise<void>;
}

export function isNotifier(v: unknown): v is Notifier {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[NOTIFIER_BRAND] === true;
}

/** A routing rule: which events (default: failures), of which assets (a selection), to which notifier. */
export interface NotificationRoute {
  notifier: Notifier;
  events?: readonly NotificationEvent[];
  /** Only runs touching an asset of this set (already resolved from a selection). */
  assets?: ReadonlySet<string>;
}

export interface DeliveryOptions {
  attempts?: number;
  retryDelayMs?: number;
  timeoutMs?: number;
  onResult?: (notifier: string, outcome: "delivered" | "failed", error?: string) => void;
}

/**
 * Sends notifications by the routes, in the background: a failed delivery is retried with
 * backoff, then reported through `onResult`, and never fails or slows the run. `drain()` waits for
 * what is in flight (with a bound) before the process exits.
 *
 * @example
 * const d = new Dispatcher(routes, { onResult: (n, o) => console.error(n, o) });
 * d.publish(notification);
 * await d.drain(10_000);
 */
export class Dispatcher {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly routes: readonly NotificationRoute[], private readonly options: DeliveryOptions = {}) {}

  publish(notification: Notification): void {
    const safe = redactDeep(notification);
    for (const route of this.routes) {
      if (!(route.events ?? ["run_failed", "backfill_finished"]).includes(safe.event)) continue;
      if (route.assets && !safe.assets.some((a) => route.assets!.has(a))) continue;
      const p = this.deliver(route.notifier, safe).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  async drain(timeoutMs: number): Promise<void> {
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private async deliver(notifier: Notifier, n: Notification): Promise<void> {
    const attempts = this.options.attempts ?? 3;
    let error = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await notifier.send(n, AbortSignal.timeout(this.options.timeoutMs ?? 5_000));
        this.options.onResult?.(notifier.name, "delivered");
        return;
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
        if (attempt < attempts) await new Promise((r) => setTimeout(r, (this.options.retryDelayMs ?? 500) * 2 ** (attempt - 1)));
      }
    }
    this.options.onResult?.(notifier.name, "failed", error);
  }
}
