// Which delete files apply to which data files (the scope rules of the spec's "Scan Planning"),
// shared by the reader (rows minus their deletes) and by overwrites (a delete file whose data files
// are all gone is removed with them).

import type { DataFile } from "./manifest.js";
import type { TableMetadata } from "./metadata.js";

/** Delete file content: position deletes 1, equality deletes 2 (data files are 0). */
export const DeleteContent = { Position: 1, Equality: 2 } as const;

/** The field id of `file_path` in position delete files. */
const DELETE_FILE_PATH_ID = 2147483546;

/** A live data or delete file as scope rules see it. */
export interface ScopedFile {
  /** `file_path` exactly as the manifest holds it. */
  path: string;
  specId: number;
  /** The partition tuple as a comparable string (see partitionKeyOf). */
  partition: string;
  /** The data sequence number (inherited from the manifest list when the entry has none). */
  sequenceNumber: bigint;
  dataFile: DataFile;
}

/**
 * A partition tuple (by partition field name, as decodeManifest gives it) as a string equal for
 * equal tuples: numbers and bigints as decimal text, bytes as hex.
 *
 * @example
 * partitionKeyOf({ ts_day: 19724 }) === partitionKeyOf({ ts_day: 19724n }) // → true
 */
export function partitionKeyOf(partition: Readonly<Record<string, unknown>>): string {
  const value = (v: unknown): unknown =>
    v === null || v === undefined ? null : v instanceof Uint8Array ? `0x${Buffer.from(v).toString("hex")}` : typeof v === "number" || typeof v === "bigint" ? String(v) : v;
  return JSON.stringify(
    Object.keys(partition)
      .sort()
      .map((k) => [k, value(partition[k])]),
  );
}

/**
 * The ids of the table's unpartitioned specs: an equality delete file written under one of them
 * applies to data files of every partition (a global delete).
 *
 * @example
 * const global = unpartitionedSpecs(table.metadata);
 */
export function unpartitionedSpecs(m: TableMetadata): Set<number> {
  return new Set(m["partition-specs"].filter((s) => s.fields.length === 0).map((s) => s["spec-id"]));
}

/**
 * Whether a delete file must be applied to a data file (spec, Scan Planning): a position delete to
 * data files of its partition with a data sequence number less than or equal to its own, narrowed
 * to its `referenced_data_file` and to the `file_path` bounds it records; an equality delete to
 * data files strictly older than it, of its partition, or of every partition when its spec is
 * unpartitioned.
 *
 * @example
 * const applies = deleteApplies(del, data, unpartitionedSpecs(table.metadata));
 */
export function deleteApplies(del: ScopedFile, data: ScopedFile, globalSpecs: ReadonlySet<number>): boolean {
  if (del.dataFile.content === DeleteContent.Equality) {
    if (data.sequenceNumber >= del.sequenceNumber) return false;
    return globalSpecs.has(del.specId) || (del.specId === data.specId && del.partition === data.partition);
  }
  if (data.sequenceNumber > del.sequenceNumber) return false;
  if (del.specId !== data.specId || del.partition !== data.partition) return false;
  const referenced = del.dataFile.referenced_data_file;
  if (referenced !== null && referenced !== undefined && referenced !== data.path) return false;
  return withinPathBounds(del.dataFile, data.path);
}

/** Whether a data file's path lies within the `file_path` bounds a position delete file records (true without bounds). */
function withinPathBounds(del: DataFile, path: string): boolean {
  const bound = (list: DataFile["lower_bounds"]): Buffer | undefined => {
    const v = list?.find((b) => b.key === DELETE_FILE_PATH_ID)?.value;
    return v === undefined ? undefined : Buffer.from(v);
  };
  const p = Buffer.from(path, "utf8");
  const lower = bound(del.lower_bounds);
  const upper = bound(del.upper_bounds);
  // Bounds compare as unsigned bytes (UTF-8), as Buffer.compare does. An upper bound is compared
  // with as many bytes of the path as it has: a writer that truncated it without incrementing its
  // last character still never makes a delete file look out of scope.
  return (lower === undefined || Buffer.compare(lower, p) <= 0) && (upper === undefined || Buffer.compare(p.subarray(0, upper.length), upper) <= 0);
}

/**
 * The delete files of a snapshot, indexed by partition so that finding those that apply to a data
 * file looks only at its partition's (and at global equality deletes), not at every delete file.
 *
 * @example
 * const index = new DeleteIndex(deletes, unpartitionedSpecs(table.metadata));
 * const applying = index.applying(dataFile);
 */
export class DeleteIndex {
  readonly #byPartition = new Map<string, ScopedFile[]>();
  readonly #global: ScopedFile[] = [];
  readonly #globalSpecs: ReadonlySet<number>;

  constructor(deletes: readonly ScopedFile[], globalSpecs: ReadonlySet<number>) {
    this.#globalSpecs = globalSpecs;
    for (const d of deletes) {
      if (d.dataFile.content === DeleteContent.Equality && globalSpecs.has(d.specId)) this.#global.push(d);
      else {
        const key = scopeKey(d);
        const list = this.#byPartition.get(key) ?? [];
        list.push(d);
        this.#byPartition.set(key, list);
      }
    }
  }

  /** The delete files that must be applied to `data`. */
  applying(data: ScopedFile): ScopedFile[] {
    const candidates = [...(this.#byPartition.get(scopeKey(data)) ?? []), ...this.#global];
    return candidates.filter((d) => deleteApplies(d, data, this.#globalSpecs));
  }
}

/**
 * Whether a delete file still applies to one of `data` (data files indexed by partition with
 * indexDataFiles): a delete file to which none applies can be removed without changing any row.
 *
 * @example
 * const index = indexDataFiles(remaining);
 * if (!stillApplies(del, index, unpartitionedSpecs(m))) drop(del);
 */
export function stillApplies(del: ScopedFile, data: DataFileIndex, globalSpecs: ReadonlySet<number>): boolean {
  if (del.dataFile.content === DeleteContent.Equality && globalSpecs.has(del.specId)) return data.minSequenceNumber !== undefined && data.minSequenceNumber < del.sequenceNumber;
  return (data.byPartition.get(scopeKey(del)) ?? []).some((f) => deleteApplies(del, f, globalSpecs));
}

/** Data files by partition, and their least data sequence number (for global equality deletes). */
export interface DataFileIndex {
  byPartition: Map<string, ScopedFile[]>;
  minSequenceNumber: bigint | undefined;
}

/**
 * Indexes data files for stillApplies.
 *
 * @example
 * const index = indexDataFiles(remaining);
 */
export function indexDataFiles(files: readonly ScopedFile[]): DataFileIndex {
  const byPartition = new Map<string, ScopedFile[]>();
  let minSequenceNumber: bigint | undefined;
  for (const f of files) {
    const key = scopeKey(f);
    const list = byPartition.get(key) ?? [];
    list.push(f);
    byPartition.set(key, list);
    if (minSequenceNumber === undefined || f.sequenceNumber < minSequenceNumber) minSequenceNumber = f.sequenceNumber;
  }
  return { byPartition, minSequenceNumber };
}

const scopeKey = (f: ScopedFile): string => `${f.specId}|${f.partition}`;
