import { randomUUID } from "node:crypto";
import { copyFile, link, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { ObjectNotFoundError, type ObjectInfo, type ObjectStorage } from "./types.js";

export interface LocalStorageOptions {
  /** Absolute folder, or relative to `baseDir`. */
  root: string;
  baseDir?: string;
  /** Objects per page of `list` (default 1000, as S3). */
  pageSize?: number;
}

/**
 * An object storage over a local folder. Writes go to a temporary name and are renamed into
 * place, so a reader never sees half an object.
 *
 * @example
 * const landing = localStorage({ root: "data/landing", baseDir: projectDir });
 * await landing.write("orders/2025-01-01/a.csv", "id\n1\n");
 */
export function localStorage(options: LocalStorageOptions): ObjectStorage {
  const root = resolve(options.baseDir ?? process.cwd(), options.root);
  const pageSize = options.pageSize ?? 1000;
  const pathOf = (key: string): string => join(root, ...key.split("/"));
  const toKey = (path: string): string => relative(root, path).split(sep).join("/");
  const uri = pathToFileURL(root).href.replace(/\/$/, "");
  const uriOf = (key: string): string => `${uri}/${key}`;
  const missing = (e: unknown, codes = ["ENOENT", "ENOTDIR", "EISDIR"]): boolean => codes.includes((e as NodeJS.ErrnoException).code ?? "");
  const notFound = (key: string): ObjectNotFoundError => new ObjectNotFoundError(key, uriOf(key));
  /** The object at `path`, or undefined when there is no file there. */
  const info = async (path: string): Promise<ObjectInfo | undefined> => {
    const s = await stat(path).catch((e: unknown) => {
      if (missing(e)) return undefined;
      throw e;
    });
    if (s === undefined || !s.isFile()) return undefined;
    return { key: toKey(path), size: s.size, etag: `${s.size}-${Math.trunc(s.mtimeMs)}`, lastModified: s.mtime };
  };
  const writeAtomic = async (key: string, write: (tmp: string) => Promise<void>): Promise<void> => {
    const target = pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.${randomUUID()}.tmp`;
    try {
      await write(tmp);
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  };
  return {
    uri,
    async *list(prefix) {
      // Walk only the folder the prefix names, then filter by the rest of it.
      const slash = prefix.lastIndexOf("/");
      const start = slash < 0 ? root : pathOf(prefix.slice(0, slash));
      const keys: string[] = [];
      const walk = async (dir: string): Promise<void> => {
        let entries;
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
          throw e;
        }
        for (const entry of entries) {
          const p = join(dir, entry.name);
          if (entry.isDirectory()) await walk(p);
          else if (entry.isFile() && !entry.name.endsWith(".tmp")) {
            const key = toKey(p);
            if (key.startsWith(prefix)) keys.push(key);
          }
        }
      };
      await walk(start);
      keys.sort();
      for (let i = 0; i < keys.length; i += pageSize) {
        const page = await Promise.all(keys.slice(i, i + pageSize).map((k) => info(pathOf(k)).catch(() => undefined)));
        yield page.filter((o): o is ObjectInfo => o !== undefined);
      }
    },
    head: (key) => info(pathOf(key)),
    async read(key) {
      try {
        return new Uint8Array(await readFile(pathOf(key)));
      } catch (e) {
        throw missing(e) ? notFound(key) : e;
      }
    },
    async download(key, localPath) {
      await mkdir(dirname(localPath), { recursive: true });
      const before = await info(pathOf(key));
      if (before === undefined) throw notFound(key);
      try {
        await copyFile(pathOf(key), localPath);
      } catch (e) {
        throw missing(e, ["ENOENT"]) ? notFound(key) : e; // deleted since the stat
      }
      return before;
    },
    write: (key, body) => writeAtomic(key, (tmp) => writeFile(tmp, body)),
    // A hard link fails with EEXIST when the name is taken, and makes the whole file appear at
    // once; where links are not supported, an exclusive create (O_EXCL) still never replaces one.
    async writeIfAbsent(key, body) {
      const target = pathOf(key);
      await mkdir(dirname(target), { recursive: true });
      const tmp = `${target}.${randomUUID()}.tmp`;
      try {
        await writeFile(tmp, body);
        await link(tmp, target).catch(async (e: unknown) => {
          if (!missing(e, ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"])) throw e;
          await writeFile(target, body, { flag: "wx" });
        });
        return true;
      } catch (e) {
        if (missing(e, ["EEXIST"])) return false;
        throw e;
      } finally {
        await rm(tmp, { force: true });
      }
    },
    // A hard link when the file is on the same file system (floe never rewrites a file in place,
    // so the two names cannot drift apart); a copy otherwise.
    upload: (localPath, key) => writeAtomic(key, (tmp) => link(localPath, tmp).catch(() => copyFile(localPath, tmp))),
    async delete(keys) {
      await Promise.all(keys.map((k) => rm(pathOf(k), { force: true })));
    },
    uriOf,
  };
}
