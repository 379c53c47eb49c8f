// The console process put together: the gRPC-Web bridge to the three services, the HTTP server
// in front of it (http_server.h) and the Prometheus exposer. README "Console" lists its flags.
#pragma once

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc_bridge.h"
#include "http_server.h"

namespace spdlog {
class logger;
}

namespace wasentinel::console {

struct ConsoleOptions {
  ServerOptions http;
  /// Prometheus /metrics address ("host:port"; empty: none).
  std::string metrics_listen;
  /// The services' gRPC addresses ("host:port", "unix:/path"); an empty one is not bridged and
  /// its calls answer UNIMPLEMENTED.
  std::string session_service;
  std::string monitor_service;
  std::string alert_service;
  /// TLS to the services: their roots (PEM file; empty: plaintext), and optionally the
  /// console's own client certificate and key (mTLS).
  std::string upstream_ca_file;
  std::string upstream_cert_file;
  std::string upstream_key_file;
  std::string log_level = "info";
};

class ConsoleApp {
 public:
  /// Connects (lazily) to the services and starts serving. INVALID_ARGUMENT for unreadable TLS
  /// files, UNAVAILABLE when an address cannot be bound.
  static absl::StatusOr<std::unique_ptr<ConsoleApp>> Create(const ConsoleOptions& options);
  ~ConsoleApp();

  /// Stops serving: calls still open are cancelled and given up to `drain` to end.
  void Shutdown(absl::Duration drain);

  int http_port() const { return server_->port(); }
  /// 0 without an exposer.
  int metrics_port() const;

 private:
  ConsoleApp() = default;

  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<GrpcBridge> bridge_;
  std::unique_ptr<ConsoleServer> server_;
};

}  // namespace wasentinel::console
