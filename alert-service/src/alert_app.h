// alert-service's composition root: the runtime (common/grpc/include/wasentinel/common/
// service_runtime.h), the store, the sealer of webhook secrets, the dispatchers and the gRPC
// API, built from Options and taken down in the reverse order.
//
// Threads, and what runs on each:
//   gRPC threads     the API (api/alert_service.h): alerts into the outbox, endpoints, silences
//   dispatchers (N)  --dispatchers threads claiming and sending due deliveries
//                    (delivery/dispatcher.h)
//   message feed     following session-service's messages into webhook events, on the replica
//                    holding the feed (feed/message_feed.h), when --session_service is set
//   housekeeping     a PeriodicThread every 5 s: reminders when due, the outbox gauges,
//                    pruning delivered message events
// Clock: `clock` (Create) for due times, backoff, reminders and rate limits.
//
// README "Architecture" › "Alerts" says what it does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "delivery/email.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/service_runtime.h"

namespace wasentinel::alert {

struct Options {
  /// The settings every service has: addresses, database, API keys, TLS, replica (its name in
  /// delivery claims), log level. Defaults: gRPC 0.0.0.0:7003, metrics 0.0.0.0:9103.
  RuntimeOptions runtime = {.grpc_listen = "0.0.0.0:7003", .metrics_listen = "0.0.0.0:9103"};
  /// Sealing keys of webhook secrets, Sealer::FromConfig format (WAS_SECRET_KEY).
  std::string secret_keys;
  /// E-mail addresses told of every alert besides each session's owner.
  std::vector<std::string> recipients;
  /// Webhooks may go to http:// and private or loopback addresses.
  bool allow_private_targets = false;
  /// PEM roots for https webhook receivers; empty: the system's.
  std::string webhook_ca_file;
  /// E-mail through SMTP (url empty: e-mail off).
  SmtpOptions smtp;
  /// alert.txt.mustache and alert.html.mustache from here instead of the built-in ones.
  std::string template_dir;
  int emails_per_recipient_per_hour = 20;
  /// Re-notify critical alerts still open after this long, and again every such interval
  /// (0: off, the default).
  absl::Duration reminder_interval = absl::ZeroDuration();
  /// Webhooks per second per endpoint unless the endpoint sets its own (0: no limit).
  double webhook_rate_per_second = 50;
  /// session-service's address, to send its messages as webhooks (message.received,
  /// message.status); empty: message webhooks are off.
  std::string session_service;
  /// session-service key with the messages:read scope.
  std::string session_service_api_key;
  /// CA (PEM) for TLS to session-service, presenting runtime's certificate; empty: plaintext.
  std::string upstream_ca_file;
  /// How long the replica following the messages holds the feed without renewing it: a standby
  /// takes over this long after the follower died.
  absl::Duration message_feed_lease = absl::Seconds(30);
  /// Message deliveries sent or dead are deleted after this long.
  absl::Duration message_delivery_retention = absl::Hours(24 * 7);
  int dispatcher_threads = 4;
  absl::Duration webhook_timeout = absl::Seconds(10);
  /// How long a dispatcher's claim on a delivery lasts: after a crash, its deliveries are sent
  /// again once their claims expire. Zero: 3 × webhook_timeout, at least a minute.
  absl::Duration claim_lease = absl::ZeroDuration();
  /// The waits before attempt 2, 3, …; the attempt after the last step is the last one.
  std::vector<absl::Duration> backoff = {absl::Seconds(10), absl::Seconds(30), absl::Minutes(2),
                                         absl::Minutes(10), absl::Minutes(30), absl::Hours(1),
                                         absl::Hours(3)};
};

class App {
 public:
  /// Connects to PostgreSQL (UNAVAILABLE), applies alert-service's migrations, starts the gRPC
  /// server (UNAVAILABLE when the address cannot be bound) and the metrics exposer.
  /// INVALID_ARGUMENT for bad keys or TLS files. `clock`: the service's time (not owned;
  /// default the system clock).
  static absl::StatusOr<std::unique_ptr<App>> Create(const Options& options,
                                                     Clock* clock = nullptr);
  ~App();

  /// Starts the dispatchers and the housekeeping (reminders, outbox gauges every 5 s).
  absl::Status Start();

  /// Health NOT_SERVING, stops taking calls (those open at `deadline` are cancelled) while the
  /// dispatchers go on delivering, then stops the dispatchers (sends under way finish; what is
  /// not sent stays in the outbox for the other replicas or the next start).
  void Shutdown(absl::Duration deadline);

  int grpc_port() const;
  int metrics_port() const;

  class Impl;

 private:
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::alert
