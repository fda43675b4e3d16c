import { readFileSync } from "node:fs";
import type { z as Z } from "zod";
import { UserError } from "./errors.js";

export const SECRET_BRAND = Symbol.for("floe.secret");

/** A reference to a secret, resolved when a step runs; the value never sits in a definition. */
export interface SecretRef {
  readonly [SECRET_BRAND]: true;
  readonly name: string;
}

/**
 * Names a secret to resolve at run time: from the environment variable of that name, else from
 * the project's secrets file (`secretsFile` in floe.config.ts, or `FLOE_SECRETS_FILE`).
 *
 * @example
 * storage: { type: "s3", bucket: "landing", credentials: { accessKeyId: secret("LANDING_KEY_ID"), secretAccessKey: secret("LANDING_SECRET") } }
 */
export function secret(name: string): SecretRef {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UserError(`secret(\`${name}\`): a secret name is letters, digits and _`);
  return Object.freeze({ [SECRET_BRAND]: true as const, name });
}

export function isSecretRef(v: unknown): v is SecretRef {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[SECRET_BRAND] === true;
}

/**
 * The value of a secret or plain string.
 *
 * @example
 * resolveSecret(secret("API_TOKEN")); // process.env.API_TOKEN, or a UserError naming it
 */
export function resolveSecret(v: string | SecretRef, env: NodeJS.ProcessEnv = process.env): string {
  if (!isSecretRef(v)) return v;
  // The environment wins over the file: a deployment overrides one value without editing the file.
  const fromEnv = env[v.name];
  const file = secretsFile();
  const value = fromEnv !== undefined && fromEnv !== "" ? fromEnv : file?.values.get(v.name);
  if (value === undefined || value === "") {
    throw new UserError(
      file
        ? `secret \`${v.name}\` is not set: not in the environment, nor in the secrets file ${file.path}; export ${v.name}=… or add a line ${v.name}=… to the file`
        : `secret \`${v.name}\` is not set: not in the environment, and no secrets file is configured; export ${v.name}=… or add it to a secrets file (secretsFile in floe.config.ts, or FLOE_SECRETS_FILE)`,
    );
  }
  revealed().add(value);
  return value;
}

/**
 * Reads a secrets file for {@link resolveSecret}: dotenv-like lines `NAME=value` (`#` comments,
 * blank lines and a leading `export ` are allowed; a value in single or double quotes is taken
 * inside them, `\n` read as a newline in double quotes; no inline comments). A value, once
 * resolved, is redacted like one from the environment. A missing or malformed file is a UserError naming the file and line,
 * never the line's text. `undefined` forgets a file loaded before (a project without one).
 *
 * @example
 * loadSecretsFile("/etc/floe/secrets.env"); // then secret("SMTP_PASSWORD") resolves from it
 */
export function loadSecretsFile(path: string | undefined, origin = "secrets file"): void {
  if (path === undefined) {
    delete (globalThis as { [FILE]?: SecretsFile })[FILE]; // this project has none: forget an earlier one
    return;
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${origin} ${path} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? String(e)})`}`);
  }
  const values = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new UserError(`${path}:${i + 1}: expected NAME=value (a secrets file holds one secret per line)`);
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["\\n])/g, (_x, c: string) => (c === "n" ? "\n" : c));
    }
    values.set(m[1]!, value);
  });
  (globalThis as { [FILE]?: SecretsFile })[FILE] = { path, values };
}

interface SecretsFile {
  path: string;
  values: Map<string, string>;
}
const FILE = Symbol.for("floe.secretsFile");
function secretsFile(): SecretsFile | undefined {
  return (globalThis as { [FILE]?: SecretsFile })[FILE];
}

/** Secret values resolved in this process, shared by every copy of floe loaded in it. */
function revealed(): Set<string> {
  const g = globalThis as { [REVEALED]?: Set<string> };
  g[REVEALED] ??= new Set();
  return g[REVEALED];
}
const REVEALED = Symbol.for("floe.revealedSecrets");

/**
 * Replaces every secret value resolved in this process with `***`. floe passes everything it
 * writes through it: events, step and run errors, CLI output.
 *
 * @example
 * redact(`token ${resolveSecret(secret("API_TOKEN"))} rejected`); // "token *** rejected"
 */
export function redact(text: string): string {
  let out = text;
  for (const value of revealed()) if (value.length >= 4 && out.includes(value)) out = out.split(value).join("***");
  return out;
}

/** {@link redact} over every string inside a JSON-like value. */
export function redactDeep<T>(value: T): T {
  if (revealed().size === 0) return value;
  return redactValue(value) as T;
}

/** Strings (and keys) of plain objects and arrays, never the JSON text: a secret like `1234` cannot break a number. */
function redactValue(v: unknown): unknown {
  if (typeof v === "string") return redact(v);
  if (Array.isArray(v)) return v.map(redactValue);
  if (typeof v === "object" && v !== null && [Object.prototype, null].includes(Object.getPrototypeOf(v) as object | null)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [redact(k), redactValue(x)]));
  }
  return v;
}

/**
 * A config value given as text or as `secret("NAME")`, for an option schema.
 *
 * @example
 * schema: (z) => z.object({ password: stringOrSecret(z).optional() })
 */
export function stringOrSecret(z: typeof Z): Z.ZodType<string | SecretRef> {
  return z.custom<string | SecretRef>((v) => (typeof v === "string" && v !== "") || isSecretRef(v), { message: 'expected a string or secret("NAME")' });
}
