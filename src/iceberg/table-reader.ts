// Reading a table's current files: the live data files of its current snapshot, each with the
// snapshot that added it, so callers can pick the files a given writer added.

import type { ObjectStorage } from "../storage/types.js";
import { decodeManifest, decodeManifestList, EntryStatus } from "./manifest.js";
import { currentSnapshot, type Snapshot } from "./metadata.js";
import { keyOf, type LoadedTable } from "./table-writer.js";

/** A live data file of the current snapshot. */
export interface LiveDataFile {
  /** The file's key in the warehouse storage. */
  key: string;
  records: number;
  /** The snapshot that added the file. */
  addedBy: Snapshot | undefined;
}

/**
 * The data files a reader of the table's current snapshot reads (deleted entries excluded), with
 * the snapshot that added each one. Reads the manifest list and its data manifests.
 *
 * @example
 * const files = await liveDataFiles(storage, table);
 * const mine = files.filter((f) => f.addedBy?.summary["floe.partition"] === "2025-01-01");
 */
export async function liveDataFiles(storage: ObjectStorage, table: LoadedTable): Promise<LiveDataFile[]> {
  const current = currentSnapshot(table.metadata);
  if (!current) return [];
  const bySnapshot = new Map(table.metadata.snapshots.map((s) => [s["snapshot-id"], s]));
  const manifests = decodeManifestList(await storage.read(keyOf(storage, current["manifest-list"])));
  const out: LiveDataFile[] = [];
  const decoded = await Promise.all(
    manifests.filter((m) => m.content === 0).map(async (m) => ({ m, entries: decodeManifest(await storage.read(keyOf(storage, m.manifest_path))) })),
  );
  for (const { m, entries } of decoded) {
    for (const e of entries) {
      if (e.status === EntryStatus.Deleted) continue;
      out.push({ key: keyOf(storage, e.data_file.file_path), records: Number(e.data_file.record_count), addedBy: bySnapshot.get(e.snapshot_id ?? m.added_snapshot_id) });
    }
  }
  return out;
}
