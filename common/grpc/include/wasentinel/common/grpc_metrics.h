// Prometheus metrics of a gRPC server, the same in every service:
//
//   wasentinel_grpc_calls_total{method,code}   counter: finished calls, by full method name
//                                               ("/wasentinel.session.v1.SessionService/GetSession")
//                                               and status code name ("OK", "NOT_FOUND", ...)
//   wasentinel_grpc_calls_in_flight{method}    gauge: calls started and not finished (streams
//                                               count while they are open: watch subscribers)
//
// Install with ServerBuilder::experimental().SetInterceptorCreators(...).
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

#include <memory>

namespace wasentinel {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    prometheus::Registry& registry);

}  // namespace wasentinel
