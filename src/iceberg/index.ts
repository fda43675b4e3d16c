// Iceberg v2 tables written from DuckDB: see table-writer.ts for the operations.

export { appendBatches, appendRows, overwritePartitions, loadTable, keyOf, CommitConflictError, IcebergValueError } from "./table-writer.js";
export type { BatchAppendOptions, BatchAppendResult, TableWriteOptions, UpstreamBatch, WriteResult, LoadedTable } from "./table-writer.js";
export { tableName } from "./catalog.js";
export type { Catalog, TableIdentifier, TablePointer } from "./catalog.js";
export { SqlCatalog, sqlCatalog, icebergCatalogMigration } from "./sql-catalog.js";
export type { IcebergCatalogTables, IcebergMigration } from "./sql-catalog.js";
export { findSnapshotBySummary, currentSnapshot, currentSchema, defaultSpec, parseTableMetadata, serializeTableMetadata } from "./metadata.js";
export type { TableMetadata, Snapshot } from "./metadata.js";
export { IcebergSchemaError, icebergTypeOf, sanitizeName } from "./schema.js";
export type { Schema, SchemaField, PrimitiveType, SchemaChangeOptions } from "./schema.js";
export type { PartitionFieldInput, PartitionSpec, Transform } from "./partition-spec.js";
export { decodeManifest, decodeManifestList } from "./manifest.js";
export { liveDataFiles, liveRowsSql, IcebergDeletesError } from "./table-reader.js";
export type { LiveDataFile, LiveDeleteFile, LiveFilesOptions } from "./table-reader.js";
export type { DataFile, ManifestEntry, ManifestFile } from "./manifest.js";
export { deserializeValue, serializeValue } from "./values.js";
