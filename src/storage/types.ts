/** One object of a storage: its key relative to the storage root, and what identifies its content. */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Content identity: the S3 ETag, or `size-mtimeMs` for a local file. */
  etag: string;
  lastModified: Date;
}

/**
 * An object store rooted at a folder or a bucket prefix. Keys are `/`-separated and relative
 * to the root. Implementations: `local-storage.ts` (a folder), `s3-storage.ts` (S3 protocol).
 *
 * @example
 * const storage = localStorage({ root: "/data/landing" });
 * for await (const page of storage.list("orders/")) for (const o of page) console.log(o.key, o.etag);
 */
export interface ObjectStorage {
  /** Absolute URI of the root, without trailing slash: `file:///data/landing`, `s3://bucket/prefix`. */
  readonly uri: string;
  /** Every object whose key starts with `prefix`, a page at a time, keys in ascending order. */
  list(prefix: string): AsyncIterable<ObjectInfo[]>;
  /** Metadata of one object, or undefined when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  read(key: string): Promise<Uint8Array>;
  /** Copies an object to a local file (created with its folders) and returns what was copied. */
  download(key: string, localPath: string): Promise<ObjectInfo>;
  /** Writes an object whole; readers never see a partial object. */
  write(key: string, body: Uint8Array | string): Promise<void>;
  /**
   * Writes an object only when no object has its key (create-if-absent): true when this call
   * created it, false when one existed (left as it was). Readers never see a partial object.
   * Locally a hard link (atomic); on S3 a conditional PutObject (`If-None-Match: *`) after a HEAD,
   * so servers that ignore the condition still never replace an object that was already there.
   */
  writeIfAbsent(key: string, body: Uint8Array | string): Promise<boolean>;
  /** Writes a local file as an object; readers never see a partial object. The local file must not be rewritten in place afterwards: a local storage hard-links it when it can. */
  upload(localPath: string, key: string): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
  /** Absolute URI of a key: `uri + "/" + key`. */
  uriOf(key: string): string;
}

/**
 * An object that does not exist (for example deleted between `list` and `download`). It is not
 * a {@link UserError}: a caller fails just that object and goes on.
 *
 * @example
 * try { await storage.download(key, path); } catch (e) { if (e instanceof ObjectNotFoundError) skip(e.key); else throw e; }
 */
export class ObjectNotFoundError extends Error {
  override readonly name = "ObjectNotFoundError";
  constructor(
    readonly key: string,
    uri: string,
  ) {
    super(`${uri} does not exist`);
  }
}
