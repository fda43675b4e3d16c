import { UserError } from "../errors.js";

export const PARTITIONS_BRAND = Symbol.for("floe.partitions");

/**
 * A set of partition keys. Time partitions are calendar keys (`2025-01-01`, `2025-01-01T05`,
 * `2025-01`) whose last key is the last partition that has closed in the definition's timezone.
 */
export interface PartitionsDefinition {
  readonly [PARTITIONS_BRAND]: true;
  readonly type: "daily" | "hourly" | "monthly" | "static" | "multi";
  /** Two definitions with the same id have the same keys: an identity mapping between them holds. */
  readonly id: string;
  /** Every key, in order, up to the last closed time partition at `now`. */
  keys(now?: Date): string[];
  /** Why `key` is not a key of this definition, or undefined when it is. */
  invalidReason(key: string, now?: Date): string | undefined;
  /** The keys from `from` to `to`, both included. Throws a UserError naming a bad bound. */
  range(from: string, to: string, now?: Date): string[];
  /** Human description, e.g. `daily from 2025-01-01 (UTC)`. */
  describe(): string;
  /**
   * Time partitions only: the ordinals (see `keyOrdinal`) of the first and last key at `now`,
   * so ranges can be counted without listing keys. Last < first when none has closed yet.
   */
  bounds?(now?: Date): { first: number; last: number };
}

/**
 * A time key's position on its unit's axis: days, hours or months since 1970-01 (keys are
 * wall-clock calendar keys, so every position is a key). Undefined for a malformed key.
 *
 * @example
 * keyOrdinal("daily", "1970-01-02"); // 1
 */
export function keyOrdinal(unit: "daily" | "hourly" | "monthly", key: string): number | undefined {
  const t = parseKey(unit, key);
  if (t === undefined) return undefined;
  if (unit === "monthly") {
    const d = new Date(t);
    return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  }
  return Math.round(t / (unit === "daily" ? 86_400_000 : 3_600_000));
}

/**
 * The time key at `ordinal` (the inverse of `keyOrdinal`).
 *
 * @example
 * keyAtOrdinal("hourly", 1); // "1970-01-01T01"
 */
export function keyAtOrdinal(unit: "daily" | "hourly" | "monthly", ordinal: number): string {
  if (unit === "monthly") return formatKey(unit, Date.UTC(1970, ordinal, 1));
  return formatKey(unit, ordinal * (unit === "daily" ? 86_400_000 : 3_600_000));
}

export function isPartitionsDefinition(v: unknown): v is PartitionsDefinition {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[PARTITIONS_BRAND] === true;
}

export interface TimeWindowOptions {
  /** First key, e.g. `2025-01-01` (daily), `2025-01-01T00` or `2025-01-01` (hourly), `2025-01` (monthly). */
  start: string;
  /** Last key, included. Default: the last partition that has closed. */
  end?: string;
  /** IANA timezone that decides when a partition closes (default UTC). */
  timezone?: string;
}

type Unit = "daily" | "hourly" | "monthly";

const FORMATS: Record<Unit, RegExp> = {
  daily: /^(\d{4})-(\d{2})-(\d{2})$/,
  hourly: /^(\d{4})-(\d{2})-(\d{2})T(\d{2})$/,
  monthly: /^(\d{4})-(\d{2})$/,
};
const EXAMPLES: Record<Unit, string> = { daily: "2025-01-31", hourly: "2025-01-31T05", monthly: "2025-01" };

/** Parses a key of `unit` to a UTC calendar instant (the key's start, as if in UTC). */
function parseKey(unit: Unit, key: string): number | undefined {
  const m = FORMATS[unit].exec(key);
  if (!m) return undefined;
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = unit === "monthly" ? 1 : Number(m[3]);
  const h = unit === "hourly" ? Number(m[4]) : 0;
  const t = Date.UTC(y, mo - 1, d, h);
  const date = new Date(t);
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || date.getUTCHours() !== h) {
    return undefined;
  }
  return t;
}

function formatKey(unit: Unit, t: number): string {
  const iso = new Date(t).toISOString();
  if (unit === "daily") return iso.slice(0, 10);
  if (unit === "monthly") return iso.slice(0, 7);
  return iso.slice(0, 13);
}

