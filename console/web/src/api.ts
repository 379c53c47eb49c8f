// The console's one API: the services' gRPC methods over gRPC-Web, with clients generated from
// protos/ (build.mjs), through the console process's bridge (or any gRPC-Web proxy).
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { AlertService } from './gen/wasentinel/alert/v1/alert_pb.js';
import { MonitorService } from './gen/wasentinel/monitor/v1/monitor_pb.js';
import { SessionService, type GetCallerResponse } from './gen/wasentinel/session/v1/session_pb.js';

export type SessionClient = Client<typeof SessionService>;

export interface Api {
  sessions: SessionClient;
  monitor: Client<typeof MonitorService>;
  alerts: Client<typeof AlertService>;
}

/// Where the API key lives: this tab's session storage (gone when the tab closes).
const KEY_ITEM = 'wa-sentinel.api-key';
export const keyStore = {
  get: (): string => sessionStorage.getItem(KEY_ITEM) ?? '',
  set: (key: string) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

/// gRPC-Web to `baseUrl`, sending the key `key()` answers as `x-api-key` on every call.
export function transportFor(baseUrl: string, key: () => string): Transport {
  const auth: Interceptor = (next) => async (req) => {
    const k = key();
    if (k) req.header.set('x-api-key', k);
    return next(req);
  };
  return createGrpcWebTransport({ baseUrl, interceptors: [auth], useBinaryFormat: true });
}

/// session-service alone: what the embeddable status components need (embed.ts), so their
/// bundle carries no other service's descriptors.
export function sessionClient(baseUrl: string, key: () => string): SessionClient {
  return createClient(SessionService, transportFor(baseUrl, key));
}

/// Clients of the three services at the console's own origin.
export function makeApi(key: () => string = keyStore.get): Api {
  const transport = transportFor(location.origin, key);
  return {
    sessions: createClient(SessionService, transport),
    monitor: createClient(MonitorService, transport),
    alerts: createClient(AlertService, transport),
  };
}

export type ServiceName = 'session-service' | 'health-monitor' | 'alert-service';

/// What went wrong with a call, for a person: the service, the gRPC code and the message.
export interface CallError {
  service: ServiceName;
  code: Code;
  codeName: string;
  message: string;
  /// The service did not answer (UNAVAILABLE, DEADLINE_EXCEEDED, or the network failed).
  unreachable: boolean;
  /// The key was refused (UNAUTHENTICATED): sign in again.
  unauthenticated: boolean;
}

export function describeError(service: ServiceName, e: unknown): CallError {
  const err = ConnectError.from(e);
  return {
    service,
    code: err.code,
    codeName: Code[err.code] ?? String(err.code),
    message: err.rawMessage,
    unreachable: err.code === Code.Unavailable || err.code === Code.DeadlineExceeded ||
        (err.code === Code.Unknown && /fetch|network/i.test(err.rawMessage)),
    unauthenticated: err.code === Code.Unauthenticated,
  };
}

export function isCancelled(e: unknown): boolean {
  return ConnectError.from(e).code === Code.Canceled;
}

/// The key's rights, as GetCaller tells them.
export interface Caller {
  keyName: string;
  scope: 'read' | 'operate' | 'admin';
  tenantId: string;
}

export const callerOf = (c: GetCallerResponse): Caller =>
  ({ keyName: c.keyName, scope: c.scope as Caller['scope'], tenantId: c.tenantId });

export const can = (caller: Caller | null, needed: Caller['scope']): boolean => {
  const rank = { read: 1, operate: 2, admin: 3 } as const;
  return caller !== null && rank[caller.scope] >= rank[needed];
};
