// bench/discovery: 100,000 local files listed with the local storage and diffed against the file
// ledger on PostgreSQL (first pass: all new; second pass: all unchanged). Target < 3 s for
// list + diff. Baseline in the same run: a bare recursive fs.readdir + stat of the same tree.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileLedger } from "../src/state/files.js";
import { StateStore } from "../src/state/index.js";
import { localStorage } from "../src/storage/local-storage.js";
import type { ObjectInfo } from "../src/storage/types.js";
import { benchDatabase, timed } from "./lib.js";

const N = Number(process.env.BENCH_FILES ?? 100_000);
const root = join(fileURLToPath(new URL(".", import.meta.url)), ".tmp", `discovery-${N}`);
if (!existsSync(join(root, "done"))) {
  for (let d = 0; d < N / 1000; d++) {
    const dir = join(root, "orders", `d${String(d).padStart(3, "0")}`);
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 1000; i++) writeFileSync(join(dir, `f${String(i).padStart(4, "0")}.csv`), "id\n1\n");
  }
  writeFileSync(join(root, "done"), "");
}

const bare = await timed(async () => {
  let n = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name.endsWith(".csv")) {
        await stat(join(dir, e.name));
        n++;
      }
    }
  };
  await walk(join(root, "orders"));
  return n;
});

const bench = await benchDatabase();
const store = await StateStore.open({ url: bench.url, home: "/nonexistent" });
try {
  const ledger = new FileLedger(store);
  const storage = localStorage({ root });
  const pass = () =>
    timed(async () => {
      let listMs = 0;
      let diffMs = 0;
      let t = performance.now();
      const totals = { added: 0, changed: 0, unchanged: 0 };
      for await (const page of storage.list("orders/")) {
        listMs += performance.now() - t;
        const d0 = performance.now();
        const r = await ledger.discover("bench", null, page as ObjectInfo[]);
        diffMs += performance.now() - d0;
        totals.added += r.added;
        totals.changed += r.changed;
        totals.unchanged += r.unchanged;
        t = performance.now();
      }
      return { listMs, diffMs, totals };
    });
  const first = await pass();
  const second = await pass();
  const fmt = (p: typeof first) => `${p.ms.toFixed(0)} ms (list ${p.value.listMs.toFixed(0)} + diff ${p.value.diffMs.toFixed(0)}; ${JSON.stringify(p.value.totals)})`;
  console.log(`discovery of ${N} files: first pass ${fmt(first)}; second pass ${fmt(second)} (target < 3000 ms)`);
  console.log(`  baseline bare readdir + stat walk: ${bare.ms.toFixed(0)} ms for ${bare.value} files; ratio first/baseline ${(first.ms / bare.ms).toFixed(1)}x, second/baseline ${(second.ms / bare.ms).toFixed(1)}x`);
} finally {
  await store.close();
  await bench.drop();
}
