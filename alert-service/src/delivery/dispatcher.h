// Dispatchers: threads that claim due deliveries from the outbox (DeliveryStore::Claim,
// outbox/delivery_store.h; PgAlertStore claims with SKIP LOCKED, so replicas share it), send
// them, and record each attempt.
//
// Seams: the dispatcher depends on interfaces only — DeliveryStore for the outbox,
// WebhookNotifier (webhook.h) and EmailNotifier (email.h) for sending — so its logic runs in
// tests without PostgreSQL or sockets (alert-service/test/dispatcher_fake_test.cc). Its own
// threads (Start) send through CurlWebhookSender and CurlEmailSender, one of each per thread.
//
// Webhooks (webhook.h): 2xx is SENT; 5xx, 429 (honouring Retry-After), timeouts and network
// errors are retried after the backoff step of the attempt (jittered ±20 %), the last attempt
// ending DEAD (the dead letter); any other status is DEAD at once, since repeating it would not
// change the answer. The webhook-id is "msg_<delivery id>", the same on every retry, so a
// receiver can drop duplicates (a dispatcher killed mid-send leaves its claim to expire; the
// delivery is sent again: at least once). The body is {"type", "timestamp", "data": the alert};
// during a secret rotation's grace period it carries both signatures.
//
// E-mail (email.h): rendered from the templates and sent through SMTP; an SMTP 5xx for the
// recipient or message is DEAD at once, anything else is retried like a webhook.
//
// Rate limits (per replica): webhooks per endpoint per second, e-mails per address per hour.
// Over a limit a delivery waits its turn (kDefer) without spending an attempt.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "delivery/email.h"
#include "delivery/metrics.h"
#include "delivery/webhook.h"
#include "outbox/delivery_store.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/sealing.h"

namespace spdlog {
class logger;
}

namespace wasentinel::alert {

struct DispatcherOptions {
  std::string worker;  ///< this replica's name; each claim is "<worker>#<n>"
  int threads = 4;
  int batch = 16;                           ///< deliveries claimed at once per thread
  absl::Duration lease = absl::Minutes(1);  ///< a claim's life; longer than a send's timeout
  absl::Duration poll = absl::Seconds(1);   ///< the wait when nothing is due (Wake() cuts it)
  absl::Duration webhook_timeout = absl::Seconds(10);
  bool allow_private_targets = false;
  std::string webhook_ca_file;  ///< PEM roots for https receivers; empty: the system's
  /// E-mail (url empty: e-mail deliveries become dead letters saying e-mail is off).
  SmtpOptions smtp;
  EmailTemplates templates = EmailTemplates::Builtin();
  /// Webhooks per second to one endpoint when the endpoint does not set its own
  /// rate_limit_per_second (0: no limit); bursts up to one second's worth. Beyond, deliveries
  /// wait their turn (not an attempt). Per replica.
  double webhook_rate_per_second = 50;
  /// E-mails to one address per hour at most (0: no limit); beyond, they wait their turn.
  int emails_per_recipient_per_hour = 20;
  /// The wait before attempt 2, 3, …; attempts = steps + 1, then DEAD.
  std::vector<absl::Duration> backoff = {absl::Seconds(10), absl::Seconds(30), absl::Minutes(2),
                                         absl::Minutes(10), absl::Minutes(30), absl::Hours(1),
                                         absl::Hours(3)};
};

class Dispatcher {
 public:
  /// `store`, `sealer` (opens the endpoints' sealed secrets), `clock`: not owned, outlive the
  /// dispatcher; `store` is called from every dispatcher thread at once. `metrics`: optional,
  /// not owned.
  Dispatcher(DeliveryStore& store, const Sealer& sealer, Clock& clock, DispatcherOptions options,
             std::shared_ptr<spdlog::logger> log, AlertMetrics* metrics = nullptr);
  ~Dispatcher();

  /// Starts options.threads threads, each with a CurlWebhookSender and (when options.smtp.url is
  /// set) a CurlEmailSender of its own, calling RunOnce until Stop.
  void Start();
  /// Stops claiming; sends under way finish (their claims would expire otherwise).
  void Stop();
  /// Something was written to the outbox: look now rather than at the next poll.
  void Wake();

  /// One round on the calling thread: claims up to options.batch due deliveries, sends each
  /// through `webhooks` or `email`, records each result (DeliveryStore::Complete). Answers how
  /// many were claimed (0 also when claiming failed, logged). `email`: null when e-mail is off
  /// (e-mail deliveries become dead letters saying so). Tests drive it with a fake clock and
  /// fake notifiers.
  int RunOnce(WebhookNotifier& webhooks, EmailNotifier* email = nullptr);

  /// The outcome of a webhook answer on attempt `attempt` (1-based).
  AttemptResult Judge(const WebhookResponse& r, int attempt);

 private:
  AttemptResult SendWebhook(WebhookNotifier& sender, const ClaimedDelivery& c);
  AttemptResult SendEmail(EmailNotifier* sender, const ClaimedDelivery& c);
  // Retry after the backoff step of `attempt` (at least `floor`), or dead after the last.
  AttemptResult RetryOrDead(std::string error, int attempt, absl::Duration floor);
  void Loop();

  DeliveryStore& store_;
  const Sealer& sealer_;
  Clock& clock_;
  const DispatcherOptions options_;
  const Backoff backoff_;  // options_.backoff, ±20 %, then the dead letter
  std::shared_ptr<spdlog::logger> log_;
  AlertMetrics* metrics_;
  // Numbers this replica's claims: "<worker>#<n>" is each claim's fencing token.
  std::atomic<uint64_t> claims_{0};
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wakes_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
  // E-mails sent per recipient in the last hour (the per-recipient rate limit).
  absl::flat_hash_map<std::string, std::deque<absl::Time>> sent_to_ ABSL_GUARDED_BY(mu_);
  // Token buckets of the webhook endpoints: tokens and when they were counted.
  struct Bucket {
    double tokens = -1;  // < 0: full (first use)
    absl::Time at;
  };
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  // When the endpoint may take the next webhook (now when it may at once); takes the token.
  absl::Time TakeToken(const std::string& endpoint, double rate, absl::Time now);
  std::vector<std::thread> threads_;
};

/// The JSON body of a delivery: {"type", "timestamp", "data": {alert fields, "kind"}}.
std::string WebhookBody(const v1::Alert& alert, v1::Delivery::Kind kind, absl::Time now);
/// The JSON body of a message event: {"type", "timestamp", "data": `data`, the JSON the message
/// feed wrote (feed/message_feed.h, MessageEventData)}; nullopt when `data` is not JSON.
std::optional<std::string> MessageWebhookBody(const std::string& type, std::string_view data,
                                              absl::Time now);

}  // namespace wasentinel::alert
