#include "app.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <boost/asio/executor_work_guard.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "event_listener.h"
#include "pg_store.h"
#include "session_service.h"
#include "transition_writer.h"
#include "wasentinel/common/grpc_server.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/metrics_exposer.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {

class App::Impl {
 public:
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgPool> pool;
  std::unique_ptr<PgSessionStore> store;
  std::unique_ptr<Sealer> sealer;
  std::unique_ptr<ApiKeys> keys;
  EventBus bus;
  std::unique_ptr<TransitionWriter> writer;
  std::unique_ptr<EventListener> listener;
  boost::asio::io_context io{1};
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::thread io_thread;
  boost::asio::ssl::context tls{boost::asio::ssl::context::tls_client};
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<SessionMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::unique_ptr<VersionKeeper> versions;
  std::unique_ptr<SessionManager> manager;
  std::unique_ptr<SessionServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool shut_down = false;
  std::unique_ptr<PeriodicThread> pruner;         // PruneEvents()
  std::unique_ptr<PeriodicThread> phone_flusher;  // manager->FlushPhoneSightings()

  // Deletes events past the retention in batches of 1000, so no statement holds locks long.
  void PruneEvents(absl::Duration retention) {
    int64_t total = 0;
    for (;;) {
      auto n = store->PruneEventsBefore(absl::Now() - retention, 1000);
      if (!n.ok()) {
        log->warn("pruning session events: {}", n.status());
        break;
      }
      total += *n;
      if (*n < 1000) break;
    }
    if (total > 0) log->info("pruned {} session events older than {}", total, retention);
  }

  void StopPruner() {
    if (pruner) pruner->Stop();
    if (phone_flusher) phone_flusher->Stop();
  }

  ~Impl() {
    StopPruner();
    if (server) server->Shutdown(std::chrono::system_clock::now());
    listener.reset();                // it calls into the manager
    if (versions) versions->Stop();  // its callbacks post to the manager
    manager.reset();
    if (work) work.reset();
    io.stop();
    if (io_thread.joinable()) io_thread.join();
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() = default;

// A wrong or missing sealing key is a start-up error, not silent garbage at the first restore.
static absl::Status CheckSealingKeys(SessionStore& store, const Sealer& sealer) {
  std::string token;
  do {
    WAS_ASSIGN_OR_RETURN(auto page, store.List({}, 500, token));
    for (const auto& rec : page.sessions) {
      if (!rec.credentials) continue;
      auto opened = sealer.Open(rec.credentials->key_id, rec.credentials->blob);
      if (!opened.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stored credentials of session ", rec.id, " do not open: ", opened.status().message(),
            ". Configure the key they were sealed with (WAS_AUTH_STATE_KEY)."));
      }
    }
    token = page.next_page_token;
  } while (!token.empty());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->log = MakeLogger("session-service", options.log_level);
  if (options.database_url.empty()) {
    return absl::InvalidArgumentError("no database URL (--database_url or WAS_DATABASE_URL)");
  }
  WAS_ASSIGN_OR_RETURN(auto sealer, Sealer::FromConfig(options.auth_state_keys));
  impl->sealer = std::make_unique<Sealer>(std::move(sealer));
  WAS_ASSIGN_OR_RETURN(auto keys, ApiKeys::FromConfig(options.api_keys));
  impl->keys = std::make_unique<ApiKeys>(std::move(keys));
  if (!impl->keys->enabled()) {
    impl->log->warn("no API keys configured (WAS_API_KEYS): every gRPC call is allowed");
  }
  WAS_ASSIGN_OR_RETURN(auto credentials,
                       GrpcServerCredentials(options.tls_cert_file, options.tls_key_file,
                                             options.tls_client_ca_file));
  const std::string replica = options.replica_id.empty() ? DefaultReplicaId() : options.replica_id;
  WAS_ASSIGN_OR_RETURN(impl->pool,
                       PgPool::Create(options.database_url, options.database_pool_size));
  WAS_RETURN_IF_ERROR(
      ApplyMigrations(*impl->pool, "session-service", PgSessionStore::Migrations(), *impl->log));
  impl->store = std::make_unique<PgSessionStore>(*impl->pool);
  WAS_RETURN_IF_ERROR(CheckSealingKeys(*impl->store, *impl->sealer));
  impl->writer = std::make_unique<TransitionWriter>(*impl->store, impl->log);
  impl->listener =
      std::make_unique<EventListener>(options.database_url, *impl->store, impl->bus, impl->log);
  WAS_RETURN_IF_ERROR(impl->listener->Start());
  impl->pruner = std::make_unique<PeriodicThread>(
      options.event_prune_interval,
      [impl = impl.get(), retention = options.event_retention] { impl->PruneEvents(retention); });

