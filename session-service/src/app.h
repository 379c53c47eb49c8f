// session-service's composition root: builds the PostgreSQL pool, store, sealer, connection
// thread, manager and gRPC server from Options, and takes them down in reverse order.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "manager.h"
#include "session_service.h"
#include "version_keeper.h"
#include "wasentinel/common/service_runtime.h"

namespace wasentinel::session {

struct Options {
  /// The settings every service has: addresses, database, API keys, TLS, replica, log level.
  /// Defaults: gRPC 0.0.0.0:7001, metrics 0.0.0.0:9101.
  RuntimeOptions runtime = {.grpc_listen = "0.0.0.0:7001", .metrics_listen = "0.0.0.0:9101"};
  std::string auth_state_keys;  ///< Sealer::FromConfig format (WAS_AUTH_STATE_KEY)
  /// The gRPC address other replicas forward calls to (default: hostname and the bound port).
  std::string advertise_address;
  /// Re-seal every credential under the current key at start-up (key rotation without a call).
  bool reseal_on_start = false;
  ManagerOptions manager;
  /// Events older than this are pruned, in small batches, every `event_prune_interval`
  /// (README "Configuration": 30 days).
  absl::Duration event_retention = absl::Hours(24 * 30);
  absl::Duration event_prune_interval = absl::Minutes(10);
  /// How often the phones' sightings (phone_last_seen_at) are written, in one statement.
  absl::Duration phone_seen_flush_interval = absl::Minutes(1);
  /// What WatchSessionEvents streams may cost: the events one may fall behind, the streams one
  /// API key may hold open.
  WatchLimits watch_limits;
  /// The WhatsApp Web version announced at login: `auto` (read from WhatsApp Web) or fixed.
  VersionOptions wa_version;
};

class App {
 public:
  /// Connects to PostgreSQL (UNAVAILABLE), applies migrations, checks the sealing keys against
  /// the stored credentials (FAILED_PRECONDITION naming a key id that is missing or wrong),
  /// starts the gRPC server (UNAVAILABLE when the address cannot be bound).
  /// `clock`: the service's time (not owned; default the system clock).
  static absl::StatusOr<std::unique_ptr<App>> Create(const Options& options,
                                                     Clock* clock = nullptr);
  ~App();

  /// Restores the sessions to keep connected (start-up restore).
  absl::Status Start();
  /// Health NOT_SERVING, stop taking calls, close every session cleanly within `deadline`,
  /// write their DISCONNECTED/SHUTDOWN, end watch streams.
  void Shutdown(absl::Duration deadline);

  /// The bound gRPC port (useful with ":0").
  int grpc_port() const;
  /// The bound metrics port, 0 without an exposer.
  int metrics_port() const;

  class Impl;

 private:
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::session
