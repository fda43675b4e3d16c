/** A check's result as a step records it in `metadata.checks` (see duckdbTable). */
export interface CheckView {
  name: string;
  severity: "error" | "warn";
  passed: boolean;
  message: string;
}

/**
 * The check results a step's metadata holds, in order. Entries without a name are skipped; a
 * result without a severity is an `error` check, as a check is unless it says `warn`.
 *
 * @example
 * checksOf({ checks: [{ name: "unique(id)", passed: false, message: "2 duplicate values in id" }] });
 * // [{ name: "unique(id)", severity: "error", passed: false, message: "2 duplicate values in id" }]
 */
export function checksOf(metadata: Readonly<Record<string, unknown>> | undefined): CheckView[] {
  const list = metadata?.checks;
  if (!Array.isArray(list)) return [];
  return list.flatMap((c: unknown) => {
    const v = (typeof c === "object" && c !== null ? c : {}) as Record<string, unknown>;
    if (typeof v.name !== "string") return [];
    return [{ name: v.name, severity: v.severity === "warn" ? "warn" : "error", passed: v.passed === true, message: typeof v.message === "string" ? v.message : "" }];
  });
}
