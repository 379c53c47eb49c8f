#include "wasentinel/common/service_runtime.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/metrics_exposer.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel {

absl::StatusOr<std::unique_ptr<ServiceRuntime>> ServiceRuntime::Create(
    ServiceSpec spec, const RuntimeOptions& options, Clock* clock) {
  auto log = MakeLogger(spec.name, options.log_level);
  if (options.database_url.empty()) {
    return absl::InvalidArgumentError("no database URL (--database_url or WAS_DATABASE_URL)");
  }
  WAS_ASSIGN_OR_RETURN(auto keys, ApiKeys::FromConfig(options.api_keys));
  std::unique_ptr<ServiceRuntime> rt(new ServiceRuntime(std::move(spec), options, std::move(keys)));
  rt->log_ = std::move(log);
  rt->clock_ = clock ? clock : &SystemClock::Get();
  rt->replica_ = options.replica_id.empty() ? DefaultReplicaId() : options.replica_id;
  if (!rt->keys_.enabled()) {
    rt->log_->warn("no API keys configured (WAS_API_KEYS): every gRPC call is allowed");
  }
  WAS_ASSIGN_OR_RETURN(rt->credentials_,
                       GrpcServerCredentials(options.tls_cert_file, options.tls_key_file,
                                             options.tls_client_ca_file));
  WAS_ASSIGN_OR_RETURN(rt->pool_,
                       PgPool::Create(options.database_url, rt->spec_.database_pool_size));
  WAS_RETURN_IF_ERROR(ApplyMigrations(*rt->pool_, rt->spec_.name, rt->spec_.migrations, *rt->log_));
  WAS_ASSIGN_OR_RETURN(rt->exposer_,
                       ServeMetrics(options.metrics_listen, rt->registry_, *rt->log_));
  rt->database_up_ = &prometheus::BuildGauge()
                          .Name("wasentinel_database_up")
                          .Help("1 while PostgreSQL answers the database watch, 0 while not")
                          .Register(*rt->registry_)
                          .Add({});
  rt->database_up_->Set(1);
  rt->connections_replaced_ =
      &prometheus::BuildCounter()
           .Name("wasentinel_database_connections_replaced_total")
           .Help("Pooled PostgreSQL connections found dead at checkout and replaced")
           .Register(*rt->registry_)
           .Add({});
  rt->heap_trimmed_ =
      &prometheus::BuildCounter()
           .Name("wasentinel_heap_trimmed_bytes_total")
           .Help("Free heap handed back to the kernel (malloc_trim) after bursts such as restores")
           .Register(*rt->registry_)
           .Add({});
  return rt;
}

ServiceRuntime::~ServiceRuntime() { StopServer(); }

absl::Status ServiceRuntime::Serve(const std::vector<grpc::Service*>& services,
                                   const std::function<void(grpc::ServerBuilder&)>& tune) {
  WAS_ASSIGN_OR_RETURN(auto started, StartGrpcServer(options_.grpc_listen, credentials_, services,
                                                     *registry_, tune));
  server_ = std::move(started.server);
  grpc_port_ = started.port;
  server_->GetHealthCheckService()->SetServingStatus(true);
  server_->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
  log_->info("gRPC listening on port {}; replica {}", grpc_port_, replica_);
  probe_ = std::make_unique<PgProbe>(options_.database_url);
  database_watch_ = std::make_unique<PeriodicThread>(options_.database_check_interval,
                                                     [this] { WatchDatabase(); });
  heap_trim_ = std::make_unique<PeriodicThread>(absl::Seconds(10), [this] {
    if (const size_t released = TrimFreeHeap(); released > 0) {
      heap_trimmed_->Increment(static_cast<double>(released));
      log_->debug("handed {} MB of free heap back to the kernel", released >> 20);
    }
  });
  return absl::OkStatus();
}

void ServiceRuntime::WatchDatabase() {
  const absl::Status st = probe_->Check();
  const int64_t replaced = pool_->replaced();
  connections_replaced_->Increment(static_cast<double>(replaced - replaced_reported_));
  replaced_reported_ = replaced;
  database_up_->Set(st.ok() ? 1 : 0);
  if (st.ok() == database_reachable_) return;
  database_reachable_ = st.ok();
  {
    absl::MutexLock lock(&health_mu_);
    if (draining_) return;  // Shutdown set NOT_SERVING for good
    server_->GetHealthCheckService()->SetServingStatus("", st.ok());
  }
  if (st.ok()) {
    log_->info("PostgreSQL answers again after {}; readiness SERVING",
               absl::FormatDuration(
                   absl::Trunc(absl::Now() - unreachable_since_, absl::Milliseconds(100))));
  } else {
    unreachable_since_ = absl::Now();
    log_->error("PostgreSQL unreachable ({}); readiness NOT_SERVING until it answers",
                st.message());
  }
}

void ServiceRuntime::Shutdown(absl::Duration drain_timeout,
                              absl::FunctionRef<void(absl::Time deadline)> drain,
                              absl::FunctionRef<void(absl::Time deadline)> after_server) {
  if (shut_down_) return;
  shut_down_ = true;
  const absl::Time deadline = absl::Now() + drain_timeout;
  log_->info("shutting down (drain deadline {})", drain_timeout);
  {
    absl::MutexLock lock(&health_mu_);
    draining_ = true;
    if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  }
  database_watch_.reset();  // after NOT_SERVING: a probe under way may take the connect timeout
  heap_trim_.reset();
  drain(deadline);
  if (server_) {
    server_->Shutdown(
        absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Milliseconds(100))));
  }
  after_server(deadline);
  log_->info("shut down");
}

void ServiceRuntime::StopServer() {
  database_watch_.reset();
  heap_trim_.reset();
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

int ServiceRuntime::metrics_port() const {
  return exposer_ ? exposer_->GetListeningPorts().front() : 0;
}

}  // namespace wasentinel
