// The `orders` pipeline: daily raw orders are cleaned into `orders`; customers are a reference table.
// Plain TypeScript assets that write JSON next to the project; the data-plane kinds
// (rawFiles → duckdbTable → icebergTable) replace them.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { asset, partitions, pipeline } from "floe";

export const daily = partitions.daily({ start: "2025-01-01" });
const dataDir = new URL("../.floe/demo-data/", import.meta.url);

export async function writeJson(name: string, value: unknown): Promise<string> {
  const file = new URL(name, dataDir);
  await mkdir(new URL(".", file), { recursive: true });
  await writeFile(file, JSON.stringify(value));
  return file.pathname;
}

export async function readJson<T>(name: string): Promise<T> {
  return JSON.parse(await readFile(new URL(name, dataDir), "utf8")) as T;
}

export interface Order {
  id: number;
  customer: string;
  amount: number;
  day: string;
}

const CUSTOMERS = ["ada", "grace", "edsger", "barbara", "ken"];

export const customers = asset("customers", {
  description: "Reference list of customers.",
  async materialize() {
    await writeJson("customers.json", CUSTOMERS.map((name, i) => ({ id: i + 1, name })));
    return { metadata: { rows: CUSTOMERS.length } };
  },
});

export const rawOrders = asset("raw_orders", {
  partitions: daily,
  tags: ["landing"],
  description: "Orders as they land, one file per day (generated deterministically from the day).",
  async materialize(ctx) {
    const day = ctx.partitionKey!;
    const seed = Number(day.replaceAll("-", ""));
    const orders: Order[] = Array.from({ length: 20 }, (_, i) => ({
      id: seed * 100 + i,
      customer: CUSTOMERS[(seed + i) % CUSTOMERS.length]!,
      amount: ((seed * 7 + i * 13) % 200) - 10, // a few negative amounts to clean out
      day,
    }));
    await writeJson(`raw_orders/${day}.json`, orders);
    return { metadata: { rows: orders.length } };
  },
});

export const orders = asset("orders", {
  deps: [rawOrders, customers],
  partitions: daily,
  codeVersion: "1",
  description: "Valid orders: positive amounts of known customers.",
  async materialize(ctx) {
    const day = ctx.partitionKey!;
    const raw = await readJson<Order[]>(`raw_orders/${day}.json`);
    const known = new Set((await readJson<Array<{ name: string }>>("customers.json")).map((c) => c.name));
    const valid = raw.filter((o) => o.amount > 0 && known.has(o.customer));
    if (valid.length < raw.length) ctx.log.warn(`dropped ${raw.length - valid.length} invalid orders`, { day });
    await writeJson(`orders/${day}.json`, valid);
    return { metadata: { rows: valid.length, dropped: raw.length - valid.length } };
  },
});

export default pipeline("orders", {
  assets: [customers, rawOrders, orders],
  schedule: { cron: "0 2 * * *", timezone: "UTC" },
});
