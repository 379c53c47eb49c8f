#include "wasentinel/common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/grpc_metrics.h"

namespace wasentinel {

absl::StatusOr<StartedServer> StartGrpcServer(
    const std::string& listen, std::shared_ptr<grpc::ServerCredentials> credentials,
    const std::vector<grpc::Service*>& services, prometheus::Registry& registry,
    const std::function<void(grpc::ServerBuilder&)>& tune) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  StartedServer out;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, std::move(credentials), &out.port);
  for (auto* s : services) builder.RegisterService(s);
  if (tune) tune(builder);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeGrpcMetricsInterceptor(registry));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  out.server = builder.BuildAndStart();
  if (!out.server || out.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", listen));
  }
  return out;
}

}  // namespace wasentinel
