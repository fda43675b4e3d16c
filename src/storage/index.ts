import { didYouMean, UserError } from "../errors.js";
import type { SecretRef } from "../secrets.js";
import { localStorage } from "./local-storage.js";
import { s3Storage } from "./s3-storage.js";
import type { ObjectStorage } from "./types.js";

export type { ObjectInfo, ObjectStorage } from "./types.js";
export { localStorage, type LocalStorageOptions } from "./local-storage.js";
export { s3Storage, type S3StorageOptions } from "./s3-storage.js";
export { ObjectNotFoundError } from "./types.js";

/**
 * Where a source's objects live. `Secret` is how credentials are given: `string | SecretRef` in
 * a pipeline module, plain strings once resolved at run time ({@link ResolvedStorageConfig}).
 */
export type StorageConfig<Secret = string> =
  | { type: "local"; root: string }
  | {
      type: "s3";
      bucket: string;
      prefix?: string;
      endpoint?: string;
      region?: string;
      forcePathStyle?: boolean;
      credentials?: { accessKeyId: Secret; secretAccessKey: Secret; sessionToken?: Secret };
    };

/** A storage config with its credentials resolved to strings. */
export type ResolvedStorageConfig = StorageConfig<string>;

const FIELDS = {
  local: ["type", "root"],
  s3: ["type", "bucket", "prefix", "endpoint", "region", "forcePathStyle", "credentials"],
  credentials: ["accessKeyId", "secretAccessKey", "sessionToken"],
};

/**
 * Checks the shape of a storage config; a mistake is a {@link UserError} naming the field
 * (`<label>.bucket: …`). Credential values are never echoed.
 *
 * @example
 * checkStorageConfig({ type: "s3", bucket: "My_Bucket" }, "rawFiles `orders` storage");
 * // UserError: rawFiles `orders` storage.bucket: expected an S3 bucket name (3-63 of a-z 0-9 . -), got `My_Bucket`
 */
export function checkStorageConfig(config: unknown, label = "storage"): asserts config is ResolvedStorageConfig {
  const fail = (field: string, expected: string): never => {
    throw new UserError(`${label}${field}: ${expected}`);
  };
  if (typeof config !== "object" || config === null || Array.isArray(config)) fail("", 'expected { type: "local", root } or { type: "s3", bucket, … }');
  const c = config as Record<string, unknown>;
  if (c.type !== "local" && c.type !== "s3") fail(".type", `expected "local" or "s3", got \`${String(c.type)}\``);
  const known = c.type === "local" ? FIELDS.local : FIELDS.s3;
  for (const k of Object.keys(c)) if (!known.includes(k)) fail(`.${k}`, `unknown field for ${String(c.type)} storage${didYouMean(k, known)}`);
  const optionalString = (field: string): void => {
    if (c[field] !== undefined && typeof c[field] !== "string") fail(`.${field}`, "expected a string");
  };
  if (c.type === "local") {
    if (typeof c.root !== "string" || c.root === "") fail(".root", "expected a folder path");
    return;
  }
  const bucket = c.bucket;
  if (typeof bucket === "string" && bucket.includes("/")) fail(".bucket", `expected a bucket name, got \`${bucket}\`; put the path after the bucket in prefix`);
  if (typeof bucket !== "string" || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) fail(".bucket", `expected an S3 bucket name (3-63 of a-z 0-9 . -), got \`${String(bucket)}\``);
  optionalString("prefix");
  optionalString("region");
  optionalString("endpoint");
  if (typeof c.endpoint === "string") {
    if (c.endpoint.includes("@")) fail(".endpoint", "remove user:password@ from the URL and give credentials instead"); // not echoed
    if (!URL.canParse(c.endpoint) || !/^https?:$/.test(new URL(c.endpoint).protocol)) fail(".endpoint", `expected an http(s):// URL, got \`${c.endpoint}\``);
  }
  if (c.forcePathStyle !== undefined && typeof c.forcePathStyle !== "boolean") fail(".forcePathStyle", "expected true or false");
  const creds = c.credentials;
  if (creds === undefined) return;
  if (typeof creds !== "object" || creds === null || Array.isArray(creds)) fail(".credentials", "expected { accessKeyId, secretAccessKey, sessionToken? }");
  const cr = creds as Record<string, unknown>;
  for (const k of Object.keys(cr)) if (!FIELDS.credentials.includes(k)) fail(`.credentials.${k}`, `unknown field${didYouMean(k, FIELDS.credentials)}`);
  for (const k of ["accessKeyId", "secretAccessKey"]) if (typeof cr[k] !== "string" || cr[k] === "") fail(`.credentials.${k}`, "expected a non-empty string");
  if (cr.sessionToken !== undefined && typeof cr.sessionToken !== "string") fail(".credentials.sessionToken", "expected a string");
}

