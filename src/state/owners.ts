import { hostname } from "node:os";

/**
 * This process as the owner of runs and claims: `<hostname>:<pid>`.
 *
 * @example
 * const run = await store.createRun({ trigger: "manual", worker: processOwner(), steps });
 */
export function processOwner(): string {
  return `${hostname()}:${process.pid}`;
}

/**
 * The owners among `owners` (`<host>:<pid>`) that ran on this host and whose process is gone: no
 * heartbeat timeout needs to pass before their runs and claims are taken as dead. Owners on other
 * hosts are never reported (only their heartbeats can tell).
 *
 * @example
 * goneLocalOwners(["web-1:4242", "web-2:17"]); // ["web-1:4242"] on web-1 once pid 4242 exited
 */
export function goneLocalOwners(owners: readonly string[]): string[] {
  const host = `${hostname()}:`;
  return owners.filter((o) => {
    if (!o.startsWith(host)) return false;
    const pid = Number(o.slice(host.length));
    if (!Number.isSafeInteger(pid) || pid <= 0) return false;
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (e) {
      // EPERM: the pid exists but belongs to someone else; only ESRCH means gone
      return (e as NodeJS.ErrnoException).code === "ESRCH";
    }
  });
}
