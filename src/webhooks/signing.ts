import { createHmac, randomBytes } from 'node:crypto';

// Standard Webhooks (standardwebhooks.com): a secret is `whsec_` + base64 of its bytes; a message is signed
// as `v1,` + base64(HMAC-SHA256(secret bytes, `${id}.${timestamp}.${body}`)), several signatures
// separated by spaces (a rotation signs with the new and the old secret).

export const newSecret = (): string => `whsec_${randomBytes(24).toString('base64')}`;

export function sign(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** The three headers of a delivery attempt, signed now with every secret given. */
export function signedHeaders(secrets: string[], id: string, body: string, now: Date): Record<string, string> {
  const timestamp = Math.floor(now.getTime() / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': secrets.map((s) => sign(s, id, timestamp, body)).join(' '),
  };
}
