import type { z as Z } from "zod";
import { redactDeep } from "../secrets.js";
import { sleep, withTimeout } from "../timers.js";

export const NOTIFICATION_EVENTS = [
  "run_failed", "run_succeeded", "run_canceled", "backfill_finished", "check_failed", "files_failed", "rows_quarantined",
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

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
  /** `check_failed`: the checks that did not pass, per step. */
  checks?: Array<{ asset: string; partition: string | null; name: string; severity: string; message: string }>;
  /** `files_failed` / `rows_quarantined`: counts per step. */
  counts?: Array<{ asset: string; partition: string | null; failedFiles?: number; quarantinedRows?: number; quarantine?: string }>;
  at: string;
}

export const NOTIFIER_BRAND = Symbol.for("floe.notifier");

/**
 * A notification channel: one method. Built-ins: `webhook`, `slack`, `email`, `amqp`, `nats`; a
 * plugin adds its own. A notifier that holds a connection opens it on its first `send`, reuses
 * it, and closes it in `close()` (called when the process drains its notifications).
 *
 * @example
 * const stdout: Notifier = { [NOTIFIER_BRAND]: true, name: "stdout", send: async (n) => console.log(n.message) };
 */
export interface Notifier {
  readonly [NOTIFIER_BRAND]: true;
  readonly name: string;
  send(notification: Notification, signal: AbortSignal): Promise<void>;
  /** Releases connections; the notifier may be used again afterwards (it reconnects). */
  close?(): Promise<void>;
  /** The options the notifier was made with and their schema, checked when floe.config.ts loads. */
  readonly options?: unknown;
  readonly schema?: (z: typeof Z) => Z.ZodType;
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
  /** An attempt failed and another follows after `delayMs` (attempt counts from 1). */
  onRetry?: (notifier: string, attempt: number, attempts: number, error: string, delayMs: number) => void;
  /** Counts each delivery's outcome (the process's `floe_notification_deliveries_total`). */
  onCount?: (labels: { notifier: string; event: NotificationEvent; outcome: "delivered" | "failed" | "retried" }) => void;
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
  /** Aborted when a drain's bound is reached: deliveries still trying give up then, reported as failed. */
  private giveUp = new AbortController();

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

  /**
   * Waits for the deliveries in flight, at most `timeoutMs`; one still trying then gives up and is
   * reported (and counted) as failed, so that a process exiting never drops a failure silently.
   *
   * @example
   * await dispatcher.drain(10_000);
   */
  async drain(timeoutMs: number): Promise<void> {
    const all = Promise.allSettled([...this.inFlight]);
    let t: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => {
      t = setTimeout(() => {
        this.giveUp.abort();
        r();
      }, Math.max(0, timeoutMs - 250));
      t.unref();
    });
    await Promise.race([all, bound]);
    clearTimeout(t);
    // the deliveries cut short report their failure now (bounded, in case a notifier ignores its signal)
    if (this.giveUp.signal.aborted) await Promise.race([all, new Promise((r) => setTimeout(r, 250).unref())]);
    this.giveUp = new AbortController();
  }

  /**
   * {@link drain}, then closes every notifier's connections (a broker that hangs is not waited for past the bound).
   *
   * @example
   * await dispatcher.close(15_000); // before the process exits
   */
  async close(timeoutMs: number): Promise<void> {
    await this.drain(timeoutMs);
    const closing = [...new Set(this.routes.map((r) => r.notifier))].map((n) => n.close?.().catch(() => undefined));
    await Promise.race([Promise.allSettled(closing), new Promise((r) => setTimeout(r, Math.min(timeoutMs, 5_000)).unref())]);
  }

  private async deliver(notifier: Notifier, n: Notification): Promise<void> {
    const attempts = this.options.attempts ?? 3;
    const timeoutMs = this.options.timeoutMs ?? 5_000;
    let error = "";
    const giveUp = this.giveUp.signal;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (giveUp.aborted) {
        error = `${error}; the process exits before attempt ${attempt} of ${attempts}`;
        break;
      }
      try {
        // a notifier that ignores its signal still gives up after the timeout, or at exit
        await withTimeout(notifier.send(n, AbortSignal.any([AbortSignal.timeout(timeoutMs), giveUp])), timeoutMs, `no answer within ${timeoutMs} ms`, { signal: giveUp, message: "no answer before the process exits" });
        this.options.onResult?.(notifier.name, "delivered");
        this.options.onCount?.({ notifier: notifier.name, event: n.event, outcome: "delivered" });
        return;
      } catch (e) {
        error = e instanceof Error && e.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : e instanceof Error ? e.message : String(e);
        if (giveUp.aborted) {
          error = `no answer to attempt ${attempt} of ${attempts} before the process exits`;
          break;
        }
        if (attempt < attempts) {
          const delayMs = (this.options.retryDelayMs ?? 500) * 2 ** (attempt - 1);
          this.options.onCount?.({ notifier: notifier.name, event: n.event, outcome: "retried" });
          this.options.onRetry?.(notifier.name, attempt, attempts, error, delayMs);
          await sleep(delayMs, giveUp);
        }
      }
    }
    this.options.onResult?.(notifier.name, "failed", error);
    this.options.onCount?.({ notifier: notifier.name, event: n.event, outcome: "failed" });
  }
}

