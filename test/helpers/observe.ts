import type { ChildProcess } from "node:child_process";
import pg from "pg";

/**
 * Prometheus text format → `name{labels}` → value (labels as rendered, in their order); throws on
 * a line that is not a sample, so a malformed exposition fails the test.
 *
 * @example
 * const m = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
 * expect(m.get("floe_queue_depth")).toBe(1);
 */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    out.set(m[1]!, Number(m[2]!.replace("+Inf", "Infinity")));
  }
  return out;
}

/**
 * Every row floe keeps about runs (events, steps, runs, materializations) as one text, for
 * checking that a secret never reached the state store.
 *
 * @example
 * expect(await storedText(db.url)).not.toContain(CANARY);
 */
export async function storedText(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string }>(
      `select string_agg(x, ' ') as t from (
         select row_to_json(e)::text as x from events e union all select row_to_json(s)::text from run_steps s
         union all select row_to_json(r)::text from runs r union all select row_to_json(a)::text from asset_partitions a) q`,
    );
    return rows[0]?.t ?? "";
  } finally {
    await client.end();
  }
}

/**
 * The base URL a `floe serve` (or `--metrics-port`) process prints once it listens; rejects if it
 * exits first.
 *
 * @example
 * const base = await listeningUrl(spawn(process.execPath, [floeBin, "serve", "--port", "0"]));
 */
export function listeningUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (d: Buffer) => {
      seen += d.toString();
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(seen);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`floe exited ${code} before listening`)));
  });
}
