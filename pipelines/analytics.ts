// The `analytics` pipeline chains on `orders` by key, without importing its asset.
import { asset, pipeline } from "floe";
import { daily, readJson, writeJson, type Order } from "./orders.ts";

export const dailyRevenue = asset("daily_revenue", {
  deps: ["orders"],
  partitions: daily,
  tags: { team: "finance" },
  async materialize(ctx) {
    const day = ctx.partitionKey!;
    const orders = await readJson<Order[]>(`orders/${day}.json`);
    const revenue = orders.reduce((sum, o) => sum + o.amount, 0);
    await writeJson(`daily_revenue/${day}.json`, { day, revenue });
    ctx.log.info(`revenue of ${day}: ${revenue}`, { upstreamRows: ctx.upstream.orders?.metadata.rows });
    return { metadata: { revenue, orders: orders.length } };
  },
});

export const revenueReport = asset("revenue_report", {
  deps: [dailyRevenue],
  tags: { team: "finance" },
  description: "Total revenue over every materialized day.",
  async materialize(ctx) {
    const days = ctx.upstreamPartitions(dailyRevenue);
    const total = days.reduce((sum, d) => sum + Number(d.metadata.revenue ?? 0), 0);
    await writeJson("revenue_report.json", { days: days.length, total });
    return { metadata: { days: days.length, total } };
  },
});

export default pipeline("analytics", { assets: [dailyRevenue, revenueReport] });