function next(unit: Unit, t: number): number {
  if (unit === "daily") return t + 86_400_000;
  if (unit === "hourly") return t + 3_600_000;
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** The wall-clock time at `now` in `timezone`, expressed as a UTC calendar instant. */
function wallClock(now: Date, timezone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: timezone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
  }).formatToParts(now);
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value);
  return Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"));
}

/** Throws a UserError unless `timezone` is an IANA timezone this Node knows. */
export function assertTimezone(timezone: string, where: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    throw new UserError(`${where}: unknown timezone \`${timezone}\` (use an IANA name such as \`UTC\` or \`Europe/Paris\`)`);
  }
}

function timeWindow(unit: Unit, options: TimeWindowOptions): PartitionsDefinition {
  const timezone = options.timezone ?? "UTC";
  assertTimezone(timezone, `partitions.${unit}`);
  // Hourly accepts a day as start: it means the day's first hour.
  const startKey = unit === "hourly" && FORMATS.daily.test(options.start) ? `${options.start}T00` : options.start;
  const start = parseKey(unit, startKey);
  if (start === undefined) {
    throw new UserError(`partitions.${unit}: start \`${options.start}\` is not a ${unit} key like \`${EXAMPLES[unit]}\``);
  }
  let end: number | undefined;
  if (options.end !== undefined) {
    end = parseKey(unit, options.end);
    if (end === undefined) throw new UserError(`partitions.${unit}: end \`${options.end}\` is not a ${unit} key like \`${EXAMPLES[unit]}\``);
    if (end < start) throw new UserError(`partitions.${unit}: end \`${options.end}\` is before start \`${options.start}\``);
  }
  /** The last key at `now`: the partition before the one that is open now, capped by `end`. */
  const last = (now: Date): number => {
    const wall = wallClock(now, timezone);
    let openStart: number;
    if (unit === "daily") openStart = wall - (wall % 86_400_000);
    else if (unit === "hourly") openStart = wall - (wall % 3_600_000);
    else {
      const d = new Date(wall);
      openStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    }
    // the last closed partition starts one unit before the open one
    let closed = start;
    if (unit === "monthly") {
      const d = new Date(openStart);
      closed = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1);
    } else closed = openStart - (unit === "daily" ? 86_400_000 : 3_600_000);
    return end === undefined ? closed : Math.min(closed, end);
  };
  const describe = `${unit} from ${formatKey(unit, start)}${end === undefined ? "" : ` to ${formatKey(unit, end)}`} (${timezone})`;
  const invalidReason = (key: string, now = new Date()): string | undefined => {
    const t = parseKey(unit, key);
    if (t === undefined) return `\`${key}\` is not a ${unit} partition key like \`${EXAMPLES[unit]}\``;
    if (t < start) return `partition \`${key}\` is before the first partition \`${formatKey(unit, start)}\``;
    const l = last(now);
    if (t > l) {
      return l < start
        ? `partition \`${key}\` has not closed yet (no ${unit} partition has closed since ${formatKey(unit, start)})`
        : `partition \`${key}\` is after the last partition \`${formatKey(unit, l)}\``;
    }
    return undefined;
  };
  const between = (a: number, b: number): string[] => {
    const out: string[] = [];
    for (let t = a; t <= b; t = next(unit, t)) out.push(formatKey(unit, t));
    return out;
  };
  return {
    [PARTITIONS_BRAND]: true,
    type: unit,
    id: `${unit}:${formatKey(unit, start)}:${end === undefined ? "" : formatKey(unit, end)}:${timezone}`,
    keys: (now = new Date()) => between(start, last(now)),
    invalidReason,
    range(from, to, now = new Date()) {
      for (const k of [from, to]) {
        const why = invalidReason(k, now);
        if (why) throw new UserError(why);
      }
      const a = parseKey(unit, from)!;
      const b = parseKey(unit, to)!;
      if (a > b) throw new UserError(`--from \`${from}\` is after --to \`${to}\``);
      return between(a, b);
    },
    describe: () => describe,
    bounds: (now = new Date()) => ({ first: keyOrdinal(unit, formatKey(unit, start))!, last: keyOrdinal(unit, formatKey(unit, last(now)))! }),
  };
}

