// The `analytics` pipeline chains on the Iceberg table `lake.orders` and on `customers` by key,
// without importing them.
import { checks, duckdbTable, pipeline } from "floe";
import { daily } from "./orders.ts";

export const dailyRevenue = duckdbTable("daily_revenue", {
  deps: ["lake.orders", "customers"],
  partitions: daily,
  sql: ({ ref }) => `
    select c.country, count(*) as orders, round(sum(o.amount), 2) as revenue
    from ${ref("lake.orders")} o join ${ref("customers")} c on c.id = o.customer_id
    group by c.country order by c.country`,
  checks: [checks.range("revenue", { min: 0 })],
  tags: { team: "finance" },
});

export const revenueByCountry = duckdbTable("revenue_by_country", {
  deps: [dailyRevenue],
  sql: ({ ref }) => `select country, sum(orders) as orders, sum(revenue) as revenue from ${ref(dailyRevenue)} group by country order by revenue desc`,
  tags: { team: "finance" },
});

export default pipeline("analytics", { assets: [dailyRevenue, revenueByCountry] });
