// Reading a table's current files: the live data files of its current snapshot, each with the
// snapshot that added it (so callers can pick the files a given writer added) and the delete files
// that apply to it. A data file's rows are its rows minus those deletes: reading the files as they
// are is refused when a delete applies, and liveRowsSql reads them with the deletes applied.

import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { ObjectStorage } from "../storage/types.js";
import { ident, inBatches, literal } from "./data-files.js";
import { DeleteContent, DeleteIndex, partitionKeyOf, unpartitionedSpecs, type ScopedFile } from "./deletes.js";
import { decodeManifest, decodeManifestList, EntryStatus } from "./manifest.js";
import { currentSchema, currentSnapshot, type Snapshot } from "./metadata.js";
import { duckdbTypeOf, sanitizeName, type SchemaField } from "./schema.js";
import { keyOf, type LoadedTable } from "./table-writer.js";

/** A live delete file that applies to a data file. */
export interface LiveDeleteFile {
  /** The file's key in the warehouse storage. */
  key: string;
  /** `file_path` as the manifest holds it. */
  path: string;
  /** 1: position deletes, 2: equality deletes. */
  content: 1 | 2;
  /** Delete records in the file. */
  records: number;
  /** Equality deletes: the field ids whose values identify deleted rows. */
  equalityIds: number[];
}

/** A live data file of the current snapshot. */
export interface LiveDataFile {
  /** The file's key in the warehouse storage. */
  key: string;
  /** `file_path` as the manifest holds it (position deletes name files by it). */
  path: string;
  /** Rows in the file, deleted ones included (see `deletes`). */
  records: number;
  /** The snapshot that added the file. */
  addedBy: Snapshot | undefined;
  /** Its data sequence number. */
  sequenceNumber: bigint;
  /** The delete files that apply to it: its rows are its records minus these deletes. */
  deletes: LiveDeleteFile[];
}

export interface LiveFilesOptions {
  /** Only these data files (the check for deletes covers only them). */
  where?: (file: Pick<LiveDataFile, "key" | "path" | "addedBy">) => boolean;
  /**
   * `"refuse"` (default): throw an IcebergDeletesError when a delete file applies to a data file
   * returned, since a caller reading the files as they are would return deleted rows.
   * `"include"`: return them with their `deletes`, to read with liveRowsSql.
   */
  deletes?: "refuse" | "include";
}

/** Delete files (written by another engine) apply to data files a caller was to read as they are. */
export class IcebergDeletesError extends Error {
  constructor(
    readonly location: string,
    readonly files: number,
    message: string,
  ) {
    super(message);
    this.name = "IcebergDeletesError";
  }
}

/**
 * The data files a reader of the table's current snapshot reads (deleted entries excluded), with
 * the snapshot that added each one and the delete files that apply to it (spec scope rules:
 * partition, sequence numbers, referenced file). Reads the manifest list and its manifests.
 * Refuses, unless `deletes: "include"`, when a delete file applies to a file returned.
 *
 * @example
 * const files = await liveDataFiles(storage, table, { where: (f) => f.addedBy?.summary["floe.partition"] === "2025-01-01" });
 * const all = await liveDataFiles(storage, table, { deletes: "include" }); // then liveRowsSql(…)
 */
