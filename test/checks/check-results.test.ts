import { describe, expect, it } from "vitest";
import { checksOf } from "../../src/check-results.js";

describe("checksOf", () => {
  it("reads a step's check results; no severity means error, anything but warn is error; malformed entries are skipped", () => {
    expect(checksOf({ checks: [
      { name: "unique(id)", severity: "error", passed: false, message: "2 duplicate values in id" },
      { name: "not_null(name)", severity: "warn", passed: false, message: "1 null values in name" },
      { name: "row_count", passed: true, message: "10 rows" },
      { name: "odd", severity: "fatal", passed: "yes" },
      { severity: "warn", passed: false },
      "nonsense",
      null,
    ] })).toEqual([
      { name: "unique(id)", severity: "error", passed: false, message: "2 duplicate values in id" },
      { name: "not_null(name)", severity: "warn", passed: false, message: "1 null values in name" },
      { name: "row_count", severity: "error", passed: true, message: "10 rows" },
      { name: "odd", severity: "error", passed: false, message: "" },
    ]);
    expect(checksOf(undefined)).toEqual([]);
    expect(checksOf({ checks: "x" })).toEqual([]);
    expect(checksOf({})).toEqual([]);
  });
});
