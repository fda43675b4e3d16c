export { StateStore, redactUrl } from "./store.js";
export type {
  BackfillRecord,
  StoreSummary,
  EventLevel,
  EventRecord,
  MaterializationRecord,
  NewEvent,
  NewMaterialization,
  NewRun,
  OpenOptions,
  RunRecord,
  RunStatus,
  RunUpdate,
  StepRecord,
  StepStateRecord,
  StepStatus,
  StepUpdate,
  WriteBatch,
} from "./store.js";
export { coreMigrations, migrate, type Migration } from "./migrations.js";
export { acquireLock, type LockInfo, type StateLock } from "./lock.js";
export { PGliteDialect } from "./pglite-dialect.js";
export type { Database } from "./schema.js";
export { FileLedger, type ClaimedFile, type FileRecord, type FileResult, type FileStatus } from "./files.js";