export async function liveDataFiles(storage: ObjectStorage, table: LoadedTable, options: LiveFilesOptions = {}): Promise<LiveDataFile[]> {
  const current = currentSnapshot(table.metadata);
  if (!current) return [];
  const bySnapshot = new Map(table.metadata.snapshots.map((s) => [s["snapshot-id"], s]));
  const manifests = decodeManifestList(await storage.read(keyOf(storage, current["manifest-list"])));
  const decoded = await Promise.all(manifests.map(async (m) => ({ m, entries: decodeManifest(await storage.read(keyOf(storage, m.manifest_path))) })));
  const data: Array<{ file: LiveDataFile; scope: ScopedFile }> = [];
  const deletes: ScopedFile[] = [];
  for (const { m, entries } of decoded) {
    for (const e of entries) {
      if (e.status === EntryStatus.Deleted) continue;
      const scope: ScopedFile = {
        path: e.data_file.file_path,
        specId: m.partition_spec_id,
        partition: partitionKeyOf(e.data_file.partition),
        sequenceNumber: e.sequence_number ?? m.sequence_number,
        dataFile: e.data_file,
      };
      if (m.content !== 0 || e.data_file.content !== 0) {
        deletes.push(scope);
        continue;
      }
      const file: LiveDataFile = {
        key: keyOf(storage, e.data_file.file_path),
        path: e.data_file.file_path,
        records: Number(e.data_file.record_count),
        addedBy: bySnapshot.get(e.snapshot_id ?? m.added_snapshot_id),
        sequenceNumber: scope.sequenceNumber,
        deletes: [],
      };
      if (!options.where || options.where(file)) data.push({ file, scope });
    }
  }
  if (deletes.length > 0) {
    const index = new DeleteIndex(deletes, unpartitionedSpecs(table.metadata));
    for (const { file, scope } of data) {
      for (const d of index.applying(scope)) {
        const content = d.dataFile.content === DeleteContent.Equality ? 2 : 1;
        if (d.dataFile.file_format.toUpperCase() !== "PARQUET") {
          throw new IcebergDeletesError(table.metadata.location, 1, `table ${table.metadata.location}: delete file ${d.path} is ${d.dataFile.file_format}; only Parquet position and equality deletes can be read`);
        }
        file.deletes.push({ key: keyOf(storage, d.path), path: d.path, content, records: Number(d.dataFile.record_count), equalityIds: d.dataFile.equality_ids ?? [] });
      }
    }
  }
  const out = data.map((d) => d.file);
  const hit = out.filter((f) => f.deletes.length > 0);
  if ((options.deletes ?? "refuse") === "refuse" && hit.length > 0) {
    const first = hit[0] as LiveDataFile;
    const kinds = [...new Set(hit.flatMap((f) => f.deletes.map((d) => (d.content === 1 ? "position" : "equality"))))].sort().join(" and ");
    throw new IcebergDeletesError(
      table.metadata.location,
      hit.length,
      `table ${table.metadata.location} has ${kinds} delete files that apply to ${hit.length} of the data files to read (e.g. ${first.path}): read as they are, they would return deleted rows`,
    );
  }
  return out;
}

/**
 * The rows of live data files minus the deletes that apply to them (liveDataFiles with
 * `deletes: "include"`), as a DuckDB relation for FROM with the table's current columns: each
 * file's columns are found by field id (by name when a file has no ids), position deletes match
 * (`file_path`, row position), equality deletes match their columns null-safely. One query, files
 * copied to `tmpDir` first when the warehouse is not a local folder.
 *
 * @example
 * const files = await liveDataFiles(storage, table, { deletes: "include" });
 * const rows = await connection.runAndReadAll(`SELECT count(*) FROM ${await liveRowsSql({ connection, storage, table, files, tmpDir })}`);
 */
