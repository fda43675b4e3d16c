// The catalog: where each table's current metadata file is, changed only by compare-and-swap.

/** A table name within a (possibly multi-level) namespace. */
export interface TableIdentifier {
  namespace: readonly string[];
  name: string;
}

/** The catalog's pointer for a table. */
export interface TablePointer {
  metadataLocation: string;
  previousMetadataLocation: string | null;
}

/**
 * A table catalog: a pointer per table to its current metadata file. Only `commitTable`'s
 * compare-and-swap makes a new table version visible.
 */
export interface Catalog {
  /** The table's pointer, or undefined when the table does not exist. */
  loadTable(id: TableIdentifier): Promise<TablePointer | undefined>;
  /** Registers a new table at its first metadata file; false when it already exists. */
  createTable(id: TableIdentifier, metadataLocation: string): Promise<boolean>;
  /** Moves the pointer from `expected` to `next`; false (nothing changed) when it no longer is `expected`. */
  commitTable(id: TableIdentifier, expectedMetadataLocation: string, newMetadataLocation: string): Promise<boolean>;
  /** Tables directly in a namespace, by name. */
  listTables(namespace: readonly string[]): Promise<TableIdentifier[]>;
}

/**
 * `a.b.t` for messages and logs.
 *
 * @example
 * tableName({ namespace: ["sales", "eu"], name: "orders" }) // → "sales.eu.orders"
 */
export function tableName(id: TableIdentifier): string {
  return [...id.namespace, id.name].join(".");
}
