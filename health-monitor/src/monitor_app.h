// health-monitor's composition root: the store, the clients of session-service and
// alert-service, the Monitor, its jobs, leader election, the event watcher, the gRPC API and
// the metrics, built from Options and taken down in reverse order.
//
// Threads: gRPC's; the leader loop (every `leader_poll`: lead or stand by); the runner (while
// leading: Settle() after events, second looks at dead sockets, the jobs when due); the event
// watcher (while leading). The Monitor is used under one mutex by all of them.
//
// The rhythm (README "Architecture" › "Health"): light 30 s, deep 5 min, 5 s while
// session-service is under 60 s old; backoff while it does not answer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "health/assessment.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/service_runtime.h"

namespace wasentinel::monitor {

struct Options {
  /// The settings every service has: addresses, database, API keys, TLS (with
  /// `upstream_ca_file` the same pair is the client certificate upstream), replica (its name in
  /// leader election), log level. Defaults: gRPC 0.0.0.0:7002, metrics 0.0.0.0:9102.
  RuntimeOptions runtime = {.grpc_listen = "0.0.0.0:7002", .metrics_listen = "0.0.0.0:9102"};
  /// session-service's gRPC address and the key the monitor calls it with (scopes read and
  /// operate).
  std::string session_service = "127.0.0.1:7001";
  std::string session_service_api_key;
  /// alert-service's gRPC address and key (scope operate). Empty address: alerts are only
  /// logged (a monitor without alert-service still classifies and recovers).
  std::string alert_service;
  std::string alert_service_api_key;
  /// PEM roots for TLS to session-service and alert-service; empty: plaintext.
  std::string upstream_ca_file;
  HealthPolicy policy;
  absl::Duration light_interval = absl::Seconds(30);
  absl::Duration deep_interval = absl::Minutes(5);
  /// The light check runs every `fast_interval` while session-service is younger than
  /// `fast_while_younger_than` (by default 5 s while it is under 60 s old).
  absl::Duration fast_interval = absl::Seconds(5);
  absl::Duration fast_while_younger_than = absl::Seconds(60);
  /// Light-check retries while session-service does not answer; the last step repeats.
  std::vector<absl::Duration> unreachable_backoff = {absl::Seconds(5), absl::Seconds(10),
                                                     absl::Seconds(30)};
  /// How often a standby tries to become the leader (and the leader checks it still is).
  absl::Duration leader_poll = absl::Seconds(2);
  /// The daily-counter-reset job prunes transitions, recoveries and resolved alerts older than
  /// this.
  absl::Duration history_retention = absl::Hours(24 * 90);
  /// Deadline of each call to session-service and alert-service (GetDeepHealth: 4 ×).
  absl::Duration call_timeout = absl::Seconds(10);
  /// Pauses before the event watch is resumed after it broke; the last step repeats.
  std::vector<absl::Duration> watch_pauses = {absl::Seconds(5), absl::Seconds(10),
                                              absl::Seconds(30)};
};

class App {
 public:
  /// Connects to PostgreSQL (UNAVAILABLE), applies the monitor's migrations, builds the clients
  /// (INVALID_ARGUMENT for unreadable TLS files or bad keys), starts the gRPC server
  /// (UNAVAILABLE when the address cannot be bound) and the metrics exposer. `clock`: the
  /// monitor's time (default: the system clock); not owned.
  static absl::StatusOr<std::unique_ptr<App>> Create(const Options& options,
                                                     Clock* clock = nullptr);
  ~App();

  /// Starts the leader loop: this replica leads as soon as the advisory lock is free.
  absl::Status Start();
  /// Health NOT_SERVING, stops checking and watching, gives the leadership up (a standby takes
  /// over at its next poll), and stops the gRPC server within `deadline`.
  void Shutdown(absl::Duration deadline);

  int grpc_port() const;
  /// The bound metrics port, 0 without an exposer.
  int metrics_port() const;
  /// Is this replica the leader now?
  bool leader() const;

  class Impl;

 private:
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::monitor
