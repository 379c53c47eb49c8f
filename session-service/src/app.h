// session-service's composition root: builds the runtime (common/grpc/include/wasentinel/common/
// service_runtime.h: pool, migrations, API keys, gRPC, metrics), the store, sealer, connection
// thread, session core and API from Options, and takes them down in the reverse order.
//
// Threads, and what runs on each:
//   connection thread   one io_context thread: every WhatsApp socket (wa::Connection), the
//                       session state machine (session/state_machine.h, which asserts it), the
//                       restore pacer, retry and ban timers
//   gRPC threads        the API's handlers (api/session_service.h): store reads, lease taking,
//                       then they wait on the connection thread (SessionManager)
//   readers (2)         GetSession's database reads when the session is not held here
//   lease keeper        renews leases every lease_ttl / 3 and claims orphans
//                       (session/lease_keeper.h)
//   transition writer   stores transitions in order, fenced by their lease
//                       (session/transition_writer.h)
//   event listener      LISTEN/NOTIFY: publishes stored events to watchers, wakes the lease
//                       keeper (session/event_listener.h)
//   version keeper      reads the WhatsApp Web version every 24 h and after a 405
//                       (session/version_keeper.h)
//   pruner, phone flusher  PeriodicThreads: old events pruned every 10 min; phone sightings
//                       stored every minute
// Clock: `clock` (Create) for transition times, ban ends and pruning; sockets and retries use
// the io_context's steady timers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "manager.h"
#include "messenger.h"
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
  /// Messages (sent and received) stored longer than this are pruned on the same schedule
  /// (README "Messages": 7 days); PENDING ones only once past their deadline.
  absl::Duration message_retention = absl::Hours(24 * 7);
  /// Sending: per-session rate limit, ack timeout (messenger.h).
  MessengerOptions messenger;
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
