/**
 * The engine behind the CLI, for embedding floe in your own process: the state store, the
 * project loader, the runner and the CLI itself.
 *
 * @example
 * import { StateStore, loadProject, materialize, select } from "floe/engine";
 * const { graph } = await loadProject(".");
 * const store = await StateStore.open({ home: ".floe" });
 * await materialize(store, graph, { assets: select(graph, "+orders"), selection: "+orders" });
 */
export * from "./index.js";
export { StateStore } from "./state/index.js";
export type { RunRecord, StepRecord, EventRecord, MaterializationRecord, RunStatus, StepStatus } from "./state/index.js";
export { loadProject } from "./project/load.js";
export { loadSettings } from "./project/config.js";
export { executeRun } from "./runner/runner.js";
export { materialize, rerun, statusOf } from "./runner/launch.js";
export { main } from "./cli/main.js";
