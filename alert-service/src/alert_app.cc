#include "alert_app.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/alert_service.h"
#include "delivery/dispatcher.h"
#include "delivery/metrics.h"
#include "outbox/pg_alert_store.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/metrics_exposer.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/sealing.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {

class App::Impl {
 public:
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgPool> pool;
  std::unique_ptr<PgAlertStore> store;
  std::unique_ptr<Sealer> sealer;
  std::unique_ptr<ApiKeys> keys;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<AlertMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<AlertServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool shut_down = false;
  std::unique_ptr<PeriodicThread> gauges;  // Housekeeping()
  absl::Duration reminder_interval;

  // Every 5 s: reminders when due (when on), and the outbox gauges.
  void Housekeeping() {
    const absl::Time now = absl::Now();
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
  }
  void StopGauges() {
    if (gauges) gauges->Stop();
  }

  ~Impl() {
    StopGauges();
    if (server) server->Shutdown(std::chrono::system_clock::now());
    if (dispatcher) dispatcher->Stop();
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() = default;

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->log = MakeLogger("alert-service", options.log_level);
  if (options.database_url.empty()) {
    return absl::InvalidArgumentError("no database URL (--database_url or WAS_DATABASE_URL)");
  }
  if (options.secret_keys.empty()) {
    return absl::InvalidArgumentError(
        "no key to seal webhook secrets with (--secret_key or WAS_SECRET_KEY)");
  }
  WAS_ASSIGN_OR_RETURN(auto sealer, Sealer::FromConfig(options.secret_keys));
  impl->sealer = std::make_unique<Sealer>(std::move(sealer));
  WAS_ASSIGN_OR_RETURN(auto keys, ApiKeys::FromConfig(options.api_keys));
  impl->keys = std::make_unique<ApiKeys>(std::move(keys));
  if (!impl->keys->enabled()) {
    impl->log->warn("no API keys configured (WAS_API_KEYS): every gRPC call is allowed");
  }
  if (options.allow_private_targets) {
    impl->log->warn("webhooks may go to private and loopback addresses (--allow_private_targets)");
  }
  WAS_ASSIGN_OR_RETURN(auto credentials,
                       GrpcServerCredentials(options.tls_cert_file, options.tls_key_file,
                                             options.tls_client_ca_file));
  const std::string replica = options.replica_id.empty() ? DefaultReplicaId() : options.replica_id;
  WAS_ASSIGN_OR_RETURN(impl->pool,
                       PgPool::Create(options.database_url, options.database_pool_size));
  WAS_RETURN_IF_ERROR(
      ApplyMigrations(*impl->pool, "alert-service", PgAlertStore::Migrations(), *impl->log));
  impl->store = std::make_unique<PgAlertStore>(*impl->pool);
  impl->metrics = std::make_unique<AlertMetrics>(*impl->registry);
  WAS_ASSIGN_OR_RETURN(impl->exposer,
                       ServeMetrics(options.metrics_listen, impl->registry, *impl->log));

  DispatcherOptions d;
  d.worker = replica;
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
  impl->dispatcher = std::make_unique<Dispatcher>(*impl->store, *impl->sealer, SystemClock::Get(),
                                                  d, impl->log, impl->metrics.get());

  AlertServiceOptions s;
  s.recipients = options.recipients;
  s.allow_private_targets = options.allow_private_targets;
  s.metrics = impl->metrics.get();
  impl->service = std::make_unique<AlertServiceImpl>(
      *impl->store, *impl->keys, SystemClock::Get(), *impl->sealer, s,
      [dispatcher = impl->dispatcher.get()] { dispatcher->Wake(); });

  WAS_ASSIGN_OR_RETURN(auto started, StartGrpcServer(options.grpc_listen, credentials,
                                                     {impl->service.get()}, *impl->registry));
  impl->server = std::move(started.server);
  impl->port = started.port;
  impl->dispatcher->Start();
  impl->reminder_interval = options.reminder_interval;
  impl->gauges = std::make_unique<PeriodicThread>(absl::Seconds(5),
                                                  [raw = impl.get()] { raw->Housekeeping(); });
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  impl->log->info("gRPC listening on port {}; replica {}; {} dispatchers", impl->port, replica,
                  options.dispatcher_threads);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

int App::grpc_port() const { return impl_->port; }

int App::metrics_port() const {
  return impl_->exposer ? impl_->exposer->GetListeningPorts().front() : 0;
}

void App::Shutdown(absl::Duration drain) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  const absl::Time deadline = absl::Now() + drain;
  impl_->log->info("shutting down (deadline {})", drain);
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(deadline));
  impl_->dispatcher->Stop();  // sends under way finish; claims not yet sent expire
  impl_->StopGauges();
  impl_->log->info("shut down");
}

}  // namespace wasentinel::alert
