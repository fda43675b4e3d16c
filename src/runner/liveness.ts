import { hostname } from "node:os";
import type { RunRecord, StateStore } from "../state/index.js";
import { goneLocalOwners } from "../state/owners.js";

export { goneLocalOwners, processOwner } from "../state/owners.js";

/**
 * Fails the running runs whose worker is dead: silent for `staleMs` (missed heartbeats), or a
 * process of this host that no longer exists (found at once, e.g. after kill -9). Returns them.
 *
 * @example
 * const dead = await failDeadRuns(store, 15_000);
 */
export async function failDeadRuns(store: StateStore, staleMs: number): Promise<RunRecord[]> {
  const gone = goneLocalOwners(await store.runningWorkers(`${hostname()}:`));
  return store.failStaleRuns(staleMs, gone);
}
