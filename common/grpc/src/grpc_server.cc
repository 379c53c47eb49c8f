#include "wasentinel/common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/grpc_metrics.h"

namespace wasentinel {
namespace {

using grpc::experimental::InterceptionHookPoints;

// gRPC answers a request it cannot parse (a proto3 string field holding invalid UTF-8, a
// truncated message) with INTERNAL and no message, before any handler runs. That is the
// client's mistake, not the server's: it becomes INVALID_ARGUMENT saying so. A request that
// was parsed is never touched.
class UnparsableRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      parsed_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status st = methods->GetSendStatus();
      if (!parsed_ && st.error_code() == grpc::StatusCode::INTERNAL && st.error_message().empty()) {
        methods->ModifySendStatus(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "the request could not be parsed: a string field holds invalid UTF-8, "
                         "or the message is malformed"));
      }
    }
    methods->Proceed();
  }

 private:
  bool parsed_ = false;
};

class UnparsableRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new UnparsableRequestInterceptor();
  }
};

}  // namespace

grpc::ChannelArguments UpstreamChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kClientKeepalive)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kClientKeepalive / 2)));
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // an idle stream is pinged for ever
  return args;
}

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
  // Followers of the watch streams ping an idle stream to find a dead peer (kClientKeepalive):
  // allow pings that often while a call is open (gRPC's default answers them with GOAWAY).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kClientKeepalive / 2)));
  if (tune) tune(builder);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // In this order, so that the metrics count the status the client gets.
  interceptors.push_back(std::make_unique<UnparsableRequestInterceptorFactory>());
  interceptors.push_back(MakeGrpcMetricsInterceptor(registry));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  out.server = builder.BuildAndStart();
  if (!out.server || out.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", listen));
  }
  return out;
}

}  // namespace wasentinel
