// Lossless JSON for Iceberg metadata: snapshot ids are 64-bit, and `JSON.parse` rounds integers
// beyond 2^53. Integers that do not fit a double exactly parse as bigint; bigints serialize as
// bare numbers.

/** A JSON value whose unsafe integers are bigints. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * Parses JSON text; integer literals outside ±(2^53−1) become bigint, all else as `JSON.parse`.
 *
 * @example
 * parseJson('{"id": 5276958600260276572}') // → { id: 5276958600260276572n }
 */
export function parseJson(text: string): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`invalid JSON at offset ${i}: ${what}`);
  };
  const ws = (): void => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const value = (): JsonValue => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: JsonObject = {};
      ws();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const key = str();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        out[key] = value();
        ws();
        const sep = text[i++];
        if (sep === "}") return out;
        if (sep !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const out: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") return out;
        if (sep !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m) {
      i += m[0].length;
      const n = Number(m[0]);
      return m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(n) ? BigInt(m[0]) : n;
    }
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    return fail("unexpected character");
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const result = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return result;
}

/**
 * Serializes like `JSON.stringify` (compact, or indented with `indent`), writing bigints as bare
 * integers; `undefined` object members are left out.
 *
 * @example
 * stringifyJson({ id: 5276958600260276572n }) // → '{"id":5276958600260276572}'
 */
export function stringifyJson(value: unknown, indent = 0): string {
  const walk = (v: unknown, pad: string): string => {
    if (typeof v === "bigint") return v.toString();
    if (v === null || typeof v !== "object") {
      const s = JSON.stringify(v);
      if (s === undefined) throw new TypeError(`cannot serialize ${typeof v} as JSON`);
      return s;
    }
    const inner = indent > 0 ? pad + " ".repeat(indent) : "";
    const nl = indent > 0 ? "\n" : "";
    const colon = indent > 0 ? ": " : ":";
    const parts = Array.isArray(v)
      ? v.map((x) => inner + walk(x, inner))
      : Object.entries(v)
          .filter(([, x]) => x !== undefined)
          .map(([k, x]) => `${inner}${JSON.stringify(k)}${colon}${walk(x, inner)}`);
    const [open, close] = Array.isArray(v) ? ["[", "]"] : ["{", "}"];
    return parts.length === 0 ? open + close : `${open}${nl}${parts.join(`,${nl}`)}${nl}${pad}${close}`;
  };
  return walk(value, "");
}
