import { sleep } from "../timers.js";

/**
 * SQLSTATEs of failures that go away by themselves: the server is starting, stopping or full,
 * the session was ended by an administrator, or the transaction lost a race (serialization,
 * deadlock). Class 08 (connection exceptions) is matched as a class.
 */
const TRANSIENT_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "40001", "40P01"]);

/** Socket and resolver errors of a server that is down, restarting or cut off for now. */
const TRANSIENT_ERRNOS = new Set([
  "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EAI_AGAIN", "ENOTFOUND",
]);

/**
 * Messages of node-postgres and the server that carry no code, or a code too broad to trust
 * alone (a database closed with `ALLOW_CONNECTIONS false` answers 55000, object not in
 * prerequisite state, which other statements raise for real errors).
 */
const TRANSIENT_MESSAGES = [
  /^Connection terminated/, // "Connection terminated unexpectedly", "… due to connection timeout"
  /^timeout exceeded when trying to connect/, // pg-pool's connectionTimeoutMillis
  /^Client has encountered a connection error and is not queryable/,
  /^Connection ended unexpectedly/,
  /is not currently accepting connections/,
  /^the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)/,
  /^terminating connection due to (administrator command|idle-session timeout)/,
  /^(sorry, too many clients already|remaining connection slots are reserved)/,
];

/**
 * Whether `e` is a failure of the state store that passes by itself (the database restarting,
 * refusing connections for a while, a dropped connection, a lost serialization race), as
 * opposed to a real error (bad SQL, a constraint, a wrong password). Looks through `cause`
 * and the members of an AggregateError (node's connect errors for several addresses).
 *
 * @example
 * try { await store.ping(); } catch (e) { if (!isTransient(e)) throw e; }
 */
export function isTransient(e: unknown): boolean {
  const seen = new Set<unknown>();
  const visit = (x: unknown): boolean => {
    if (x === null || typeof x !== "object" || seen.has(x)) return false;
    seen.add(x);
    const code = "code" in x && typeof x.code === "string" ? x.code : undefined;
    if (code !== undefined && (TRANSIENT_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code) || TRANSIENT_ERRNOS.has(code))) return true;
    const message = "message" in x && typeof x.message === "string" ? x.message : "";
    if (TRANSIENT_MESSAGES.some((m) => m.test(message))) return true;
    if (x instanceof AggregateError && x.errors.some(visit)) return true;
    return "cause" in x && visit(x.cause);
  };
  return visit(e);
}

/** The first wait after a transient failure; it doubles up to {@link BACKOFF_MAX_MS}. */
export const BACKOFF_FIRST_MS = 250;
/** The longest wait between two tries. */
export const BACKOFF_MAX_MS = 5_000;

/**
 * The wait before try `n + 1` after `n` failed tries (n ≥ 1): 250 ms doubling to 5 s.
 *
 * @example
 * backoffMs(1); // 250
 * backoffMs(10); // 5000
 */
export function backoffMs(failures: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, Math.min(failures - 1, 20)));
}

/**
 * Runs `fn`, trying again after a transient failure ({@link isTransient}) with backoff, for up to
 * `maxMs` after the first failure (default 2 minutes); then, or on any other error, rejects
 * with the last error. An aborted `signal` stops the waiting: the last error is thrown at once.
 * `fn` must be safe to run again after a failure (a single statement, or one transaction).
 *
 * @example
 * await retryTransient(() => store.writeBatch(batch), { maxMs: 120_000 });
 */
export async function retryTransient<T>(
  fn: (attempt: number) => Promise<T>,
  opts: { maxMs?: number; signal?: AbortSignal; onRetry?: (error: unknown, attempt: number) => void } = {},
): Promise<T> {
  const maxMs = opts.maxMs ?? 120_000;
  const signal = opts.signal ?? new AbortController().signal;
  let firstFailure: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      firstFailure ??= Date.now();
      const wait = backoffMs(attempt);
      if (!isTransient(e) || signal.aborted || Date.now() - firstFailure + wait > maxMs) throw e;
      opts.onRetry?.(e, attempt);
      await sleep(wait, signal);
      if (signal.aborted) throw e;
    }
  }
}

