import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';

// npm run webhook-receiver -- --secret whsec_… [--port 9000]: a webhook receiver for trying webhooks out. It
// verifies each request with the Standard Webhooks library, keeps each webhook-id once, prints the event.

const { values: args } = parseArgs({ options: { secret: { type: 'string', multiple: true }, port: { type: 'string', default: '9000' }, host: { type: 'string', default: '127.0.0.1' } } });
const secrets = args.secret ?? [];
if (!secrets.length) throw new Error('give --secret whsec_… (the endpoint\'s secret; twice during a rotation)');
const seen = new Set<string>();
createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
    const ok = secrets.some((s) => {
      try {
        new Webhook(s).verify(body, headers);
        return true;
      } catch {
        return false;
      }
    });
    if (!ok) {
      console.log(`REJECTED ${headers['webhook-id']}: the signature does not verify`);
      return void res.writeHead(400).end('bad signature');
    }
    const event = JSON.parse(body) as { type: string; data: unknown };
    const again = seen.has(headers['webhook-id']);
    seen.add(headers['webhook-id']);
    console.log(`${again ? 'again   ' : 'verified'} ${headers['webhook-id']}  ${event.type}  ${JSON.stringify(event.data)}`);
    res.writeHead(200).end('ok');
  });
}).listen(Number(args.port), args.host, () => console.log(`receiver on http://${args.host}:${args.port}/ (Standard Webhooks, ${secrets.length} secret(s))`));
