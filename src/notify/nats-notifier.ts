import type { NatsConnection } from "nats";
import { resolveSecret, stringOrSecret, type SecretRef } from "../secrets.js";
import { NOTIFIER_BRAND, type Notifier } from "./notifier.js";

export interface NatsOptions {
  /** `nats://host:4222`, or several. */
  servers: string | string[];
  /** Subject; `{event}` is replaced by the event name. Default `floe.{event}`. */
  subject?: string;
  user?: string;
  /** Use `secret("NATS_PASSWORD")`. */
  password?: string | SecretRef;
  /** Use `secret("NATS_TOKEN")`. */
  token?: string | SecretRef;
  /** Default `nats`. */
  name?: string;
}

/**
 * Publishes each notification as JSON on a NATS subject and flushes, so a send resolves once the
 * server has it. The connection is opened on the first notification, reused, and drained and
 * closed when floe drains its notifications.
 *
 * @example
 * nats({ servers: "nats://127.0.0.1:4222", subject: "ops.floe.{event}", token: secret("NATS_TOKEN") })
 */
export function nats(options: NatsOptions): Notifier {
  let open: Promise<NatsConnection> | undefined;
  const connect = (): Promise<NatsConnection> =>
    (open ??= (async () => {
      const { connect } = await import("nats");
      const nc = await connect({
        servers: options.servers,
        name: "floe",
        timeout: 5_000,
        // A send fails (and is retried by the dispatcher) rather than waiting on reconnects.
        maxReconnectAttempts: 2,
        ...(options.user !== undefined ? { user: options.user, pass: options.password === undefined ? "" : resolveSecret(options.password) } : {}),
        ...(options.token !== undefined ? { token: resolveSecret(options.token) } : {}),
      });
      void nc.closed().then(() => {
        if (open && current === nc) open = undefined;
      });
      current = nc;
      return nc;
    })().catch((e: unknown) => {
      open = undefined;
      throw e;
    }));
  let current: NatsConnection | undefined;
  return {
    [NOTIFIER_BRAND]: true,
    name: options.name ?? "nats",
    options,
    schema: (z) =>
      z.object({
        servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
        subject: z.string().min(1).optional(),
        user: z.string().optional(),
        password: stringOrSecret(z).optional(),
        token: stringOrSecret(z).optional(),
        name: z.string().min(1).optional(),
      }).strict().refine((o) => o.password === undefined || o.user !== undefined, { message: "password is given without user" }),
    async send(n, signal) {
      const nc = await connect();
      signal.throwIfAborted();
      nc.publish((options.subject ?? "floe.{event}").replaceAll("{event}", n.event), new TextEncoder().encode(JSON.stringify(n)));
      await nc.flush();
    },
    async close() {
      const o = open;
      open = undefined;
      current = undefined;
      const nc = o && (await o.catch(() => undefined));
      if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}
