#include "monitor_app.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/monitor_service.h"
#include "health/event_watcher.h"
#include "health/grpc_clients.h"
#include "health/jobs.h"
#include "health/leader.h"
#include "health/metrics.h"
#include "health/monitor.h"
#include "health/pg_health_store.h"
#include "health/rhythm.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/metrics_exposer.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::monitor {
namespace {

// Without alert-service the monitor still classifies and recovers; its alerts go to the log.
class LoggingAlertSink final : public AlertSink {
 public:
  explicit LoggingAlertSink(std::shared_ptr<spdlog::logger> log) : log_(std::move(log)) {}
  absl::Status Raise(const av1::RaiseAlertRequest& alert) override {
    log_->warn("ALERT {} [{}] {}: {}", alert.event_type(), av1::Severity_Name(alert.severity()),
               alert.dedup_key(), alert.summary());
    return absl::OkStatus();
  }
  absl::Status Resolve(const std::string& dedup_key, const std::string& note) override {
    log_->warn("ALERT RESOLVED {}: {}", dedup_key, note);
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<spdlog::logger> log_;
};

// How the runner waits between rounds while leading: Settle() runs this soon after events.
constexpr absl::Duration kRunnerTick = absl::Milliseconds(100);

}  // namespace

class App::Impl {
 public:
  Options options;
  Clock* clock = nullptr;
  std::string replica;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgPool> pool;
  std::unique_ptr<PgHealthStore> store;
  std::unique_ptr<ApiKeys> keys;
  std::shared_ptr<grpc::Channel> session_channel;
  std::unique_ptr<GrpcSessionSource> sessions;
  std::unique_ptr<AlertSink> alerts;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<MonitorMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  absl::Mutex monitor_mu;  // the Monitor: watcher, runner, jobs and the API take turns
  std::unique_ptr<Monitor> monitor;
  std::unique_ptr<JobScheduler> jobs;
  std::unique_ptr<LeaderElection> election;
  std::unique_ptr<EventWatcher> watcher;
  std::unique_ptr<MonitorServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  // The light check's rhythm, and what its last run saw (written by the run, read by the
  // schedule).
  std::unique_ptr<LightCheckRhythm> rhythm;
  std::atomic<bool> reachable{true};
  std::atomic<int64_t> uptime_ms{0};
  std::atomic<bool> leading{false};
  std::atomic<bool> events_waiting{false};
  absl::Mutex loop_mu;
  bool stop ABSL_GUARDED_BY(loop_mu) = false;
  std::string leader_name ABSL_GUARDED_BY(loop_mu);
  std::thread leader_loop;
  std::thread runner;
  bool shut_down = false;

  // Waits up to `d` for the stop flag; true when stopping.
  bool WaitStop(absl::Duration d) {
    absl::MutexLock lock(&loop_mu);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(loop_mu) { return stop; };
    return loop_mu.AwaitWithTimeout(absl::Condition(&stopping), d);
  }

  std::vector<JobSpec> Jobs() {
    std::vector<JobSpec> specs;
    const Options& o = options;
    specs.push_back(
        {"health-check-light",
         absl::StrCat("every ", absl::FormatDuration(o.light_interval), " (",
                      absl::FormatDuration(o.fast_interval), " while session-service is under ",
                      absl::FormatDuration(o.fast_while_younger_than), " old)"),
         [this](absl::Time now) {
           return now + rhythm->Next(reachable, absl::Milliseconds(uptime_ms.load()));
         },
         [this] {
           absl::MutexLock lock(&monitor_mu);
           v1::JobResult r = monitor->LightCheck();
           reachable = monitor->session_service_reachable();
           uptime_ms = absl::ToInt64Milliseconds(monitor->session_service_uptime());
           return r;
         },
         /*run_at_load=*/true});
    specs.push_back({"health-check-deep",
                     absl::StrCat("every ", absl::FormatDuration(o.deep_interval)),
                     [this](absl::Time now) { return now + options.deep_interval; },
                     [this] {
                       absl::MutexLock lock(&monitor_mu);
                       return monitor->DeepCheck();
                     },
                     /*run_at_load=*/true});
    specs.push_back({"daily-counter-reset", "daily at 00:00 UTC",
                     [](absl::Time now) { return NextDailyUtc(now, 0, 0); },
                     [this] {
                       absl::MutexLock lock(&monitor_mu);
                       return monitor->ResetDailyCounters(options.history_retention);
                     }});
    specs.push_back({"inactive-session-cleanup", "every 1h",
                     [](absl::Time now) { return now + absl::Hours(1); },
                     [this] {
                       absl::MutexLock lock(&monitor_mu);
                       return monitor->CleanupInactive();
                     }});
    return specs;
  }

