import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

export interface ReadinessChecks {
  database: () => Promise<void>;
  redis: () => Promise<void>;
  broker: () => boolean;
  /** The SIP server: `off` when calls are not configured (then it does not count against readiness). */
  sip?: () => Promise<'ok' | 'failing' | 'off'>;
}

const checkState = z.enum(['ok', 'failing']);

export const healthRoutes: FastifyPluginAsyncZod<{ checks: ReadinessChecks }> = async (app, { checks }) => {
  app.get('/healthz', { schema: { tags: ['operations'], summary: 'Process alive', response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Database, Redis, device broker and SIP server ready',
        response: {
          200: z.object({ status: z.enum(['ready', 'not-ready']), checks: z.object({ database: checkState, redis: checkState, broker: checkState, sip: z.enum(['ok', 'failing', 'off']) }) }),
          503: z.object({ status: z.enum(['ready', 'not-ready']), checks: z.object({ database: checkState, redis: checkState, broker: checkState, sip: z.enum(['ok', 'failing', 'off']) }) }),
        },
      },
    },
    async (_request, reply) => {
      let state: 'ok' | 'failing' | 'off' = 'failing';
      const within = (p: Promise<void>) => Promise.race([p, new Promise<void>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref())]);
      const [database, redis] = await Promise.all(
        [checks.database, checks.redis].map((c) =>
          within(c()).then(
            () => 'ok' as const,
            () => 'failing' as const,
          ),
        ),
      );
      const broker = checks.broker() ? ('ok' as const) : ('failing' as const);
      const sip = checks.sip ? await within(checks.sip().then((s) => void (state = s))).then(() => state, () => 'failing' as const) : ('off' as const);
      const ready = database === 'ok' && redis === 'ok' && broker === 'ok' && sip !== 'failing';
      return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', checks: { database: database!, redis: redis!, broker, sip } });
    },
  );
};
