import { redactDeep } from "../secrets.js";
import type { NewEvent, NewMaterialization, RunUpdate, StateStore, StepUpdate } from "../state/index.js";
import { retryTransient } from "../state/transient.js";

/** How long a batch is tried again while the state store is unreachable before the run fails. */
export const RECORDER_OUTAGE_MS = 120_000;

/**
 * Group commit for a run's writes: transitions, events and materializations are queued and
 * written in one set-based transaction per flush, one flush in flight at a time, in order.
 * Under load many steps share one transaction; alone, a write goes out at once.
 * When the store is unreachable for a while (a transient error: a restart, refused or dropped
 * connections), the batch is tried again whole, with backoff, for up to `outageMs` (default
 * {@link RECORDER_OUTAGE_MS}); writes queued meanwhile wait behind it, in order. Steps already
 * running go on. Only then, or on any other error, does the run stop.
 *
 * @example
 * const rec = new Recorder(store);
 * rec.step({ runId, asset: "orders", partition: null, status: "running" });
 * await rec.flush(); // everything queued so far is durable
 */
export class Recorder {
  private steps = new Map<string, StepUpdate>();
  private runs = new Map<string, RunUpdate>();
  private events: NewEvent[] = [];
  private materializations = new Map<string, NewMaterialization>();
  private inFlight: Promise<void> | undefined;
  /** The first write error; once set, the run must stop. */
  error: Error | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly outageMs = RECORDER_OUTAGE_MS,
  ) {}

  step(u: StepUpdate): void {
    const k = `${u.runId}\u0000${u.asset}\u0000${u.partition ?? ""}`;
    const prev = this.steps.get(k);
    this.steps.set(k, prev ? { ...prev, ...stripUndefined(u) } : u);
    this.kick();
  }

  run(u: RunUpdate): void {
    const prev = this.runs.get(u.id);
    this.runs.set(u.id, prev ? { ...prev, ...stripUndefined(u) } : u);
    this.kick();
  }

  event(e: NewEvent): void {
    this.events.push({ at: new Date(), ...e });
    this.kick();
  }

  materialization(m: NewMaterialization): void {
    this.materializations.set(`${m.asset}\u0000${m.partition ?? ""}`, m);
    this.kick();
  }

  /** Resolves when everything queued before the call is written; rejects with the write error. */
  async flush(): Promise<void> {
    while (this.inFlight || this.pending()) {
      if (!this.inFlight) this.kick();
      await this.inFlight;
    }
    if (this.error) throw this.error;
  }

  private pending(): boolean {
    return this.steps.size + this.runs.size + this.events.length + this.materializations.size > 0;
  }

  private kick(): void {
    if (this.inFlight || this.error) return;
    this.inFlight = (async () => {
      // Let the current tick queue more work before writing.
      await new Promise<void>((r) => setImmediate(r));
      while (this.pending() && !this.error) {
        // Nothing a step wrote reaches the store with a secret in it.
        const batch = redactDeep({
          steps: [...this.steps.values()],
          runs: [...this.runs.values()],
          events: this.events,
          materializations: [...this.materializations.values()],
        });
        for (const e of batch.events) if (typeof e.at === "string") e.at = new Date(e.at);
        for (const s of batch.steps) for (const k of ["startedAt", "endedAt"] as const) if (typeof s[k] === "string") s[k] = new Date(s[k]);
        for (const r of batch.runs) for (const k of ["startedAt", "endedAt"] as const) if (typeof r[k] === "string") r[k] = new Date(r[k]);
        for (const m of batch.materializations) if (typeof m.materializedAt === "string") m.materializedAt = new Date(m.materializedAt);
        this.steps = new Map();
        this.runs = new Map();
        this.events = [];
        this.materializations = new Map();
        try {
          // A batch is one transaction: a failed try left nothing behind, so it is tried again
          // whole. A retry skips events already stored, in case the commit landed but its answer
          // was lost with the connection.
          await retryTransient((attempt) => this.store.writeBatch(batch, { retry: attempt > 1 }), { maxMs: this.outageMs });
        } catch (e) {
          this.error = e instanceof Error ? e : new Error(String(e));
        }
      }
      this.inFlight = undefined;
    })();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
