// The three services' gRPC stubs for the e2e drivers, the demo and the benchmarks, loaded from
// protos/ (PROTO_DIR) with grpc-js, and a unary caller that answers a promise.
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
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
