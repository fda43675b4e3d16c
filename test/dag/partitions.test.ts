import { describe, expect, it } from "vitest";
import { partitions } from "../../src/dag/partitions.js";

const at = (iso: string) => new Date(iso);

describe("partitions", () => {
  it("daily keys end at the last closed day", () => {
    const d = partitions.daily({ start: "2025-01-30" });
    expect(d.keys(at("2025-02-02T10:00:00Z"))).toEqual(["2025-01-30", "2025-01-31", "2025-02-01"]);
    expect(d.invalidReason("2025-02-02", at("2025-02-02T10:00:00Z"))).toBe("partition `2025-02-02` is after the last partition `2025-02-01`");
    expect(d.invalidReason("2025-01-29")).toBe("partition `2025-01-29` is before the first partition `2025-01-30`");
    expect(d.invalidReason("2025-02-30")).toMatch(/not a daily partition key like `2025-01-31`/);
  });

  it("a timezone moves the day boundary", () => {
    const tokyo = partitions.daily({ start: "2025-01-01", timezone: "Asia/Tokyo" });
    // 2025-01-03T16:00Z is already 01:00 on the 4th in Tokyo, so the 3rd has closed there
    expect(tokyo.keys(at("2025-01-03T16:00:00Z")).at(-1)).toBe("2025-01-03");
    expect(partitions.daily({ start: "2025-01-01" }).keys(at("2025-01-03T16:00:00Z")).at(-1)).toBe("2025-01-02");
    expect(() => partitions.daily({ start: "2025-01-01", timezone: "Mars/Olympus" })).toThrow("partitions.daily: unknown timezone `Mars/Olympus`");
  });

  it("hourly and monthly keys", () => {
    expect(partitions.hourly({ start: "2025-01-01" }).keys(at("2025-01-01T03:30:00Z"))).toEqual(["2025-01-01T00", "2025-01-01T01", "2025-01-01T02"]);
    expect(partitions.monthly({ start: "2024-11" }).keys(at("2025-02-10T00:00:00Z"))).toEqual(["2024-11", "2024-12", "2025-01"]);
    expect(partitions.monthly({ start: "2024-11", end: "2024-12" }).keys(at("2026-01-01T00:00:00Z"))).toEqual(["2024-11", "2024-12"]);
  });

  it("ranges are inclusive and validated", () => {
    const d = partitions.daily({ start: "2025-01-01" });
    expect(d.range("2025-01-30", "2025-02-02")).toEqual(["2025-01-30", "2025-01-31", "2025-02-01", "2025-02-02"]);
    expect(() => d.range("2025-01-05", "2025-01-02")).toThrow("--from `2025-01-05` is after --to `2025-01-02`");
    expect(() => d.range("2024-12-31", "2025-01-02")).toThrow(/before the first partition/);
  });

  it("static and multi", () => {
    const s = partitions.static(["eu", "us", "apac"]);
    expect(s.range("eu", "us")).toEqual(["eu", "us"]);
    expect(s.invalidReason("mars")).toBe("`mars` is not one of the partitions `eu`, `us`, `apac`");
    expect(() => partitions.static(["eu", "eu"])).toThrow("partitions.static: key `eu` is listed twice");
    const m = partitions.multi({ day: partitions.daily({ start: "2025-01-01", end: "2025-01-02" }), region: partitions.static(["eu", "us"]), tier: partitions.static(["a", "b"]) });
    expect(m.keys()).toHaveLength(8);
    expect(m.keys()[0]).toBe("2025-01-01|eu|a");
    expect(m.invalidReason("2025-01-01|eu")).toMatch(/one value per dimension/);
    expect(m.invalidReason("2025-01-01|mars|a")).toMatch(/^region: /);
  });

  it("rejects bad definitions with one-line errors", () => {
    expect(() => partitions.daily({ start: "01/02/2025" })).toThrow("partitions.daily: start `01/02/2025` is not a daily key like `2025-01-31`");
    expect(() => partitions.daily({ start: "2025-01-05", end: "2025-01-01" })).toThrow(/end `2025-01-01` is before start/);
  });
});
