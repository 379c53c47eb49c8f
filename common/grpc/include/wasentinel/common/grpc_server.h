// Starting a service's gRPC server the same way everywhere: the services, grpc.health.v1 (set
// SERVING once started), server reflection, the call metrics interceptor
// (wasentinel_grpc_calls_total / _in_flight), and requests that cannot be parsed (invalid UTF-8
// in a string field) answered INVALID_ARGUMENT instead of gRPC's bare INTERNAL.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wasentinel {

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  ///< the bound port (useful with ":0")
};

/// How often a client following a stream (alert-service's message feed, health-monitor's event
/// watcher) pings its channel; a server that does not answer within half of it ends the call
/// (UNAVAILABLE), so a vanished server or a dead network path is noticed on an idle stream.
/// Servers started here accept pings that often.
inline constexpr absl::Duration kClientKeepalive = absl::Seconds(20);
/// The arguments of a service's channel to another of ours: a restarted peer is reconnected
/// quickly (after 0.5 s, then at most 5 s apart), and kClientKeepalive.
grpc::ChannelArguments UpstreamChannelArguments();

/// Builds and starts the server on `listen`. `tune` may set builder options. UNAVAILABLE when
/// the address cannot be bound.
absl::StatusOr<StartedServer> StartGrpcServer(
    const std::string& listen, std::shared_ptr<grpc::ServerCredentials> credentials,
    const std::vector<grpc::Service*>& services, prometheus::Registry& registry,
    const std::function<void(grpc::ServerBuilder&)>& tune = {});

}  // namespace wasentinel
