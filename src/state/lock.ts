import { randomBytes } from "node:crypto";
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.js";

/** What `<home>/state.lock` holds. */
export interface LockInfo {
  pid: number;
  hostname: string;
  startedAt: string;
  owner: string;
}

/** A held lock; `release()` is idempotent and also runs, best effort, when the process exits. */
export interface StateLock {
  readonly path: string;
  readonly info: LockInfo;
  release(): void;
}

const errorCode = (e: unknown): string | undefined =>
  e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;

/**
 * Takes the single-owner lock of an embedded state store in `home` (created if missing).
 * A lock whose process is alive on this host (or that names another host) is a UserError
 * naming that process; a lock left by a dead process, or an unreadable one, is taken over.
 *
 * @example
 * const lock = acquireLock(".floe", "floe dev");
 * try { ... } finally { lock.release(); }
 */
export function acquireLock(home: string, owner: string): StateLock {
  mkdirSync(home, { recursive: true });
  const path = join(home, "state.lock");
  const info: LockInfo = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString(), owner };
  const text = `${JSON.stringify(info)}\n`;
  // The lock is written to a temporary file first, so nobody ever reads a half-written lock.
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(tmp, text);
  try {
    for (let attempt = 0; ; attempt++) {
      if (createExclusive(tmp, path, text)) break;
      const holder = readLock(path);
      if (holder === "missing" && attempt < 5) continue; // released meanwhile: try again
      if (holder !== "missing" && holder !== "garbage" && isHeld(holder)) {
        const where = holder.hostname === info.hostname ? "" : ` on ${holder.hostname}`;
        throw new UserError(
          `the embedded state store in ${home} is in use by process ${holder.pid}${where} (${holder.owner}); stop it, or set FLOE_DATABASE_URL to share a PostgreSQL store`,
        );
      }
      renameSync(tmp, path); // stale or unreadable: replace it atomically
      break;
    }
  } finally {
    rmSync(tmp, { force: true });
  }

  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.off("exit", release);
    const current = readLock(path);
    if (typeof current === "object" && current.pid === info.pid && current.startedAt === info.startedAt) rmSync(path, { force: true });
  };
  process.on("exit", release);
  return { path, info, release };
}

/** Creates `path` holding `text` unless it exists; false when it exists. */
function createExclusive(tmp: string, path: string, text: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    const code = errorCode(e);
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") throw e;
  }
  // A file system without hard links: create exclusively, then write.
  try {
    const fd = openSync(path, "wx");
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (e) {
    if (errorCode(e) === "EEXIST") return false;
    throw e;
  }
}

function readLock(path: string): LockInfo | "missing" | "garbage" {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (errorCode(e) === "ENOENT") return "missing";
    throw e;
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== "object" || v === null) return "garbage";
    const o = v as Record<string, unknown>;
    if (!Number.isInteger(o.pid) || typeof o.hostname !== "string") return "garbage";
    return { pid: o.pid as number, hostname: o.hostname, startedAt: String(o.startedAt ?? ""), owner: String(o.owner ?? "unknown") };
  } catch {
    return "garbage";
  }
}

/** Whether the lock's process may still run: alive on this host, or on another host (unknowable). */
function isHeld(lock: LockInfo): boolean {
  if (lock.hostname !== hostname()) return true;
  if (lock.pid <= 0) return false;
  try {
    process.kill(lock.pid, 0);
    return true;
  } catch (e) {
    return errorCode(e) === "EPERM";
  }
}
