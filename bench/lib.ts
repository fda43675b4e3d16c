import pg from "pg";

/** Small helpers shared by the benchmarks: a seeded PRNG and timing. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function timed<T>(fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/** Random DAG edges: asset i depends on up to `2 * meanFanIn` earlier assets (mean ≈ meanFanIn). */
export function randomDag(n: number, meanFanIn: number, seed = 42): string[][] {
  const rand = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    if (i === 0) return [];
    const k = Math.min(i, Math.round(rand() * 2 * meanFanIn));
    const deps = new Set<string>();
    while (deps.size < k) deps.add(`a${Math.floor(rand() * i)}`);
    return [...deps];
  });
}

/**
 * A fresh PostgreSQL database for one benchmark (FLOE_TEST_DATABASE_URL's server, default the
 * local one), dropped by `drop()`.
 */
export async function benchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.FLOE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const name = `floe_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async drop() {
      await admin.query(`drop database ${name} with (force)`);
      await admin.end();
    },
  };
}
