// The SQL catalog in the state database, with the tables of Iceberg's JdbcCatalog and PyIceberg's
// SqlCatalog, so those can open the same tables. Commits are
// `UPDATE … WHERE metadata_location = <expected>`: the row count says whether the swap happened.

import { sql, type Kysely } from "kysely";
import type { Catalog, TableIdentifier, TablePointer } from "./catalog.js";

/** The catalog tables, for Kysely. */
export interface IcebergCatalogTables {
  iceberg_tables: {
    catalog_name: string;
    table_namespace: string;
    table_name: string;
    metadata_location: string | null;
    previous_metadata_location: string | null;
    iceberg_type: string | null;
  };
  iceberg_namespace_properties: {
    catalog_name: string;
    namespace: string;
    property_key: string;
    property_value: string | null;
  };
}

/** A state-store migration (the shape of the state store's runner). */
export interface IcebergMigration {
  id: string;
  up(db: Kysely<unknown>): Promise<void>;
}

/**
 * Creates the catalog tables (JDBC catalog "V1" layout, i.e. with `iceberg_type`), if absent so
 * that an existing PyIceberg/Java catalog database is adopted as is.
 *
 * @example
 * await migrate(db, [...coreMigrations, icebergCatalogMigration], where);
 */
export const icebergCatalogMigration: IcebergMigration = {
  id: "iceberg/0001_catalog",
  async up(db) {
    await sql`create table if not exists iceberg_tables (
      catalog_name varchar(255) not null,
      table_namespace varchar(255) not null,
      table_name varchar(255) not null,
      metadata_location varchar(1000),
      previous_metadata_location varchar(1000),
      iceberg_type varchar(5),
      primary key (catalog_name, table_namespace, table_name))`.execute(db);
    await sql`create table if not exists iceberg_namespace_properties (
      catalog_name varchar(255) not null,
      namespace varchar(255) not null,
      property_key varchar(255) not null,
      property_value varchar(1000),
      primary key (catalog_name, namespace, property_key))`.execute(db);
  },
};

/**
 * A SqlCatalog over any Kysely (PostgreSQL, PGlite) whose database holds the catalog tables; its
 * database type need not declare them.
 *
 * @example
 * const catalog = sqlCatalog(stateDb, "floe");
 */
export function sqlCatalog<DB>(db: Kysely<DB>, catalogName = "floe"): SqlCatalog {
  return new SqlCatalog(db as unknown as Kysely<IcebergCatalogTables>, catalogName);
}

/**
 * A Catalog over the catalog tables (see icebergCatalogMigration). `catalogName` separates
 * catalogs sharing the tables; namespaces are stored joined with ".", as Java and PyIceberg do.
 *
 * @example
 * const catalog = new SqlCatalog(db.withTables<IcebergCatalogTables>(), "floe");
 * const ptr = await catalog.loadTable({ namespace: ["sales"], name: "orders" });
 */
export class SqlCatalog implements Catalog {
  readonly #db: Kysely<IcebergCatalogTables>;

  constructor(
    db: Kysely<IcebergCatalogTables>,
    readonly catalogName = "floe",
  ) {
    this.#db = db;
  }

  async loadTable(id: TableIdentifier): Promise<TablePointer | undefined> {
    const row = await this.#db
      .selectFrom("iceberg_tables")
      .select(["metadata_location", "previous_metadata_location"])
      .where("catalog_name", "=", this.catalogName)
      .where("table_namespace", "=", id.namespace.join("."))
      .where("table_name", "=", id.name)
      .where((eb) => eb.or([eb("iceberg_type", "=", "TABLE"), eb("iceberg_type", "is", null)]))
      .executeTakeFirst();
    if (!row?.metadata_location) return undefined;
    return { metadataLocation: row.metadata_location, previousMetadataLocation: row.previous_metadata_location };
  }

  async createTable(id: TableIdentifier, metadataLocation: string): Promise<boolean> {
    const namespace = id.namespace.join(".");
    const inserted = await this.#db
      .insertInto("iceberg_tables")
      .values({
        catalog_name: this.catalogName,
        table_namespace: namespace,
        table_name: id.name,
        metadata_location: metadataLocation,
        previous_metadata_location: null,
        iceberg_type: "TABLE",
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    // the namespace marker Java and PyIceberg write when they create a namespace
    await this.#db
      .insertInto("iceberg_namespace_properties")
      .values({ catalog_name: this.catalogName, namespace, property_key: "exists", property_value: "true" })
      .onConflict((oc) => oc.doNothing())
      .execute();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  async commitTable(id: TableIdentifier, expectedMetadataLocation: string, newMetadataLocation: string): Promise<boolean> {
    const r = await this.#db
      .updateTable("iceberg_tables")
      .set({ metadata_location: newMetadataLocation, previous_metadata_location: expectedMetadataLocation })
      .where("catalog_name", "=", this.catalogName)
      .where("table_namespace", "=", id.namespace.join("."))
      .where("table_name", "=", id.name)
      .where("metadata_location", "=", expectedMetadataLocation)
      .where((eb) => eb.or([eb("iceberg_type", "=", "TABLE"), eb("iceberg_type", "is", null)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async listTables(namespace: readonly string[]): Promise<TableIdentifier[]> {
    const rows = await this.#db
      .selectFrom("iceberg_tables")
      .select("table_name")
      .where("catalog_name", "=", this.catalogName)
      .where("table_namespace", "=", namespace.join("."))
      .where((eb) => eb.or([eb("iceberg_type", "=", "TABLE"), eb("iceberg_type", "is", null)]))
      .orderBy("table_name")
      .execute();
    return rows.map((r) => ({ namespace: [...namespace], name: r.table_name }));
  }
}
