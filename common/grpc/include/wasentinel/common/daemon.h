// The main() of a service: its flags, then one call.
//
//   WAS_DEFINE_RUNTIME_FLAGS("0.0.0.0:7001", "0.0.0.0:9101");
//   ABSL_FLAG(...);  // the service's own
//   int main(int argc, char** argv) {
//     return wasentinel::DaemonMain<session::App>(argc, argv, "session-service: ...",
//                                                 [](wasentinel::RuntimeOptions rt) { ... });
//   }
//
// DaemonMain parses the flags with their WAS_ environment fallbacks (config.h), blocks the stop
// signals before any thread starts, raises the descriptor limit, reads the runtime flags, asks
// the service for its Options, then App::Create → App::Start → waits for SIGTERM or SIGINT →
// App::Shutdown(--shutdown_timeout). Exit status: 0 after a clean shutdown; 2 for a bad flag or
// variable (config.h, one line naming it); 1 when Create or Start fails (one line
// "<service>: <status>").
#pragma once

#include <string_view>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/service_runtime.h"

ABSL_DECLARE_FLAG(std::string, grpc_listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, database_url);
ABSL_DECLARE_FLAG(std::string, api_keys);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, replica_id);
ABSL_DECLARE_FLAG(std::string, log_level);
ABSL_DECLARE_FLAG(absl::Duration, shutdown_timeout);

/// Defines the flags every service has (README "Configuration"), with the service's default
/// gRPC and metrics addresses. Once, at namespace scope, in the service's main.cc.
#define WAS_DEFINE_RUNTIME_FLAGS(grpc_default, metrics_default)                             \
  ABSL_FLAG(std::string, grpc_listen, grpc_default, "gRPC address [WAS_GRPC_LISTEN]");      \
  ABSL_FLAG(std::string, metrics_listen, metrics_default,                                   \
            "Prometheus /metrics address; empty disables [WAS_METRICS_LISTEN]");            \
  ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL [WAS_DATABASE_URL]");            \
  ABSL_FLAG(std::string, api_keys, "",                                                      \
            "API keys of this API, NAME:SCOPE[:TENANT]:KEY,... (scope read|operate|admin);" \
            " empty: no authentication [WAS_API_KEYS]");                                    \
  ABSL_FLAG(std::string, tls_cert, "",                                                      \
            "gRPC TLS certificate chain (PEM file); empty: plaintext [WAS_TLS_CERT]");      \
  ABSL_FLAG(std::string, tls_key, "", "gRPC TLS private key (PEM file) [WAS_TLS_KEY]");     \
  ABSL_FLAG(std::string, tls_client_ca, "",                                                 \
            "require client certificates signed by this CA (PEM file; mTLS)"                \
            " [WAS_TLS_CLIENT_CA]");                                                        \
  ABSL_FLAG(std::string, replica_id, "",                                                    \
            "this replica's name in leases, leader election and delivery claims; default"   \
            " hostname-pid [WAS_REPLICA_ID]");                                              \
  ABSL_FLAG(std::string, log_level, "info", "trace … off [WAS_LOG_LEVEL]");                 \
  ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(10),                            \
            "drain deadline on SIGTERM [WAS_SHUTDOWN_TIMEOUT]")

namespace wasentinel {
namespace daemon_internal {

/// Parses the flags (exit 2 on a bad one), turns mutex deadlock detection off, blocks the stop
/// signals and raises the descriptor limit. With Fail, also the start of a process that has none
/// of the runtime flags (the console: console/main.cc); both are in daemon_begin.cc, which
/// needs none of those flags defined.
void Begin(int argc, char** argv, std::string_view usage);
/// The runtime flags, checked (exit 2 naming a bad one).
RuntimeOptions RuntimeFlags();
/// --shutdown_timeout, checked.
absl::Duration ShutdownTimeout();
/// Prints "<program>: <what><status>" to standard error; answers 1.
int Fail(std::string_view what, const absl::Status& status);

}  // namespace daemon_internal

/// The whole life of a service process (see above). `read_options(RuntimeOptions)` reads the
/// service's own flags (exiting 2 on a bad one, config.h) into the Options that
/// `App::Create(const Options&)` takes; App also has `absl::Status Start()` and
/// `void Shutdown(absl::Duration)`.
template <class App, class ReadOptions>
int DaemonMain(int argc, char** argv, std::string_view usage, ReadOptions read_options) {
  daemon_internal::Begin(argc, argv, usage);
  const auto o = read_options(daemon_internal::RuntimeFlags());
  const absl::Duration drain = daemon_internal::ShutdownTimeout();
  auto app = App::Create(o);
  if (!app.ok()) return daemon_internal::Fail("", app.status());
  if (auto st = (*app)->Start(); !st.ok()) return daemon_internal::Fail("start-up failed: ", st);
  WaitForStopSignal();
  (*app)->Shutdown(drain);
  return 0;
}

}  // namespace wasentinel
