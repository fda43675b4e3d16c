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
 * Every row of every table of the state store's schema (runs, steps, events, partitions, the
 * file ledger, ticks, processes, the Iceberg catalog, migrations, …) as one text, each table
 * found in `information_schema`, for checking that a secret never reached the state store.
 *
 * @example
 * expect(await storedText(db.url)).not.toContain(CANARY);
 */
export async function storedText(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string }>(
      `select table_name as name from information_schema.tables
        where table_schema = current_schema() and table_type = 'BASE TABLE' order by table_name`,
    );
    if (tables.length === 0) throw new Error("the state store has no tables: is this the right database?");
    const parts: string[] = [];
    for (const { name } of tables) {
      const quoted = `"${name.replaceAll('"', '""')}"`;
      const { rows } = await client.query<{ t: string | null }>(`select string_agg(row_to_json(x)::text, ' ') as t from ${quoted} x`);
      parts.push(`${name}: ${rows[0]?.t ?? ""}`);
    }
    return parts.join("\n");
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
