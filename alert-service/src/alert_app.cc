#include "alert_app.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/alert_service.h"
#include "delivery/dispatcher.h"
#include "delivery/metrics.h"
#include "feed/message_feed.h"
#include "outbox/pg_alert_store.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/sealing.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {

class App::Impl {
 public:
  std::unique_ptr<ServiceRuntime> rt;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgAlertStore> store;
  std::unique_ptr<Sealer> sealer;
  std::unique_ptr<AlertMetrics> metrics;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<AlertServiceImpl> service;
  std::unique_ptr<MessageFeed> feed;             // null: message webhooks off
  std::unique_ptr<PeriodicThread> housekeeping;  // Housekeeping()
  absl::Duration reminder_interval;
  absl::Duration message_delivery_retention;

  // Every 5 s: reminders when due (when on), and the outbox gauges.
  void Housekeeping() {
    const absl::Time now = rt->clock().Now();
    if (reminder_interval > absl::ZeroDuration()) {
      auto reminded = store->Remind(reminder_interval, now);
      if (!reminded.ok()) {
        log->warn("reminders: {}", reminded.status());
      } else if (*reminded > 0) {
        log->info("reminded {} critical alerts still open", *reminded);
        dispatcher->Wake();
      }
    }
    auto stats = store->DeliveryStats(now, now);
    if (stats.ok()) {
      metrics->Outbox(stats->outbox_depth(), FromProto(stats->oldest_pending_age()));
    }
    if (feed) metrics->Following(feed->following());
    if (auto pruned = store->PruneMessageDeliveries(now - message_delivery_retention);
        !pruned.ok()) {
      log->warn("pruning message deliveries: {}", pruned.status());
    }
  }
  void StopHousekeeping() {
    if (housekeeping) housekeeping->Stop();
  }

  // Also after a failed Create, with later members still null.
  ~Impl() {
    StopHousekeeping();
    if (feed) feed->Stop();
    if (rt) rt->StopServer();
    if (dispatcher) dispatcher->Stop();
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() = default;

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options, Clock* clock) {
  auto impl = std::make_unique<Impl>();
  if (options.secret_keys.empty()) {
    return absl::InvalidArgumentError(
        "no key to seal webhook secrets with (--secret_key or WAS_SECRET_KEY)");
  }
  WAS_ASSIGN_OR_RETURN(auto sealer, Sealer::FromConfig(options.secret_keys));
  impl->sealer = std::make_unique<Sealer>(std::move(sealer));
  WAS_ASSIGN_OR_RETURN(impl->rt,
                       ServiceRuntime::Create({"alert-service", PgAlertStore::Migrations(), 8},
                                              options.runtime, clock));
  ServiceRuntime& rt = *impl->rt;
  impl->log = rt.log();
  if (options.allow_private_targets) {
    impl->log->warn("webhooks may go to private and loopback addresses (--allow_private_targets)");
  }
  impl->store = std::make_unique<PgAlertStore>(rt.pool());
  impl->metrics = std::make_unique<AlertMetrics>(*rt.registry());

  DispatcherOptions d;
  d.worker = rt.replica();
  d.threads = options.dispatcher_threads;
  d.webhook_timeout = options.webhook_timeout;
  d.lease = options.claim_lease > absl::ZeroDuration()
                ? std::max(options.claim_lease, options.webhook_timeout + absl::Seconds(1))
                : std::max(absl::Minutes(1), options.webhook_timeout * 3);
  d.allow_private_targets = options.allow_private_targets;
  d.webhook_ca_file = options.webhook_ca_file;
  d.backoff = options.backoff;
  d.smtp = options.smtp;
  d.emails_per_recipient_per_hour = options.emails_per_recipient_per_hour;
  d.webhook_rate_per_second = options.webhook_rate_per_second;
  if (!options.template_dir.empty()) {
    WAS_ASSIGN_OR_RETURN(d.templates, EmailTemplates::FromDir(options.template_dir));
  }
  if (options.smtp.url.empty()) {
    impl->log->warn("no SMTP server (--smtp_url): e-mail deliveries become dead letters");
  } else {
    impl->log->info("e-mail through {} as {}", RedactUrlCredentials(options.smtp.url),
                    options.smtp.from);
  }
  impl->dispatcher = std::make_unique<Dispatcher>(*impl->store, *impl->sealer, rt.clock(), d,
                                                  impl->log, impl->metrics.get());

  AlertServiceOptions s;
  s.recipients = options.recipients;
  s.allow_private_targets = options.allow_private_targets;
  s.metrics = impl->metrics.get();
  impl->service = std::make_unique<AlertServiceImpl>(
      *impl->store, rt.keys(), rt.clock(), *impl->sealer, s,
      [dispatcher = impl->dispatcher.get()] { dispatcher->Wake(); });
  impl->reminder_interval = options.reminder_interval;
  impl->message_delivery_retention = options.message_delivery_retention;
  if (options.session_service.empty()) {
    impl->log->info("message webhooks off (no --session_service)");
  } else {
    WAS_ASSIGN_OR_RETURN(auto upstream, GrpcChannelCredentials(options.upstream_ca_file,
                                                               options.runtime.tls_cert_file,
                                                               options.runtime.tls_key_file));
    MessageFeedOptions f;
    f.replica = rt.replica();
    f.api_key = options.session_service_api_key;
    f.lease = options.message_feed_lease;
    f.poll = std::min(absl::Seconds(5), options.message_feed_lease / 3);
    impl->feed = std::make_unique<MessageFeed>(
        *impl->store,
        grpc::CreateCustomChannel(options.session_service, upstream, UpstreamChannelArguments()),
        *impl->sealer, rt.clock(), f, impl->log,
        [dispatcher = impl->dispatcher.get()] { dispatcher->Wake(); }, impl->metrics.get());
    impl->log->info("message webhooks: following the messages of session-service at {}",
                    options.session_service);
  }
  WAS_RETURN_IF_ERROR(rt.Serve({impl->service.get()}));
  impl->log->info("{} dispatchers", options.dispatcher_threads);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

absl::Status App::Start() {
  impl_->dispatcher->Start();
  if (impl_->feed) impl_->feed->Start();
  impl_->housekeeping = std::make_unique<PeriodicThread>(
      absl::Seconds(5), [impl = impl_.get()] { impl->Housekeeping(); });
  return absl::OkStatus();
}

int App::grpc_port() const { return impl_->rt->grpc_port(); }

int App::metrics_port() const { return impl_->rt->metrics_port(); }

void App::Shutdown(absl::Duration drain) {
  Impl& i = *impl_;
  // The gRPC server stops first (within the deadline); the dispatchers keep delivering
  // meanwhile, so what the last calls raised still goes out from this replica.
  i.rt->Shutdown(
      drain, [](absl::Time) {},
      [&i](absl::Time) {
        i.StopHousekeeping();
        if (i.feed) i.feed->Stop();  // lets the feed go: a standby takes it at its next poll
        i.dispatcher->Stop();        // sends under way finish; claims not yet sent expire
      });
}

}  // namespace wasentinel::alert
