import { createHmac } from "node:crypto";
import type { z as Z } from "zod";
import { isSecretRef, resolveSecret, stringOrSecret, type SecretRef } from "../secrets.js";
import { NOTIFIER_BRAND, type Notifier } from "./notifier.js";

/**
 * POSTs each notification as JSON. With `secret`, the body is signed: header
 * `x-floe-signature: sha256=<hex HMAC-SHA256 of the body>`. A header's value may be a
 * `secret()` reference: resolved when floe starts, and redacted wherever floe writes.
 *
 * @example
 * webhook({ url: "https://ops.example.com/floe", secret: secret("FLOE_WEBHOOK_SECRET"), headers: { authorization: secret("OPS_AUTH") } })
 */
export function webhook(options: { url: string | SecretRef; secret?: string | SecretRef; name?: string; headers?: Record<string, string | SecretRef> }): Notifier {
  return {
    [NOTIFIER_BRAND]: true,
    name: options.name ?? "webhook",
    options,
    schema: (z) =>
      z.object({
        url: httpUrl(z),
        secret: stringOrSecret(z).optional(),
        name: z.string().min(1).optional(),
        headers: z
          .record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), stringOrSecret(z), { error: (iss) => (iss.code === "invalid_key" ? "expected an HTTP header name" : undefined) })
          .optional(),
      }).strict(),
    async send(n, signal) {
      const body = JSON.stringify(n);
      const headers: Record<string, string> = { "content-type": "application/json" };
      for (const [k, v] of Object.entries(options.headers ?? {})) headers[k] = resolveSecret(v);
      if (options.secret !== undefined) {
        headers["x-floe-signature"] = `sha256=${createHmac("sha256", resolveSecret(options.secret)).update(body).digest("hex")}`;
      }
      const res = await fetch(resolveSecret(options.url), { method: "POST", body, headers, signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
  };
}

/**
 * Posts `{ text }` to a Slack-compatible incoming webhook.
 *
 * @example
 * slack({ url: secret("SLACK_WEBHOOK_URL") })
 */
export function slack(options: { url: string | SecretRef; name?: string }): Notifier {
  return {
    [NOTIFIER_BRAND]: true,
    name: options.name ?? "slack",
    options,
    schema: (z) => z.object({ url: httpUrl(z), name: z.string().min(1).optional() }).strict(),
    async send(n, signal) {
      const icon = n.event === "run_succeeded" ? ":white_check_mark:" : n.event === "run_canceled" ? ":no_entry_sign:" : n.event === "run_failed" || n.event === "backfill_finished" ? ":x:" : ":warning:";
      const res = await fetch(resolveSecret(options.url), { method: "POST", body: JSON.stringify({ text: `${icon} ${n.message}` }), headers: { "content-type": "application/json" }, signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
  };
}

/** An http(s) URL, or a secret holding one (checked when it resolves). */
function httpUrl(z: typeof Z): Z.ZodType<string | SecretRef> {
  return z.custom<string | SecretRef>((v) => isSecretRef(v) || (typeof v === "string" && URL.canParse(v) && /^https?:$/.test(new URL(v).protocol)), {
    message: 'expected an http(s) URL or secret("NAME")',
  });
}