  void Lead() {
    log->info("leading: loading the monitor's memory and watching session events");
    {
      absl::MutexLock lock(&monitor_mu);
      if (auto st = monitor->Load(); !st.ok()) {
        log->error("loading the monitor's memory: {}; standing down", st);
        election->Release();
        return;
      }
    }
    if (auto st = jobs->Load(); !st.ok()) log->warn("loading the jobs: {}", st);
    EventWatcher::Hooks hooks;
    hooks.cursor = [this]() -> int64_t {
      absl::MutexLock lock(&monitor_mu);
      return monitor->cursor();
    };
    hooks.on_event = [this](const session::v1::SessionEvent& e) {
      absl::MutexLock lock(&monitor_mu);
      monitor->OnEvent(e);
      events_waiting = true;
    };
    hooks.on_stream = [this](bool open) {
      if (open) log->info("watching session events");
    };
    watcher = std::make_unique<EventWatcher>(session_channel, options.session_service_api_key,
                                             std::move(hooks), log, options.watch_pauses);
    watcher->Start();
    leading = true;
    metrics->Leader(true);
  }

  // Gives the lead up; nothing to do when not leading (so ~Impl after a failed Create, with
  // half the members null, does nothing here).
  void StandDown() {
    if (!leading.exchange(false)) return;
    metrics->Leader(false);
    if (watcher) watcher->Stop();
    watcher.reset();
    absl::MutexLock lock(&monitor_mu);
    monitor->SaveCursor();
  }

  // Every `leader_poll`: take the lock when it is free, check a held one is still held.
  void LeaderLoop() {
    do {
      auto leader = election->TryAcquire();
      if (!leader.ok()) {
        log->warn("leader election: {}", leader.status());
      }
      const bool now_leader = leader.ok() && *leader;
      if (now_leader && !leading) Lead();
      if (!now_leader && leading) {
        log->warn("no longer the leader; standing by");
        StandDown();
      }
      auto name = election->Leader();
      absl::MutexLock lock(&loop_mu);
      if (name.ok()) leader_name = *name;
    } while (!WaitStop(options.leader_poll));
  }

  // While leading: Settle() once events came in, and the jobs when due.
  void RunLoop() {
    while (!WaitStop(kRunnerTick)) {
      if (!leading) continue;
      {
        absl::MutexLock lock(&monitor_mu);
        if (events_waiting.exchange(false)) monitor->Settle();
        monitor->RecheckDue();
      }
      if (jobs->NextDue() <= clock->Now()) jobs->RunDue();
    }
  }

  void StopLoops() {
    {
      absl::MutexLock lock(&loop_mu);
      stop = true;
    }
    if (leader_loop.joinable()) leader_loop.join();
    if (runner.joinable()) runner.join();
    StandDown();
  }

  ~Impl() {
    StopLoops();
    if (server) server->Shutdown(std::chrono::system_clock::now());
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() = default;

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options, Clock* clock) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = clock ? clock : &SystemClock::Get();
  impl->log = MakeLogger("health-monitor", options.log_level);
  if (options.database_url.empty()) {
    return absl::InvalidArgumentError("no database URL (--database_url or WAS_DATABASE_URL)");
  }
  if (options.session_service.empty()) {
    return absl::InvalidArgumentError("no session-service address (--session_service)");
  }
  impl->replica = options.replica_id.empty() ? DefaultReplicaId() : options.replica_id;
  WAS_ASSIGN_OR_RETURN(auto keys, ApiKeys::FromConfig(options.api_keys));
  impl->keys = std::make_unique<ApiKeys>(std::move(keys));
  if (!impl->keys->enabled()) {
    impl->log->warn("no API keys configured (WAS_API_KEYS): every gRPC call is allowed");
  }
  WAS_ASSIGN_OR_RETURN(auto server_credentials,
                       GrpcServerCredentials(options.tls_cert_file, options.tls_key_file,
                                             options.tls_client_ca_file));
  WAS_ASSIGN_OR_RETURN(auto upstream,
                       GrpcChannelCredentials(options.upstream_ca_file, options.tls_cert_file,
                                              options.tls_key_file));
  WAS_ASSIGN_OR_RETURN(impl->pool,
                       PgPool::Create(options.database_url, options.database_pool_size));
  WAS_RETURN_IF_ERROR(
      ApplyMigrations(*impl->pool, "health-monitor", PgHealthStore::Migrations(), *impl->log));
  impl->store = std::make_unique<PgHealthStore>(*impl->pool);

