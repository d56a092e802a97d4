import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { MetricsEndpoint } from '../../metrics/registry.js';

/** `GET /metrics`: Prometheus text, without authentication (keep the port off the public network or filter the path). */
export const metricsRoutes: FastifyPluginAsyncZod<{ metrics: MetricsEndpoint }> = async (app, { metrics }) => {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics of every process of the deployment',
        description:
          'Prometheus text format (text/plain; version=0.0.4), without authentication. Every series carries the labels role and instance (hostname:pid); ' +
          'the metric names are listed in the README. Without Redis it shows the answering process alone.',
        hide: false,
        security: [],
        response: { 200: z.string() },
      },
    },
    async (_request, reply) => {
      const { contentType, body } = await metrics.render();
      return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
    },
  );
};
