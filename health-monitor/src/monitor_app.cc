#include "monitor_app.h"

#include <grpcpp/grpcpp.h>
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
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
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
  std::unique_ptr<ServiceRuntime> rt;
  Clock* clock = nullptr;
  std::string replica;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgHealthStore> store;
  std::shared_ptr<grpc::Channel> session_channel;
  std::unique_ptr<GrpcSessionSource> sessions;
  std::unique_ptr<AlertSink> alerts;
  std::unique_ptr<MonitorMetrics> metrics;
  absl::Mutex monitor_mu;  // the Monitor: watcher, runner, jobs and the API take turns
  std::unique_ptr<Monitor> monitor;
  std::unique_ptr<JobScheduler> jobs;
  std::unique_ptr<LeaderElection> election;
  std::unique_ptr<EventWatcher> watcher;
  std::unique_ptr<MonitorServiceImpl> service;

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

  // Also after a failed Create, with later members still null.
  ~Impl() {
    StopLoops();
    if (rt) rt->StopServer();
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() = default;

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options, Clock* clock) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.session_service.empty()) {
    return absl::InvalidArgumentError("no session-service address (--session_service)");
  }
  const RuntimeOptions& ro = options.runtime;
  WAS_ASSIGN_OR_RETURN(auto upstream, GrpcChannelCredentials(options.upstream_ca_file,
                                                             ro.tls_cert_file, ro.tls_key_file));
  WAS_ASSIGN_OR_RETURN(impl->rt,
                       ServiceRuntime::Create({"health-monitor", PgHealthStore::Migrations(), 4},
                                              options.runtime, clock));
  ServiceRuntime& rt = *impl->rt;
  impl->clock = &rt.clock();
  impl->log = rt.log();
  impl->replica = rt.replica();
  impl->store = std::make_unique<PgHealthStore>(rt.pool());

  // Reconnected quickly (the light check's backoff paces alerts); the event watch on an idle
  // stream notices a vanished peer.
  const grpc::ChannelArguments args = UpstreamChannelArguments();
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
  impl->metrics = std::make_unique<MonitorMetrics>(*rt.registry());
  impl->monitor = std::make_unique<Monitor>(*impl->clock, *impl->store, *impl->sessions,
                                            *impl->alerts, options.policy, impl->log);
  impl->monitor->set_metrics(impl->metrics.get());
  impl->jobs = std::make_unique<JobScheduler>(
      *impl->clock, *impl->store, impl->Jobs(), impl->log,
      [metrics = impl->metrics.get()](const std::string& job, const v1::JobResult& r) {
        metrics->JobRun(job, r.error().empty());
      });
  impl->election = std::make_unique<LeaderElection>(rt.database_url(), impl->replica);

  Impl* raw = impl.get();
  MonitorRuntime mr;
  mr.store = impl->store.get();
  mr.mu = &impl->monitor_mu;
  mr.monitor = impl->monitor.get();
  mr.jobs = impl->jobs.get();
  mr.leader = [raw] { return raw->leading.load(); };
  mr.leader_name = [raw] {
    absl::MutexLock lock(&raw->loop_mu);
    return raw->leader_name;
  };
  mr.replica = impl->replica;
  impl->service = std::make_unique<MonitorServiceImpl>(std::move(mr), rt.keys());
  WAS_RETURN_IF_ERROR(rt.Serve({impl->service.get()}));
  impl->log->info("session-service at {}", options.session_service);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

absl::Status App::Start() {
  impl_->leader_loop = std::thread([impl = impl_.get()] { impl->LeaderLoop(); });
  impl_->runner = std::thread([impl = impl_.get()] { impl->RunLoop(); });
  return absl::OkStatus();
}

int App::grpc_port() const { return impl_->rt->grpc_port(); }

int App::metrics_port() const { return impl_->rt->metrics_port(); }

bool App::leader() const { return impl_->leading; }

void App::Shutdown(absl::Duration drain) {
  Impl& i = *impl_;
  i.rt->Shutdown(drain, [&i](absl::Time) {
    i.StopLoops();  // a check under way finishes first
    i.election->Release();
  });
}

}  // namespace wasentinel::monitor
