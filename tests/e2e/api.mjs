// What the e2e drivers, the demo and the benchmarks share: the three services' gRPC stubs,
// loaded from protos/ (PROTO_DIR) with grpc-js, a unary caller that answers a promise, and a
// webhook receiver that verifies signatures.
import { createServer } from 'node:http';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { Webhook } from 'standardwebhooks';
import { requiredEnv } from '../interop/harness.mjs';

const load = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(file, {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
}));
export const { SessionService } = load('wasentinel/session/v1/session.proto').wasentinel.session.v1;
export const { MonitorService } = load('wasentinel/monitor/v1/monitor.proto').wasentinel.monitor.v1;
export const { AlertService } = load('wasentinel/alert/v1/alert.proto').wasentinel.alert.v1;

/// call(method, request) → the response, or a rejection with the gRPC error; each call has a
/// deadline of `timeoutMs`.
export const unary = (client, timeoutMs = 10000) => (method, req = {}) => new Promise((resolve, reject) =>
  client[method](req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))));

/// A webhook receiver on loopback that verifies each delivery's Standard Webhooks signature
/// with the standardwebhooks package (an implementation we did not write) and answers 204.
/// `onHook({ id, type, data, verified, headers, body, at })` sees every delivery as received.
/// Answers { url(path), trust(secret), close() }; deliveries before trust() are not verified.
/// trust() may be called for several endpoints' secrets: a delivery verifies under any of them.
export async function startWebhookReceiver(onHook) {
  const verifiers = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let verified = false;
      for (const verifier of verifiers) {
        try { verifier.verify(body, req.headers); verified = true; break; } catch { /* reported as verified: false */ }
      }
      const { type, data } = JSON.parse(body);
      onHook({ id: req.headers['webhook-id'], type, data, verified, headers: req.headers, body, at: Date.now() });
      res.writeHead(204).end();
    });
  });
  const port = await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
  return {
    url: (path = '/hooks/wa-sentinel') => `http://127.0.0.1:${port}${path}`,
    trust: (secret) => { verifiers.push(new Webhook(secret)); },
    close: () => server.close(),
  };
}
