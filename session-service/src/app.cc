#include "app.h"

#include <grpcpp/grpcpp.h>

#include <boost/asio/executor_work_guard.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "event_listener.h"
#include "messenger.h"
#include "pg_store.h"
#include "prekey_supply.h"
#include "session_service.h"
#include "transition_writer.h"
#include "wasentinel/common/grpc_tls.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {

class App::Impl {
 public:
  Options options;
  std::unique_ptr<ServiceRuntime> rt;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<PgSessionStore> store;
  std::unique_ptr<Sealer> sealer;
  std::unique_ptr<PgMessageStore> message_store;
  std::unique_ptr<MessageFeed> feed;  // wakes WatchMessages streams
  EventBus bus;
  std::unique_ptr<TransitionWriter> writer;
  std::unique_ptr<EventListener> listener;
  boost::asio::io_context io{1};
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::thread io_thread;
  boost::asio::ssl::context tls{boost::asio::ssl::context::tls_client};
  std::unique_ptr<SessionMetrics> metrics;
  std::unique_ptr<VersionKeeper> versions;
  std::unique_ptr<PgPreKeySupply> prekeys;     // outlives the manager, which calls it
  std::unique_ptr<Messenger> messages;         // the same
  std::atomic<Messenger*> messenger{nullptr};  // for the listener, once made
  std::unique_ptr<SessionManager> manager;
  std::unique_ptr<SessionServiceImpl> service;
  std::unique_ptr<PeriodicThread> pruner;         // Prune() events and messages
  std::unique_ptr<PeriodicThread> phone_flusher;  // manager->FlushPhoneSightings()

  // Deletes what `prune(cutoff, 1000)` deletes, batch after batch, so that no statement holds
  // locks long: session events, then messages, past their retention.
  void Prune(const char* what, absl::Duration retention,
             const std::function<absl::StatusOr<int64_t>(absl::Time, int)>& prune) {
    int64_t total = 0;
    for (;;) {
      auto n = prune(rt->clock().Now() - retention, 1000);
      if (!n.ok()) {
        log->warn("pruning {}: {}", what, n.status());
        break;
      }
      total += *n;
      if (*n < 1000) break;
    }
    if (total > 0) log->info("pruned {} {} older than {}", total, what, retention);
  }

  void FlushPhoneSightings() {
    if (auto st = manager->FlushPhoneSightings(); !st.ok()) {
      log->warn("storing when the phones were last seen: {}", st);
    }
  }

  void StopPeriodic() {
    if (pruner) pruner->Stop();
    if (phone_flusher) phone_flusher->Stop();
  }