  impl->tls.set_default_verify_paths();
  impl->tls.set_verify_mode(boost::asio::ssl::verify_peer);
  impl->work =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          impl->io.get_executor());
  impl->io_thread = std::thread([io = &impl->io] { io->run(); });
  impl->metrics = std::make_unique<SessionMetrics>(*impl->registry);
  WAS_ASSIGN_OR_RETURN(impl->exposer,
                       ServeMetrics(options.metrics_listen, impl->registry, *impl->log));
  // Calls to other replicas: with TLS, our CA (or our certificate) as the root and our
  // certificate as the client identity, so mTLS between replicas works with one key pair.
  WAS_ASSIGN_OR_RETURN(
      auto peers,
      GrpcChannelCredentials(options.tls_cert_file.empty()        ? ""
                             : options.tls_client_ca_file.empty() ? options.tls_cert_file
                                                                  : options.tls_client_ca_file,
                             options.tls_cert_file, options.tls_key_file));
  WAS_ASSIGN_OR_RETURN(impl->versions, VersionKeeper::Create(options.wa_version, impl->pool.get(),
                                                             impl->registry.get(), impl->log));
  ManagerOptions manager_options = options.manager;
  manager_options.replica_id = replica;
  manager_options.versions = impl->versions.get();
  impl->manager = std::make_unique<SessionManager>(impl->io, impl->tls, *impl->store, *impl->sealer,
                                                   *impl->writer, manager_options, impl->log,
                                                   impl->metrics.get());
  impl->listener->set_on_leases([manager = impl->manager.get()] { manager->ClaimNow(); });
  impl->phone_flusher =
      std::make_unique<PeriodicThread>(options.phone_seen_flush_interval, [impl = impl.get()] {
        if (auto st = impl->manager->FlushPhoneSightings(); !st.ok()) {
          impl->log->warn("storing when the phones were last seen: {}", st);
        }
      });
  if (options.reseal_on_start) {
    WAS_ASSIGN_OR_RETURN(auto rotated, impl->manager->RotateSealingKey());
    impl->log->info("start-up re-seal: {} credentials now under key id {}", rotated.resealed,
                    rotated.key_id);
  }
  impl->service = std::make_unique<SessionServiceImpl>(
      *impl->manager, *impl->store, impl->bus, *impl->keys, replica, impl->log, std::move(peers),
      impl->metrics.get(), options.watch_limits);
  impl->service->set_versions(impl->versions.get());
  WAS_ASSIGN_OR_RETURN(
      auto started, StartGrpcServer(options.grpc_listen, credentials, {impl->service.get()},
                                    *impl->registry, [](grpc::ServerBuilder& builder) {
                                      // Sync handlers block while the io thread answers: keep the
                                      // threads that served a burst polling instead of tearing them
                                      // down and creating new ones for the next.
                                      builder.SetSyncServerOption(
                                          grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 32);
                                    }));
  impl->server = std::move(started.server);
  impl->port = started.port;
  std::string advertise = options.advertise_address;
  if (advertise.empty()) {
    // The listening host when it is one address, else this machine's name.
    std::string host = options.grpc_listen.substr(0, options.grpc_listen.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = HostName();
    advertise = absl::StrCat(host, ":", impl->port);
  }
  impl->manager->set_advertise_address(advertise);
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  impl->log->info("gRPC listening on port {}", impl->port);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

absl::Status App::Start() {
  impl_->versions->Start();  // the version to log in with, before the first login
  return impl_->manager->RestoreAll();
}

int App::grpc_port() const { return impl_->port; }

int App::metrics_port() const {
  return impl_->exposer ? impl_->exposer->GetListeningPorts().front() : 0;
}

void App::Shutdown(absl::Duration drain) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  const absl::Time deadline = absl::Now() + drain;
  auto& log = *impl_->log;
  log.info("shutting down (drain deadline {})", drain);
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->StopPruner();
  impl_->manager->Shutdown(deadline);  // refuses new connects, closes every socket
  if (auto st = impl_->manager->FlushPhoneSightings(); !st.ok()) {
    log.warn("storing when the phones were last seen: {}", st);
  }
  if (!impl_->writer->Drain(deadline)) {
    log.error("{} state changes were not written before the deadline", impl_->writer->queued());
  }
  // Watchers get their SHUTDOWN events through the listener; then the others take over.
  impl_->listener->WaitPublished(impl_->writer->last_sequence(), deadline);
  impl_->manager->Leave();
  // Watchers have now seen the SHUTDOWN transitions; their streams end with CANCELLED.
  impl_->bus.Close();
  impl_->server->Shutdown(
      absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Milliseconds(100))));
  log.info("shut down");
}

}  // namespace wasentinel::session
