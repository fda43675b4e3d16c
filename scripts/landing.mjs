// Writes a small deterministic landing folder for the demo: orders as CSV, one folder per day,
// and customers as NDJSON. A few rows are bad on purpose (the demo quarantines them).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeLanding(root, days = 7) {
  const customers = ["ada", "grace", "edsger", "barbara", "ken", "margaret"];
  mkdirSync(join(root, "customers"), { recursive: true });
  writeFileSync(
    join(root, "customers", "customers.ndjson"),
    customers.map((name, i) => JSON.stringify({ id: i + 1, name, country: ["FR", "US", "NL", "US", "US", "UK"][i] })).join("\n") + "\n",
  );
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let d = 1; d <= days; d++) {
    const day = `2025-01-${String(d).padStart(2, "0")}`;
    const dir = join(root, "orders", day);
    mkdirSync(dir, { recursive: true });
    for (const part of [1, 2]) {
      const lines = ["id,customer_id,amount,ts"];
      for (let i = 0; i < 25; i++) {
        const id = d * 1000 + part * 100 + i;
        const amount = (rand() * 200).toFixed(2);
        const hour = String(Math.floor(rand() * 24)).padStart(2, "0");
        lines.push(`${id},${1 + Math.floor(rand() * customers.length)},${amount},${day} ${hour}:15:00`);
      }
      if (part === 2 && d % 3 === 0) lines.push(`${d * 1000 + 299},2,not-a-number,${day} 12:00:00`); // quarantined
      writeFileSync(join(dir, `orders-${part}.csv`), lines.join("\n") + "\n");
    }
  }
}