/** The state store went away, or came back after `downMs`. */
export type OutageEvent = { state: "unreachable"; error: unknown } | { state: "back"; downMs: number };

/**
 * One line saying that the state store went away or came back, for a process's log.
 *
 * @example
 * describeOutage("floe worker", { state: "back", downMs: 9_200 }); // "floe worker: the state store is back after 9.2 s"
 */
export function describeOutage(who: string, e: OutageEvent): string {
  if (e.state === "back") return `${who}: the state store is back after ${(e.downMs / 1000).toFixed(1)} s`;
  const message = e.error instanceof Error ? e.error.message : String(e.error);
  const line = (message.split("\n")[0] ?? "").trim() || "connection lost";
  return `${who}: the state store is unreachable (${line}); retrying with backoff`;
}

/**
 * Lets the loops of a long-lived process (a worker's slots, a scheduler's ticks) ride out an
 * outage of the state store. `survive(fn)` runs `fn`; when it fails with a transient error, it
 * waits until `probe` answers again, with backoff, and runs `fn` again. Every caller that fails
 * during one outage shares that wait, so the outage is reported once (`onOutage` unreachable)
 * and its end once (`onOutage` back). Other errors are thrown as they are. When `signal` aborts
 * during an outage, the wait ends at once and `survive` resolves undefined: the process is
 * stopping, and there is nothing it could still do without its store.
 *
 * `heartbeatGraceMs(windowMs)` is how long the last outage lasted if it ended less than
 * `windowMs` ago, else 0. No process could record a heartbeat while the store was away, so a
 * heartbeat that looks stale right after an outage says nothing of its process: a worker adds
 * this to its timeout before failing runs as dead, giving their owners `windowMs` of reachable
 * time to beat again (a whole-database outage longer than the timeout would otherwise fail, and
 * requeue, every run in flight).
 *
 * @example
 * const guard = outageGuard(() => store.ping(), { signal, onOutage: (e) => console.error(describeOutage("floe worker", e)) });
 * await Promise.all([guard.survive(slotLoop), guard.survive(slotLoop)]);
 */
export function outageGuard(
  probe: () => Promise<unknown>,
  opts: { signal?: AbortSignal; onOutage?: (e: OutageEvent) => void },
): { survive<T>(fn: () => Promise<T>): Promise<T | undefined>; heartbeatGraceMs(windowMs: number): number } {
  const signal = opts.signal ?? new AbortController().signal;
  let waiting: Promise<void> | undefined;
  let last: { endedAt: number; ms: number } | undefined;
  const recover = (error: unknown): Promise<void> => {
    waiting ??= (async () => {
      const since = Date.now();
      opts.onOutage?.({ state: "unreachable", error });
      for (let failures = 1; !signal.aborted; failures++) {
        await sleep(backoffMs(failures), signal);
        if (signal.aborted) return;
        try {
          await probe();
          break;
        } catch (e) {
          if (!isTransient(e)) throw e;
        }
      }
      if (signal.aborted) return;
      last = { endedAt: Date.now(), ms: Date.now() - since };
      opts.onOutage?.({ state: "back", downMs: last.ms });
    })().finally(() => (waiting = undefined));
    return waiting;
  };
  return {
    // Nobody could heartbeat during the outage: for `windowMs` after it, heartbeats get its length on top.
    heartbeatGraceMs: (windowMs) => (last !== undefined && Date.now() - last.endedAt < windowMs ? last.ms : 0),
    async survive<T>(fn: () => Promise<T>): Promise<T | undefined> {
      for (;;) {
        try {
          return await fn();
        } catch (e) {
          if (!isTransient(e)) throw e;
          await recover(e);
          if (signal.aborted) return undefined;
        }
      }
    },
  };
}
