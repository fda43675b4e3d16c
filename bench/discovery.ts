// bench/discovery: 100,000 local files listed with the local storage and diffed against the file
// ledger on a fresh PostgreSQL database (FLOE_TEST_DATABASE_URL, else the local server; created
// and dropped here). Timed: the listing, a first discover (all new), a second (all unchanged) and
// a third with 1% changed. Target: list + diff < 3 s. Baseline in the same run: a bare recursive
// fs.readdir walk of the same tree (and, for context, the same walk with a stat per file).
// Run: npx tsx bench/discovery.ts
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileLedger } from "../src/state/files.js";
import { StateStore } from "../src/state/index.js";
import { localStorage } from "../src/storage/local-storage.js";
import type { ObjectInfo } from "../src/storage/types.js";
import { benchDatabase, timed } from "./lib.js";

const N = 100_000;
const root = join(fileURLToPath(new URL(".", import.meta.url)), ".tmp", "discovery");
if (!existsSync(join(root, "done"))) {
  for (let d = 0; d < N / 1000; d++) {
    const dir = join(root, "orders", `d${String(d).padStart(3, "0")}`);
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 1000; i++) writeFileSync(join(dir, `f${String(i).padStart(4, "0")}.csv`), "id\n1\n");
  }
  writeFileSync(join(root, "done"), "");
}

/** The baseline: a recursive readdir of the tree, optionally with a stat of every file. */
const walk = async (dir: string, withStat: boolean): Promise<number> => {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = entries.filter((e) => e.isFile());
  if (withStat) await Promise.all(files.map((e) => stat(join(dir, e.name))));
  let n = files.length;
  for (const e of entries) if (e.isDirectory()) n += await walk(join(dir, e.name), withStat);
  return n;
};

const storage = localStorage({ root });
const listAll = async (): Promise<ObjectInfo[]> => {
  const out: ObjectInfo[] = [];
  for await (const page of storage.list("orders/")) out.push(...page);
  return out;
};

await walk(join(root, "orders"), false); // warm the directory cache for every contender alike
const bare = await timed(() => walk(join(root, "orders"), false));
const bareStat = await timed(() => walk(join(root, "orders"), true));
const listed = await timed(listAll);
if (listed.value.length !== N || bare.value !== N) throw new Error(`expected ${N} files, listed ${listed.value.length}, walked ${bare.value}`);

const bench = await benchDatabase();
const store = await StateStore.open({ url: bench.url, home: "/nonexistent" });
try {
  const ledger = new FileLedger(store);
  const first = await timed(() => ledger.discover("bench", null, listed.value));
  const second = await timed(() => ledger.discover("bench", null, listed.value));
  const touched = listed.value.map((o, i) => (i % 100 === 0 ? { ...o, etag: `${o.etag}-2` } : o));
  const third = await timed(() => ledger.discover("bench", null, touched));

  const ms = (x: number): string => `${x.toFixed(0)} ms`.padStart(8);
  const line = (name: string, r: typeof first): string =>
    `  ${name.padEnd(22)} ${ms(r.ms)}   list + diff ${ms(listed.ms + r.ms)} ${listed.ms + r.ms < 3000 ? "(< 3 s: met)   " : "(< 3 s: MISSED)"}  ${JSON.stringify(r.value)}`;
  console.log(`bench/discovery: ${N} local files, ledger on PostgreSQL (fresh database)`);
  console.log(`  baseline readdir walk  ${ms(bare.ms)}   (the same walk with a stat per file: ${ms(bareStat.ms).trim()})`);
  console.log(`  localStorage.list      ${ms(listed.ms)}   ${(listed.ms / bare.ms).toFixed(1)}x the readdir walk, ${(listed.ms / bareStat.ms).toFixed(1)}x readdir + stat`);
  console.log(line("discover, all new", first));
  console.log(line("discover, unchanged", second));
  console.log(line("discover, 1% changed", third));
} finally {
  await store.close();
  await bench.drop();
}