  // Also after a failed Create, with later members still null.
  ~Impl() {
    StopPeriodic();
    if (rt) rt->StopServer();
    listener.reset();                // it calls into the manager and the messenger
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

absl::StatusOr<std::unique_ptr<App>> App::Create(const Options& options, Clock* clock) {
  auto impl = std::make_unique<Impl>();
  WAS_ASSIGN_OR_RETURN(auto sealer, Sealer::FromConfig(options.auth_state_keys));
  impl->sealer = std::make_unique<Sealer>(std::move(sealer));
  WAS_ASSIGN_OR_RETURN(impl->rt,
                       ServiceRuntime::Create({"session-service", PgSessionStore::Migrations(), 8},
                                              options.runtime, clock));
  ServiceRuntime& rt = *impl->rt;
  impl->log = rt.log();
  impl->store = std::make_unique<PgSessionStore>(rt.pool());
  WAS_RETURN_IF_ERROR(CheckSealingKeys(*impl->store, *impl->sealer));
  impl->writer = std::make_unique<TransitionWriter>(*impl->store, impl->log);
  impl->message_store = std::make_unique<PgMessageStore>(rt.pool(), *impl->sealer);
  impl->feed = std::make_unique<MessageFeed>(*impl->message_store);
  impl->listener =
      std::make_unique<EventListener>(rt.database_url(), *impl->store, impl->bus, impl->log);
  impl->listener->set_on_messages(
      [i = impl.get()](int64_t newest, const std::vector<std::string>& sessions) {
        i->feed->Notify(newest);
        Messenger* m = i->messenger.load();
        if (!m) return;
        if (newest == 0) m->WakeAll();  // the listener reconnected: some may have been missed
        for (const auto& id : sessions) m->Wake(id);
      });
  WAS_RETURN_IF_ERROR(impl->listener->Start());

  impl->tls.set_default_verify_paths();
  impl->tls.set_verify_mode(boost::asio::ssl::verify_peer);
  impl->work =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          impl->io.get_executor());
  impl->io_thread = std::thread([io = &impl->io] { io->run(); });
  impl->metrics = std::make_unique<SessionMetrics>(*rt.registry());
  // Calls to other replicas: with TLS, our CA (or our certificate) as the root and our
  // certificate as the client identity, so mTLS between replicas works with one key pair.
  const RuntimeOptions& ro = options.runtime;
  WAS_ASSIGN_OR_RETURN(
      auto peers, GrpcChannelCredentials(ro.tls_cert_file.empty()        ? ""
                                         : ro.tls_client_ca_file.empty() ? ro.tls_cert_file
                                                                         : ro.tls_client_ca_file,
                                         ro.tls_cert_file, ro.tls_key_file));
  WAS_ASSIGN_OR_RETURN(impl->versions, VersionKeeper::Create(options.wa_version, &rt.pool(),
                                                             rt.registry().get(), impl->log));
  ManagerOptions manager_options = options.manager;
  manager_options.replica_id = rt.replica();
  manager_options.versions = impl->versions.get();
  WAS_ASSIGN_OR_RETURN(impl->prekeys, PgPreKeySupply::Create(rt.pool(), *impl->sealer));
  manager_options.prekeys = impl->prekeys.get();
  WAS_ASSIGN_OR_RETURN(impl->messages, Messenger::Create(rt.pool(), *impl->sealer, impl->log,
                                                         impl->metrics.get(), options.messenger));
  impl->messenger = impl->messages.get();
  manager_options.messages = impl->messages.get();
  impl->manager = std::make_unique<SessionManager>(impl->io, impl->tls, *impl->store, *impl->sealer,
                                                   *impl->writer, manager_options, impl->log,
                                                   impl->metrics.get(), &rt.clock());
  impl->listener->set_on_leases([manager = impl->manager.get()] { manager->ClaimNow(); });
  if (options.reseal_on_start) {
    WAS_ASSIGN_OR_RETURN(auto rotated, impl->manager->RotateSealingKey());
    impl->log->info("start-up re-seal: {} credentials now under key id {}", rotated.resealed,
                    rotated.key_id);
  }
  impl->service = std::make_unique<SessionServiceImpl>(
      *impl->manager, *impl->store, impl->bus, rt.keys(), rt.replica(), impl->log, std::move(peers),
      impl->metrics.get(), options.watch_limits);
  impl->service->set_versions(impl->versions.get());
  impl->service->set_messages(impl->message_store.get(), impl->feed.get());
  WAS_RETURN_IF_ERROR(rt.Serve({impl->service.get()}, [](grpc::ServerBuilder& builder) {
    // Sync handlers block while the io thread answers: keep the threads that served a burst
    // polling instead of tearing them down and creating new ones for the next.
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 32);
  }));
  std::string advertise = options.advertise_address;
  if (advertise.empty()) {
    // The listening host when it is one address, else this machine's name.
    const std::string& listen = ro.grpc_listen;
    std::string host = listen.substr(0, listen.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = HostName();
    advertise = absl::StrCat(host, ":", rt.grpc_port());
  }
  impl->manager->set_advertise_address(advertise);
  impl->options = options;
  return std::unique_ptr<App>(new App(std::move(impl)));
}

absl::Status App::Start() {
  Impl& i = *impl_;
  i.versions->Start();  // the version to log in with, before the first login
  i.pruner = std::make_unique<PeriodicThread>(
      i.options.event_prune_interval,
      [impl = &i, retention = i.options.event_retention, messages = i.options.message_retention] {
        impl->Prune("session events", retention, [impl](absl::Time cutoff, int batch) {
          return impl->store->PruneEventsBefore(cutoff, batch);
        });
        impl->Prune("messages", messages, [impl](absl::Time cutoff, int batch) {
          return impl->message_store->Prune(cutoff, batch);
        });
      });
  i.phone_flusher = std::make_unique<PeriodicThread>(i.options.phone_seen_flush_interval,
                                                     [impl = &i] { impl->FlushPhoneSightings(); });
  return i.manager->RestoreAll();
}

int App::grpc_port() const { return impl_->rt->grpc_port(); }

int App::metrics_port() const { return impl_->rt->metrics_port(); }

void App::Shutdown(absl::Duration drain) {
  Impl& i = *impl_;
  i.rt->Shutdown(drain, [&i](absl::Time deadline) {
    i.StopPeriodic();
    i.manager->Shutdown(deadline);  // refuses new connects, closes every socket
    i.FlushPhoneSightings();
    if (!i.writer->Drain(deadline)) {
      i.log->error("{} state changes were not written before the deadline", i.writer->queued());
    }
    // Watchers get their SHUTDOWN events through the listener; then the others take over.
    i.listener->WaitPublished(i.writer->last_sequence(), deadline);
    i.manager->Leave();
    // Watchers have now seen the SHUTDOWN transitions; their streams end with CANCELLED.
    i.bus.Close();
  });
}

}  // namespace wasentinel::session
