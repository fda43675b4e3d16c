import type { ChannelModel, ConfirmChannel } from "amqplib";
import { resolveSecret, stringOrSecret, type SecretRef } from "../secrets.js";
import { NOTIFIER_BRAND, type Notifier } from "./notifier.js";

export interface AmqpOptions {
  /** `amqp://user:password@host:5672/vhost`; use `secret("AMQP_URL")` when it holds a password. */
  url: string | SecretRef;
  /** Publish to this exchange (it must exist) with `routingKey`… */
  exchange?: string;
  /** …or straight to this queue (it must exist). Exactly one of `exchange` and `queue`. */
  queue?: string;
  /** Routing key for `exchange`; `{event}` is replaced by the event name. Default `floe.{event}`. */
  routingKey?: string;
  /** Default `amqp`. */
  name?: string;
}

/**
 * Publishes each notification as a persistent JSON message to a RabbitMQ exchange or queue, and
 * waits for the broker's confirm. The connection is opened on the first notification, reused,
 * reopened after the broker drops it, and closed when floe drains its notifications.
 *
 * @example
 * amqp({ url: secret("AMQP_URL"), exchange: "ops", routingKey: "floe.{event}" })
 */
export function amqp(options: AmqpOptions): Notifier {
  let open: Promise<{ conn: ChannelModel; channel: ConfirmChannel }> | undefined;
  const connect = (): Promise<{ conn: ChannelModel; channel: ConfirmChannel }> =>
    (open ??= (async () => {
      const { connect } = await import("amqplib");
      const conn = await connect(resolveSecret(options.url), { timeout: 5_000 });
      // Without listeners a dropped connection would be an uncaught error; the next send reconnects.
      conn.on("error", () => undefined);
      conn.on("close", () => (open = undefined));
      try {
        const channel = await conn.createConfirmChannel();
        channel.on("error", () => undefined);
        channel.on("close", () => {
          open = undefined;
          void conn.close().catch(() => undefined);
        });
        if (options.exchange !== undefined) await channel.checkExchange(options.exchange);
        else await channel.checkQueue(options.queue!);
        return { conn, channel };
      } catch (e) {
        await conn.close().catch(() => undefined);
        throw e;
      }
    })().catch((e: unknown) => {
      open = undefined;
      throw e;
    }));
  return {
    [NOTIFIER_BRAND]: true,
    name: options.name ?? "amqp",
    options,
    schema: (z) =>
      z.object({
        url: stringOrSecret(z),
        exchange: z.string().optional(),
        queue: z.string().min(1).optional(),
        routingKey: z.string().optional(),
        name: z.string().min(1).optional(),
      }).strict().refine((o) => (o.exchange === undefined) !== (o.queue === undefined), { message: "give exactly one of exchange and queue" }),
    async send(n, signal) {
      const { channel } = await connect();
      signal.throwIfAborted();
      const body = Buffer.from(JSON.stringify(n));
      const props = { contentType: "application/json", persistent: true, type: n.event, timestamp: Math.floor(Date.now() / 1000) };
      await new Promise<void>((resolve, reject) => {
        const done = (err: unknown): void => (err ? reject(err instanceof Error ? err : new Error(`broker rejected the message: ${String(err)}`)) : resolve());
        if (options.exchange !== undefined) channel.publish(options.exchange, (options.routingKey ?? "floe.{event}").replaceAll("{event}", n.event), body, props, done);
        else channel.sendToQueue(options.queue!, body, props, done);
      });
    },
    async close() {
      const o = open;
      open = undefined;
      const c = o && (await o.catch(() => undefined));
      await c?.conn.close().catch(() => undefined);
    },
  };
}