  grpc::ChannelArguments args;
  // Reconnect to a restarted session-service quickly; the light check's backoff paces alerts.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  impl->session_channel = grpc::CreateCustomChannel(options.session_service, upstream, args);
  impl->sessions = std::make_unique<GrpcSessionSource>(
      impl->session_channel, options.session_service_api_key, options.call_timeout);
  if (options.alert_service.empty()) {
    impl->log->warn("no alert-service (--alert_service): alerts are only logged");
    impl->alerts = std::make_unique<LoggingAlertSink>(impl->log);
  } else {
    impl->alerts = std::make_unique<GrpcAlertSink>(
        grpc::CreateCustomChannel(options.alert_service, upstream, args),
        options.alert_service_api_key, options.call_timeout);
  }

  impl->rhythm = std::make_unique<LightCheckRhythm>(options.light_interval, options.fast_interval,
                                                    options.fast_while_younger_than,
                                                    options.unreachable_backoff);
  impl->metrics = std::make_unique<MonitorMetrics>(*impl->registry);
  impl->monitor = std::make_unique<Monitor>(*impl->clock, *impl->store, *impl->sessions,
                                            *impl->alerts, options.policy, impl->log);
  impl->monitor->set_metrics(impl->metrics.get());
  impl->jobs = std::make_unique<JobScheduler>(
      *impl->clock, *impl->store, impl->Jobs(), impl->log,
      [metrics = impl->metrics.get()](const std::string& job, const v1::JobResult& r) {
        metrics->JobRun(job, r.error().empty());
      });
  impl->election = std::make_unique<LeaderElection>(options.database_url, impl->replica);

  WAS_ASSIGN_OR_RETURN(impl->exposer,
                       ServeMetrics(options.metrics_listen, impl->registry, *impl->log));

  Impl* raw = impl.get();
  MonitorRuntime rt;
  rt.store = impl->store.get();
  rt.mu = &impl->monitor_mu;
  rt.monitor = impl->monitor.get();
  rt.jobs = impl->jobs.get();
  rt.leader = [raw] { return raw->leading.load(); };
  rt.leader_name = [raw] {
    absl::MutexLock lock(&raw->loop_mu);
    return raw->leader_name;
  };
  rt.replica = impl->replica;
  impl->service = std::make_unique<MonitorServiceImpl>(std::move(rt), *impl->keys);

  WAS_ASSIGN_OR_RETURN(auto started, StartGrpcServer(options.grpc_listen, server_credentials,
                                                     {impl->service.get()}, *impl->registry));
  impl->server = std::move(started.server);
  impl->port = started.port;
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  impl->log->info("gRPC listening on port {}; replica {}; session-service at {}", impl->port,
                  impl->replica, options.session_service);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

void App::Start() {
  impl_->leader_loop = std::thread([impl = impl_.get()] { impl->LeaderLoop(); });
  impl_->runner = std::thread([impl = impl_.get()] { impl->RunLoop(); });
}

int App::grpc_port() const { return impl_->port; }

int App::metrics_port() const {
  return impl_->exposer ? impl_->exposer->GetListeningPorts().front() : 0;
}

bool App::leader() const { return impl_->leading; }

void App::Shutdown(absl::Duration drain) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  const absl::Time deadline = absl::Now() + drain;
  impl_->log->info("shutting down (deadline {})", drain);
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->StopLoops();  // a check under way finishes first
  impl_->election->Release();
  impl_->server->Shutdown(
      absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Milliseconds(100))));
  impl_->log->info("shut down");
}

}  // namespace wasentinel::monitor
