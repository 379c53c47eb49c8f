// What every WA Sentinel service is built on, the same way in all three: a logger, the
// PostgreSQL pool with the service's migrations applied, the API keys, the gRPC server (TLS or
// plaintext, grpc.health.v1, reflection, call metrics: grpc_server.h), the Prometheus exposer,
// the replica's name and the clock. docs/architecture.md "Service runtime" describes the shape
// every service follows:
//
//   App::Create(options, clock)  → ServiceRuntime::Create, then the service's own parts, then
//                                  ServiceRuntime::Serve (gRPC up, health SERVING)
//   App::Start()                 → the service's background work (restore, loops, dispatchers)
//   App::Shutdown(drain)         → ServiceRuntime::Shutdown: health NOT_SERVING, the service
//                                  drains its parts, the gRPC server stops
//
// Health (grpc.health.v1, docs/api.md "Health and readiness"): the service "" is readiness —
// SERVING while PostgreSQL answers the database watch, NOT_SERVING while it does not and from
// the start of Shutdown; the service "liveness" is SERVING from Serve until Shutdown, whatever
// the database does, so an orchestrator restarts a wedged process but not one waiting out a
// database outage.
//
// Threads: the database watch (PgProbe every `database_check_interval`, from Serve to
// Shutdown), the heap trim (process.h TrimFreeHeap every 10 s, from Serve to Shutdown), gRPC's
// server threads and the exposer's (civetweb). Every method is called from
// the composition root's thread (main, or a test's).
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/pg.h"

namespace spdlog {
class logger;
}

namespace wasentinel {

/// The settings every service has (README "Configuration": the rows shared by all three).
struct RuntimeOptions {
  /// gRPC address: "host:port", "[v6]:port" or "unix:/path"; port 0 picks a free one.
  std::string grpc_listen;
  /// Prometheus /metrics address ("host:port"; port 0 picks one; empty: no exposer).
  std::string metrics_listen;
  /// libpq URL or key=value string (WAS_DATABASE_URL). Required.
  std::string database_url;
  /// ApiKeys::FromConfig "NAME:SCOPE[:TENANT]:KEY,..." (WAS_API_KEYS); empty: no
  /// authentication (a warning at start-up).
  std::string api_keys;
  /// gRPC TLS: PEM certificate chain and key; with `tls_client_ca_file` clients must present a
  /// certificate signed by it (mTLS). All empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  /// This replica's name in leases, leader election and delivery claims; empty:
  /// DefaultReplicaId() ("<hostname>-<pid>").
  std::string replica_id;
  /// spdlog level name: trace … off.
  std::string log_level = "info";
  /// How often the database watch asks PostgreSQL whether it answers (readiness and the
  /// `wasentinel_database_up` gauge follow the answer).
  absl::Duration database_check_interval = absl::Seconds(2);
};

/// What differs between the services, fixed by each App (not configuration).
struct ServiceSpec {
  std::string name;                   ///< "session-service": the logger's and migrations' name
  std::vector<Migration> migrations;  ///< applied in order under an advisory lock (pg.h)
  int database_pool_size = 8;         ///< PostgreSQL connections this process holds at most
};

class ServiceRuntime {
 public:
  /// grpc.health.v1 service name of liveness ("" is readiness).
  static constexpr char kLivenessService[] = "liveness";

  /// Builds the runtime: the logger, the API keys (INVALID_ARGUMENT naming the bad entry), the
  /// gRPC server credentials (INVALID_ARGUMENT for unreadable TLS files), the pool
  /// (UNAVAILABLE when PostgreSQL cannot be reached), the migrations, and the exposer
  /// (UNAVAILABLE when its address cannot be bound). INVALID_ARGUMENT without a database URL.
  /// `clock`: the service's time, not owned; null: SystemClock::Get().
  static absl::StatusOr<std::unique_ptr<ServiceRuntime>> Create(ServiceSpec spec,
                                                                const RuntimeOptions& options,
                                                                Clock* clock = nullptr);
  /// Stops the gRPC server at once if Shutdown() did not.
  ~ServiceRuntime();

  /// Starts the gRPC server with `services` on `grpc_listen`, sets grpc.health SERVING (""
  /// and "liveness") and starts the database watch.
  /// `tune` may set builder options. UNAVAILABLE when the address cannot be bound.
  absl::Status Serve(const std::vector<grpc::Service*>& services,
                     const std::function<void(grpc::ServerBuilder&)>& tune = {});

  /// The ordered shutdown, once (later calls do nothing): the database watch stops, health
  /// NOT_SERVING, then
  /// `drain(deadline)` (the service stops its own parts, in its own order, by `deadline` =
  /// now + `drain_timeout`), then the gRPC server stops, cancelling calls still open at the
  /// deadline (at least 100 ms after the drain, so answers already computed go out), then
  /// `after_server(deadline)`: what must keep working while calls drain (alert-service's
  /// dispatchers deliver what the last calls raised).
  void Shutdown(
      absl::Duration drain_timeout, absl::FunctionRef<void(absl::Time deadline)> drain,
      absl::FunctionRef<void(absl::Time deadline)> after_server = [](absl::Time) {});
  /// Stops the gRPC server now (for a composition root's destructor after a failed Create).
  void StopServer();

  const std::shared_ptr<spdlog::logger>& log() const { return log_; }
  PgPool& pool() const { return *pool_; }
  const std::string& database_url() const { return options_.database_url; }
  const ApiKeys& keys() const { return keys_; }
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  const std::string& replica() const { return replica_; }
  Clock& clock() const { return *clock_; }
  /// The bound gRPC port (useful with ":0"); 0 before Serve().
  int grpc_port() const { return grpc_port_; }
  /// The bound metrics port; 0 without an exposer.
  int metrics_port() const;

 private:
  ServiceRuntime(ServiceSpec spec, RuntimeOptions options, ApiKeys keys)
      : spec_(std::move(spec)), options_(std::move(options)), keys_(std::move(keys)) {}
  // One round of the database watch: probe, then readiness and the gauges.
  void WatchDatabase();

  ServiceSpec spec_;
  RuntimeOptions options_;
  ApiKeys keys_;
  Clock* clock_ = nullptr;
  std::string replica_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  std::unique_ptr<PgPool> pool_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<PgProbe> probe_;
  prometheus::Gauge* database_up_ = nullptr;
  prometheus::Counter* connections_replaced_ = nullptr;
  int64_t replaced_reported_ = 0;
  bool database_reachable_ = true;
  absl::Mutex health_mu_;  // orders the watch's readiness changes before Shutdown's NOT_SERVING
  bool draining_ ABSL_GUARDED_BY(health_mu_) = false;
  absl::Time unreachable_since_;
  std::unique_ptr<PeriodicThread> database_watch_;
  prometheus::Counter* heap_trimmed_ = nullptr;
  std::unique_ptr<PeriodicThread> heap_trim_;
  int grpc_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace wasentinel
