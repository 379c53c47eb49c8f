// session-service's composition root: builds the PostgreSQL pool, store, sealer, connection
// thread, manager and gRPC server from Options, and takes them down in reverse order.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "manager.h"
#include "session_service.h"
#include "version_keeper.h"

namespace wasentinel::session {

struct Options {
  std::string grpc_listen = "0.0.0.0:7001";
  /// Prometheus /metrics address ("host:port"; port 0 picks one; empty: no exposer).
  std::string metrics_listen = "0.0.0.0:9101";
  std::string database_url;     ///< libpq URL or key=value string (WAS_DATABASE_URL)
  std::string auth_state_keys;  ///< Sealer::FromConfig format (WAS_AUTH_STATE_KEY)
  /// ApiKeys::FromConfig format "NAME:SCOPE:KEY,..." (WAS_API_KEYS); empty: no authentication.
  std::string api_keys;
  /// gRPC TLS: PEM certificate chain and key; with `tls_client_ca` clients must present a
  /// certificate signed by it (mTLS). Empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  /// This replica's name in leases and deep health (default: hostname-pid).
  std::string replica_id;
  /// The gRPC address other replicas forward calls to (default: hostname and the bound port).
  std::string advertise_address;
  /// Re-seal every credential under the current key at start-up (key rotation without a call).
  bool reseal_on_start = false;
  int database_pool_size = 8;
  ManagerOptions manager;
  std::string log_level = "info";
  bool restore_on_start = true;
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
  static absl::StatusOr<std::unique_ptr<App>> Create(const Options& options);
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
