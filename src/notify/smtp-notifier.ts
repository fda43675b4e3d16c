import type { Transporter } from "nodemailer";
import { resolveSecret, stringOrSecret, type SecretRef } from "../secrets.js";
import { NOTIFIER_BRAND, type Notification, type Notifier } from "./notifier.js";
import { stepId } from "../dag/plan.js";

export interface EmailOptions {
  /** SMTP server host. */
  host: string;
  /** Default 587 (465 with `secure`). */
  port?: number;
  /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
  secure?: boolean;
  user?: string;
  /** Use `secret("SMTP_PASSWORD")`. */
  password?: string | SecretRef;
  from: string;
  to: string | string[];
  /** Default `email`. */
  name?: string;
}

/**
 * Sends each notification as a plain-text email over SMTP. The connection is opened on the first
 * notification, reused, and closed when floe drains its notifications.
 *
 * @example
 * email({ host: "smtp.example.com", user: "floe", password: secret("SMTP_PASSWORD"), from: "floe@example.com", to: ["data@example.com"] })
 */
export function email(options: EmailOptions): Notifier {
  let transport: Promise<Transporter> | undefined;
  const open = (): Promise<Transporter> =>
    (transport ??= import("nodemailer").then(({ default: nodemailer }) =>
      nodemailer.createTransport({
        host: options.host,
        port: options.port ?? (options.secure ? 465 : 587),
        secure: options.secure ?? false,
        pool: true,
        maxConnections: 1,
        connectionTimeout: 5_000,
        greetingTimeout: 5_000,
        socketTimeout: 10_000,
        ...(options.user !== undefined ? { auth: { user: options.user, pass: options.password === undefined ? "" : resolveSecret(options.password) } } : {}),
      }),
    ));
  return {
    [NOTIFIER_BRAND]: true,
    name: options.name ?? "email",
    options,
    schema: (z) =>
      z.object({
        host: z.string().min(1),
        port: z.number().int().min(1).max(65535).optional(),
        secure: z.boolean().optional(),
        user: z.string().optional(),
        password: stringOrSecret(z).optional(),
        from: z.string().min(3),
        to: z.union([z.string().min(3), z.array(z.string().min(3)).min(1)]),
        name: z.string().min(1).optional(),
      }).strict().refine((o) => o.password === undefined || o.user !== undefined, { message: "password is given without user" }),
    async send(n, signal) {
      const t = await open();
      signal.throwIfAborted();
      await t.sendMail({ from: options.from, to: options.to, subject: `[floe] ${n.message}`, text: emailText(n) });
    },
    async close() {
      const t = transport;
      transport = undefined;
      if (t) (await t.catch(() => undefined))?.close();
    },
  };
}

/** The body: the message, then the details a person acts on. */
function emailText(n: Notification): string {
  const lines = [n.message, "", `event: ${n.event}`, `status: ${n.status}`];
  if (n.runId) lines.push(`run: ${n.runId}  (floe run ${n.runId.slice(0, 8)})`);
  if (n.backfillId) lines.push(`backfill: ${n.backfillId}`);
  if (n.pipelines.length > 0) lines.push(`pipelines: ${n.pipelines.join(", ")}`);
  for (const s of n.failedSteps) lines.push(`failed: ${stepId(s.asset, s.partition || null)}: ${s.error.split("\n")[0]}`);
  for (const c of n.checks ?? []) lines.push(`check ${c.name} (${c.severity}) on ${stepId(c.asset, c.partition || null)}: ${c.message}`);
  for (const c of n.counts ?? []) {
    const what = [c.failedFiles ? `${c.failedFiles} failed file(s)` : "", c.quarantinedRows ? `${c.quarantinedRows} quarantined row(s)${c.quarantine ? ` in ${c.quarantine}` : ""}` : ""].filter(Boolean).join(", ");
    lines.push(`${stepId(c.asset, c.partition || null)}: ${what}`);
  }
  lines.push("", `at ${n.at}`);
  return `${lines.join("\n")}\n`;
}