export async function liveRowsSql(o: {
  connection: DuckDBConnection;
  storage: ObjectStorage;
  table: LoadedTable;
  files: readonly LiveDataFile[];
  tmpDir: string;
}): Promise<string> {
  const schema = currentSchema(o.table.metadata);
  const typeOf = (f: SchemaField): string | undefined => {
    try {
      return duckdbTypeOf(f.type);
    } catch {
      return undefined; // nested: read as the file has it
    }
  };
  const cast = (expr: string, f: SchemaField): string => {
    const t = typeOf(f);
    return t ? `CAST(${expr} AS ${t})` : expr;
  };
  const names = schema.fields.map((f) => ident(f.name)).join(", ");
  if (o.files.length === 0) return `(SELECT ${schema.fields.map((f) => `${cast("NULL", f)} AS ${ident(f.name)}`).join(", ")} WHERE false)`;

  // local copies
  const keys = [...new Set(o.files.flatMap((f) => [f.key, ...f.deletes.map((d) => d.key)]))];
  const local = new Map<string, string>();
  if (o.storage.uri.startsWith("file://")) for (const k of keys) local.set(k, fileURLToPath(o.storage.uriOf(k)));
  else {
    const dir = join(o.tmpDir, `floe-iceberg-read-${randomUUID()}`);
    await inBatches(keys, 8, async (k, i) => {
      const path = join(dir, `${i}.parquet`);
      await o.storage.download(k, path);
      local.set(k, path);
    });
  }
  const at = (key: string): string => local.get(key) as string;

  // every file's top-level columns by field id (and by name)
  const columns = new Map<string, { byId: Map<number, string>; byName: Set<string> }>();
  const schemaRows = (
    await o.connection.runAndReadAll(`SELECT file_name, name, field_id FROM parquet_schema([${[...local.values()].map(literal).join(", ")}])`)
  ).getRowObjectsJS();
  for (const r of schemaRows) {
    const file = String(r.file_name);
    const c = columns.get(file) ?? { byId: new Map<number, string>(), byName: new Set<string>() };
    columns.set(file, c);
    if (r.field_id !== null && r.field_id !== undefined && !c.byId.has(Number(r.field_id))) c.byId.set(Number(r.field_id), String(r.name));
    c.byName.add(String(r.name));
  }
  const column = (file: string, f: SchemaField): string | undefined => {
    const c = columns.get(file);
    if (!c) return undefined;
    if (c.byId.size > 0) return c.byId.get(f.id);
    return [f.name, sanitizeName(f.name)].find((n) => c.byName.has(n));
  };
  const project = (file: string, fields: readonly SchemaField[]): string =>
    fields
      .map((f) => {
        const c = column(file, f);
        return `${cast(c === undefined ? "NULL" : ident(c), f)} AS ${ident(f.name)}`;
      })
      .join(", ");

  const rows = o.files.map(
    (f) => `SELECT ${project(at(f.key), schema.fields)}, ${literal(f.path)} AS __floe_file, file_row_number AS __floe_pos FROM read_parquet(${literal(at(f.key))}, file_row_number = true)`,
  );
  const conditions: string[] = [];
  const pairs = (content: 1 | 2, ids?: string): string[] =>
    o.files.flatMap((f) => f.deletes.filter((d) => d.content === content && (ids === undefined || d.equalityIds.join(",") === ids)).map((d) => `(${literal(f.path)}, ${literal(at(d.key))})`));

  const positional = [...new Set(o.files.flatMap((f) => f.deletes.filter((d) => d.content === 1).map((d) => at(d.key))))];
  if (positional.length > 0) {
    conditions.push(`NOT EXISTS (SELECT 1 FROM read_parquet([${positional.map(literal).join(", ")}], union_by_name = true, filename = '__floe_del') AS __floe_p
      JOIN (VALUES ${[...new Set(pairs(1))].join(", ")}) AS __floe_a(data, del) ON __floe_a.del = __floe_p.__floe_del
      WHERE __floe_a.data = __floe_d.__floe_file AND __floe_p.file_path = __floe_d.__floe_file AND __floe_p.pos = __floe_d.__floe_pos)`);
  }
  const equality = new Map<string, Set<string>>(); // equality ids → delete files
  for (const f of o.files) for (const d of f.deletes) if (d.content === 2) equality.set(d.equalityIds.join(","), (equality.get(d.equalityIds.join(",")) ?? new Set()).add(d.key));
  for (const [ids, files] of equality) {
    const fields = ids.split(",").map((id) => {
      const f = schema.fields.find((x) => x.id === Number(id));
      if (!f) throw new IcebergDeletesError(o.table.metadata.location, 1, `table ${o.table.metadata.location}: an equality delete matches on field ${id}, which is not a top-level column of the current schema; it cannot be read here`);
      return f;
    });
    const deleted = [...files].map((k) => `SELECT ${project(at(k), fields)}, ${literal(at(k))} AS __floe_del FROM read_parquet(${literal(at(k))})`).join(" UNION ALL BY NAME ");
    const match = fields.map((f) => `__floe_e.${ident(f.name)} IS NOT DISTINCT FROM __floe_d.${ident(f.name)}`).join(" AND ");
    conditions.push(`NOT EXISTS (SELECT 1 FROM (${deleted}) AS __floe_e
      JOIN (VALUES ${[...new Set(pairs(2, ids))].join(", ")}) AS __floe_a(data, del) ON __floe_a.del = __floe_e.__floe_del
      WHERE __floe_a.data = __floe_d.__floe_file AND ${match})`);
  }
  return `(SELECT ${names} FROM (${rows.join(" UNION ALL BY NAME ")}) AS __floe_d${conditions.length > 0 ? ` WHERE ${conditions.join(" AND ")}` : ""})`;
}
