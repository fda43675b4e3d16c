/**
 * Waits `ms`, or less when `signal` aborts or `wake` fires a `run` event (a worker told that a
 * run was queued).
 *
 * @example
 * await sleep(1_000, controller.signal);
 */
export function sleep(ms: number, signal: AbortSignal, wake?: EventTarget): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      wake?.removeEventListener("run", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    wake?.addEventListener("run", done, { once: true });
  });
}

/**
 * `p`, or a rejection with `message` after `ms` (or with `giveUp.message` when `giveUp.signal`
 * aborts first). A late rejection of `p` is not left unhandled; the timer never holds the process.
 *
 * @example
 * await withTimeout(store.ping(), 2_000, "the state store did not answer within 2000 ms");
 */
export function withTimeout<T>(p: Promise<T>, ms: number, message: string, giveUp?: { signal: AbortSignal; message: string }): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(message)), ms);
    t.unref();
    if (giveUp) {
      onAbort = () => reject(new Error(giveUp.message));
      giveUp.signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  p.catch(() => undefined);
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(t);
    if (onAbort) giveUp?.signal.removeEventListener("abort", onAbort);
  });
}
