import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { acquireLock, StateStore, type Migration } from "../../src/state/index.js";
import { defaultMigrations } from "../../src/state/store.js";
import { pgAvailable, testDatabase } from "../helpers/pg.js";

const pgUp = await pgAvailable();
const homes: string[] = [];
const newHome = (): string => {
  const home = mkdtempSync(join(tmpdir(), "floe-open-"));
  homes.push(home);
  return home;
};
afterAll(() => {
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

const writeLock = (home: string, lock: object | string): void => {
  mkdirSync(home, { recursive: true });
  writeFileSync(join(home, "state.lock"), typeof lock === "string" ? lock : JSON.stringify(lock));
};
const readLock = (home: string): Record<string, unknown> => JSON.parse(readFileSync(join(home, "state.lock"), "utf8")) as Record<string, unknown>;
const failure = async (p: Promise<unknown>): Promise<Error> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof Error) return e;
  }
  throw new Error("expected a failure");
};

describe("opening PostgreSQL", () => {
  it.each([
    "mysql://floe:s3cret@db.example.com/floe",
    "postgres//floe:s3cret@db.example.com/floe",
    "floe:s3cret@db.example.com:5432/floe",
    "http://db.example.com/floe?password=s3cret",
  ])("rejects a malformed URL without showing its password: %s", async (url) => {
    const e = await failure(StateStore.open({ url, home: "/nonexistent" }));
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toMatch(/^FLOE_DATABASE_URL is not a postgres:\/\/ URL: .*\*\*\*/);
    expect(e.message).not.toContain("s3cret");
  });

  it("says in one line that an unreachable server cannot be reached", async () => {
    const e = await failure(StateStore.open({ url: "postgres://floe:s3cret@127.0.0.1:5999/floe", home: "/nonexistent" }));
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toBe("cannot reach PostgreSQL at 127.0.0.1:5999 (ECONNREFUSED); is it running? check FLOE_DATABASE_URL");
  });

  describe.skipIf(!pgUp)("on a real server", () => {
    it("names a database that does not exist", async () => {
      const url = new URL((await testDatabase().then(async (db) => (await db!.drop(), db!.url))));
      const name = url.pathname.slice(1);
      const e = await failure(StateStore.open({ url: url.toString(), home: "/nonexistent" }));
      expect(e).toBeInstanceOf(UserError);
      expect(e.message).toMatch(new RegExp(`^PostgreSQL at [^ ]+ has no database \`${name}\`; create it`));
      expect(e.message).not.toContain("\n");
    });

    it("migrates a fresh database once when two processes open it at the same time", async () => {
      const db = (await testDatabase())!;
      const extra: Migration = {
        id: "plugin/0001_things",
        up: async (k) => {
          await sql`create table things (id int primary key)`.execute(k);
        },
      };
      try {
        const stores = await Promise.all([0, 1, 2].map(() => StateStore.open({ url: db.url, home: "/nonexistent", extraMigrations: [extra] })));
        const ids = (await sql<{ id: string }>`select id from floe_migrations order by id`.execute(stores[0]!.db)).rows.map((r) => r.id);
        expect(ids).toEqual([...defaultMigrations].map((m) => m.id).concat("plugin/0001_things").sort());
        await Promise.all(stores.map((s) => s.close()));
        // A process that does not load the plugin leaves its migrations alone.
        const plain = await StateStore.open({ url: db.url, home: "/nonexistent" });
        expect(plain.engine).toBe("postgres");
        await plain.close();
      } finally {
        await db.drop();
      }
    });

    it("refuses a database migrated by a newer floe", async () => {
      const db = (await testDatabase())!;
      try {
        const store = await StateStore.open({ url: db.url, home: "/nonexistent" });
        await sql`insert into floe_migrations (id) values ('core/9999_from_the_future')`.execute(store.db);
        await store.close();
        const e = await failure(StateStore.open({ url: db.url, home: "/nonexistent" }));
        expect(e).toBeInstanceOf(UserError);
        expect(e.message).toMatch(/newer floe: unknown migration core\/9999_from_the_future; upgrade floe/);
      } finally {
        await db.drop();
      }
    });
  });
});

describe("the embedded store's lock", () => {
  it("refuses a store whose lock is held by a live process, naming it", async () => {
    const home = newHome();
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    try {
      writeLock(home, { pid: child.pid, hostname: hostname(), startedAt: new Date().toISOString(), owner: "floe dev" });
      const e = await failure(StateStore.open({ home }));
      expect(e).toBeInstanceOf(UserError);
      expect(e.message).toBe(
        `the embedded state store in ${home} is in use by process ${child.pid} (floe dev); stop it, or set FLOE_DATABASE_URL to share a PostgreSQL store`,
      );
      expect(readLock(home).pid).toBe(child.pid); // left alone
      expect(existsSync(join(home, "pglite"))).toBe(false);
    } finally {
      child.kill();
    }
  });

  it("takes over a lock left by a dead process, and releases it on close", async () => {
    const home = newHome();
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    writeLock(home, { pid: dead, hostname: hostname(), startedAt: new Date().toISOString(), owner: "floe dev" });
    const store = await StateStore.open({ home, owner: "open.test" });
    try {
      expect(store.engine).toBe("pglite");
      expect(readLock(home)).toMatchObject({ pid: process.pid, hostname: hostname(), owner: "open.test" });
      // A second opener in this very process is refused too: one PGlite per directory.
      await expect(StateStore.open({ home })).rejects.toThrow(`in use by process ${process.pid} (open.test)`);
    } finally {
      await store.close();
    }
    expect(existsSync(join(home, "state.lock"))).toBe(false);
    expect(existsSync(join(home, "pglite"))).toBe(true);
  });

  it("runs PGlite with small shared buffers (its default 128MB is resident), from the first open on", async () => {
    const home = newHome();
    const show = async (): Promise<string | undefined> => {
      const store = await StateStore.open({ home });
      try {
        return (await sql<{ shared_buffers: string }>`show shared_buffers`.execute(store.db)).rows[0]?.shared_buffers;
      } finally {
        await store.close();
      }
    };
    expect(await show()).toBe("32MB");
    expect(await show()).toBe("32MB");
  });

  it("takes over an unreadable lock", () => {
    const home = newHome();
    writeLock(home, "{ not json");
    const lock = acquireLock(home, "t");
    expect(readLock(home)).toMatchObject({ pid: process.pid, owner: "t" });
    lock.release();
    lock.release();
    expect(existsSync(join(home, "state.lock"))).toBe(false);
  });

  it("treats a lock from another host as held", () => {
    const home = newHome();
    writeLock(home, { pid: 1, hostname: "elsewhere.example", startedAt: "", owner: "floe worker" });
    expect(() => acquireLock(home, "t")).toThrow(/in use by process 1 on elsewhere\.example \(floe worker\)/);
  });

  it("does not remove a lock that another process took over meanwhile", () => {
    const home = newHome();
    const lock = acquireLock(home, "t");
    writeLock(home, { pid: 12345, hostname: hostname(), startedAt: "x", owner: "other" });
    lock.release();
    expect(readLock(home).pid).toBe(12345);
  });

  it("releases the lock when the process exits", () => {
    const home = newHome();
    const script = `import { acquireLock } from ${JSON.stringify(new URL("../../src/state/lock.ts", import.meta.url).href)};
      acquireLock(${JSON.stringify(home)}, "child"); process.exit(0);`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(existsSync(join(home, "state.lock"))).toBe(false);
  });
});
