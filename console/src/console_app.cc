#include "console_app.h"

#include <spdlog/spdlog.h>

#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/metrics_exposer.h"

namespace wasentinel::console {

absl::StatusOr<std::unique_ptr<ConsoleApp>> ConsoleApp::Create(const ConsoleOptions& options) {
  std::unique_ptr<ConsoleApp> app(new ConsoleApp());
  app->log_ = MakeLogger("console", options.log_level);
  auto credentials = GrpcChannelCredentials(options.upstream_ca_file, options.upstream_cert_file,
                                            options.upstream_key_file);
  if (!credentials.ok()) return credentials.status();

  grpc::ChannelArguments args;
  // A service that stops answering is noticed within a minute even while only a stream is open.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetMaxReceiveMessageSize(16 << 20);
  std::vector<Upstream> upstreams;
  auto add = [&](const std::string& name, const std::string& package, const std::string& target) {
    if (target.empty()) return;
    upstreams.push_back({name, package, grpc::CreateCustomChannel(target, *credentials, args)});
    app->log_->info("console: {} calls go to {}", package, target);
  };
  add("session-service", "wasentinel.session.v1", options.session_service);
  add("health-monitor", "wasentinel.monitor.v1", options.monitor_service);
  add("alert-service", "wasentinel.alert.v1", options.alert_service);
  app->bridge_ = std::make_unique<GrpcBridge>(std::move(upstreams));

  auto exposer = ServeMetrics(options.metrics_listen, app->registry_, *app->log_);
  if (!exposer.ok()) return exposer.status();
  app->exposer_ = std::move(*exposer);

  if (options.http.web_root.empty()) {
    app->log_->warn("console: no web app directory; serving the gRPC-Web bridge and probes only");
  }
  auto server = ConsoleServer::Start(options.http, *app->bridge_, *app->registry_, app->log_);
  if (!server.ok()) return server.status();
  app->server_ = std::move(*server);
  app->log_->info("console: serving {} on port {}", options.http.web_root, app->server_->port());
  return app;
}

ConsoleApp::~ConsoleApp() { Shutdown(absl::ZeroDuration()); }

void ConsoleApp::Shutdown(absl::Duration drain) {
  if (server_) server_->Stop(drain);
}

int ConsoleApp::metrics_port() const {
  return exposer_ && !exposer_->GetListeningPorts().empty() ? exposer_->GetListeningPorts().front()
                                                            : 0;
}

}  // namespace wasentinel::console