/**
 * The storage a config names, after {@link checkStorageConfig}. A relative local root is
 * resolved against `baseDir` (the project folder).
 *
 * @example
 * const landing = createStorage({ type: "s3", bucket: "landing", prefix: "orders", credentials: { accessKeyId, secretAccessKey } }, projectDir);
 * const local = createStorage({ type: "local", root: "data/landing" }, projectDir); // <projectDir>/data/landing
 */
export function createStorage(config: ResolvedStorageConfig, baseDir: string, label = "storage"): ObjectStorage {
  checkStorageConfig(config, label);
  if (config.type === "local") return localStorage({ root: config.root, baseDir });
  const { type: _, ...options } = config;
  return s3Storage(options);
}

/** A named storage of floe.config.ts (`storage: { landing: { type: "s3", … } }`); credentials may be `secret()` references. */
export type StorageProfile = StorageConfig<string | SecretRef>;

const PROFILES = Symbol.for("floe.storageProfiles");

/**
 * Registers the storage profiles of the loaded project (floe.config.ts `storage`), so that a
 * pipeline module naming one (`rawFiles("raw", { storage: "landing", … })`) is checked when it
 * loads. `undefined` forgets them (no project loaded: names are checked when a step runs).
 *
 * @example
 * setStorageProfiles({ landing: { type: "local", root: "data/landing" } });
 */
export function setStorageProfiles(profiles: Readonly<Record<string, StorageProfile>> | undefined): void {
  const g = globalThis as { [PROFILES]?: Readonly<Record<string, StorageProfile>> };
  if (profiles === undefined) delete g[PROFILES];
  else g[PROFILES] = profiles;
}

/**
 * The profile a storage name refers to; an unknown name is a {@link UserError} with a
 * did-you-mean. Without `profiles` (and none registered by {@link setStorageProfiles}), the
 * name cannot be checked yet: undefined.
 *
 * @example
 * storageProfile("landing", settings.storage, "rawFiles `raw_orders` storage"); // { type: "s3", bucket: "landing", … }
 */
export function storageProfile(
  name: string,
  profiles: Readonly<Record<string, StorageProfile>> | undefined = (globalThis as { [PROFILES]?: Readonly<Record<string, StorageProfile>> })[PROFILES],
  label = "storage",
): StorageProfile | undefined {
  if (name === "") throw new UserError(`${label}: expected a storage profile name or { type: "local", root } / { type: "s3", bucket, … }`);
  if (profiles === undefined) return undefined;
  const found = Object.hasOwn(profiles, name) ? profiles[name] : undefined;
  if (found !== undefined) return found;
  const names = Object.keys(profiles);
  throw new UserError(
    names.length === 0
      ? `${label}: unknown storage profile \`${name}\`; floe.config.ts defines none (add storage: { ${/^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name)}: { type: "local", root: "…" } })`
      : `${label}: unknown storage profile \`${name}\`${didYouMean(name, names) || `; floe.config.ts defines ${names.map((n) => `\`${n}\``).join(", ")}`}`,
  );
}
