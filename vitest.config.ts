import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
    // Full-scale crash and concurrency trials run only under `npm run test:soak`.
    exclude: process.env.FLOE_SOAK ? ["**/node_modules/**"] : ["**/node_modules/**", "test/soak/**"],
    pool: "forks",
    // Two test files at a time: most of them wait on processes they start (floe commands, workers,
    // brokers), and one at a time took 8-9 minutes on 2 cores; two take about 6.
    maxWorkers: 2,
    // s3rver makes list continuation tokens with DES, which OpenSSL 3 has only in its legacy provider
    execArgv: ["--openssl-legacy-provider"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
