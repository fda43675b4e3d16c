// npm run demo: materializes the example pipelines on embedded defaults and shows the result.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const floe = (...args) => {
  console.log(`\n$ floe ${args.join(" ")}`);
  const r = spawnSync(process.execPath, [`${root}/bin/floe.js`, ...args, "--project", root], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

floe("lineage");
floe("materialize", "--select", "*", "--from", "2025-01-01", "--to", "2025-01-07");
floe("status");
floe("materialize", "--select", "*", "--from", "2025-01-01", "--to", "2025-01-07", "--stale");
floe("runs", "--limit", "5");