function staticPartitions(keys: readonly string[]): PartitionsDefinition {
  if (keys.length === 0) throw new UserError("partitions.static: give at least one key");
  const seen = new Set<string>();
  for (const k of keys) {
    if (typeof k !== "string" || !/^[A-Za-z0-9_.:-]+$/.test(k)) {
      throw new UserError(`partitions.static: key \`${String(k)}\` may hold only letters, digits and _ . : -`);
    }
    if (seen.has(k)) throw new UserError(`partitions.static: key \`${k}\` is listed twice`);
    seen.add(k);
  }
  const list = [...keys];
  const invalidReason = (key: string): string | undefined =>
    seen.has(key) ? undefined : `\`${key}\` is not one of the partitions ${list.map((k) => `\`${k}\``).join(", ")}`;
  return {
    [PARTITIONS_BRAND]: true,
    type: "static",
    id: `static:${list.join(",")}`,
    keys: () => [...list],
    invalidReason,
    range(from, to) {
      for (const k of [from, to]) {
        const why = invalidReason(k);
        if (why) throw new UserError(why);
      }
      const a = list.indexOf(from);
      const b = list.indexOf(to);
      if (a > b) throw new UserError(`--from \`${from}\` comes after --to \`${to}\` in the partition order`);
      return list.slice(a, b + 1);
    },
    describe: () => `static ${list.join(", ")}`,
  };
}

/** Separator between the dimension values of a multi-partition key: `2025-01-01|eu`. */
export const MULTI_SEPARATOR = "|";

function multiPartitions(dimensions: Record<string, PartitionsDefinition>): PartitionsDefinition {
  const names = Object.keys(dimensions);
  if (names.length < 2) throw new UserError("partitions.multi: give at least two dimensions");
  const dims = names.map((n) => {
    const d = dimensions[n]!;
    if (!isPartitionsDefinition(d) || d.type === "multi") {
      throw new UserError(`partitions.multi: dimension \`${n}\` must be a daily, hourly, monthly or static partitions definition`);
    }
    return d;
  });
  const product = (lists: string[][]): string[] =>
    lists.reduce<string[]>((acc, list) => acc.flatMap((prefix) => list.map((k) => (prefix === "" ? k : `${prefix}${MULTI_SEPARATOR}${k}`))), [""]);
  const split = (key: string): string[] | string => {
    const parts = key.split(MULTI_SEPARATOR);
    if (parts.length !== dims.length) {
      return `\`${key}\` is not a partition key of ${names.join(" × ")}; write one value per dimension joined by \`${MULTI_SEPARATOR}\``;
    }
    return parts;
  };
  const invalidReason = (key: string, now?: Date): string | undefined => {
    const parts = split(key);
    if (typeof parts === "string") return parts;
    for (let i = 0; i < dims.length; i++) {
      const why = dims[i]!.invalidReason(parts[i]!, now);
      if (why) return `${names[i]}: ${why}`;
    }
    return undefined;
  };
  return {
    [PARTITIONS_BRAND]: true,
    type: "multi",
    id: `multi(${names.map((n, i) => `${n}=${dims[i]!.id}`).join(";")})`,
    keys: (now) => product(dims.map((d) => d.keys(now))),
    invalidReason,
    range(from, to, now) {
      for (const k of [from, to]) {
        const why = invalidReason(k, now);
        if (why) throw new UserError(why);
      }
      const a = split(from) as string[];
      const b = split(to) as string[];
      return product(dims.map((d, i) => d.range(a[i]!, b[i]!, now)));
    },
    describe: () => `multi ${names.map((n, i) => `${n}: ${dims[i]!.describe()}`).join(" × ")}`,
  };
}

/**
 * Partition definitions.
 *
 * @example
 * const daily = partitions.daily({ start: "2025-01-01" });           // "2025-01-01", "2025-01-02", …
 * const regions = partitions.static(["eu", "us"]);
 * const both = partitions.multi({ day: daily, region: regions });    // "2025-01-01|eu", …
 */
export const partitions = {
  daily: (options: TimeWindowOptions) => timeWindow("daily", options),
  hourly: (options: TimeWindowOptions) => timeWindow("hourly", options),
  monthly: (options: TimeWindowOptions) => timeWindow("monthly", options),
  static: (keys: readonly string[]) => staticPartitions(keys),
  multi: (dimensions: Record<string, PartitionsDefinition>) => multiPartitions(dimensions),
};
