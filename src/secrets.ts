import { UserError } from "./errors.js";

export const SECRET_BRAND = Symbol.for("floe.secret");

/** A reference to a secret, resolved when a step runs; the value never sits in a definition. */
export interface SecretRef {
  readonly [SECRET_BRAND]: true;
  readonly name: string;
}

/**
 * Names a secret to resolve at run time (from the environment variable of that name).
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
  const value = env[v.name];
  if (value === undefined || value === "") throw new UserError(`secret \`${v.name}\` is not set; export ${v.name}=… before running floe`);
  revealed().add(value);
  return value;
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
  return JSON.parse(redact(JSON.stringify(value))) as T;
}
