import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RemoteDoors } from '../../doors/service.js';
import { macInput } from '../../mac-library/mac.js';
import { errorResponses } from '../errors.js';
import { idempotencyHeaders, requestContext } from '../idempotency.js';

const tags = ['doors'];

const openAnswer = z.object({
  outcome: z.enum(['opened', 'failed', 'pending']).describe('opened: the device confirmed; failed: it could not (job.error); pending (202): no answer yet, follow the job'),
  doorEventId: z.uuid().describe('the attempt in the door log'),
  job: z.object({
    id: z.uuid(),
    state: z.string(),
    expiresAt: z.string().describe('after this the door is not opened any more'),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
  }),
});

/** Opening a door from the cloud: the home screen's "Unlock" (seed 002 §5.4.1). */
export const doorRoutes: FastifyPluginAsyncZod<{ doors: RemoteDoors }> = async (app, { doors }) => {
  app.post(
    '/devices/:mac/relays/:relay/open',
    {
      config: { appAuth: true },
      bodyLimit: 1024,
      schema: {
        tags,
        summary: "Open a door: the device's relay opens now, or not at all",
        description:
          'For the installer and its sub-installers, a property manager of the device\'s site, and an app station for the doors its address book lists with door release ' +
          '(HTTP Basic with the SIP username and password of its registration; no Idempotency-Key for apps). The relay must be enabled with the access method `homepage`. ' +
          'Delivered at once as an urgent `open-door` command that expires after `OPEN_DOOR_EXPIRY_SECONDS` (10 s): 200 with the outcome when the device answered within ' +
          '`OPEN_DOOR_WAIT_MS` (3 s), else 202 with the job. 409 `device_offline` when the device is not connected; 403 `relay_not_remote` or `not_in_address_book`; ' +
          '404 for a device the caller cannot see, or `relay_not_found`. Every attempt the caller may make on the device, refused ones included, is in the door log.',
        params: z.strictObject({ mac: macInput, relay: z.coerce.number().int().min(1).max(8) }),
        headers: idempotencyHeaders,
        security: [{ bearer: [] }, { appBasic: [] }],
        response: { 200: openAnswer, 202: openAnswer, ...errorResponses(400, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { mac, relay } = request.params;
      const caller = request.appStation ? { app: request.appStation } : { principal: request.principal };
      const idempotency = request.appStation ? undefined : requestContext(request).idempotency;
      const { confirmed, answer } = await doors.open(caller, mac, relay, idempotency);
      return reply.status(confirmed ? 200 : 202).send(answer);
    },
  );
};
