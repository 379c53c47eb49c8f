#include "manager.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <future>
#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "baileys_prekeys.h"
#include "credentials.h"
#include "prekey_supply.h"
#include "session_rules.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

namespace asio = boost::asio;

// Waits for a value set on another thread.
template <class T>
struct Promised {
  std::shared_ptr<std::promise<T>> promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
};

}  // namespace

SessionManager::SessionManager(asio::io_context& io, asio::ssl::context& tls, SessionStore& store,
                               const Sealer& sealer, TransitionWriter& writer,
                               ManagerOptions options, std::shared_ptr<spdlog::logger> log,
                               SessionMetrics* metrics, Clock* clock, ConnectionFactory connect)
    : options_(std::move(options)),
      store_(store),
      sealer_(sealer),
      sessions_(std::make_shared<StateMachine>(io, tls, sealer, writer, options_,
                                               clock ? *clock : SystemClock::Get(), std::move(log),
                                               metrics, std::move(connect))),
      leases_(std::make_unique<LeaseKeeper>(store, options_, sessions_)),
      readers_(std::make_unique<asio::thread_pool>(2)) {
  writer.set_on_fenced([weak = std::weak_ptr<StateMachine>(sessions_)](const Transition& t) {
    auto sessions = weak.lock();
    if (!sessions) return;
    sessions->Post([sessions, id = t.session_id, token = t.lease_token] {
      sessions->LoseLease(id, token, "another replica holds it now (a write was fenced)", false);
    });
  });
}

SessionManager::~SessionManager() {
  leases_->Stop();
  readers_->join();
}

void SessionManager::set_advertise_address(std::string address) {
  leases_->set_advertise_address(std::move(address));
}

void SessionManager::ClaimNow() { leases_->Nudge(); }

absl::StatusOr<SessionView> SessionManager::Create(const NewSession& req) {
  SessionRecord rec;
  rec.tenant_id = req.tenant_id;
  rec.session_name = req.session_name.empty() ? "primary" : req.session_name;
  rec.account_name = req.account_name;
  rec.owner_email = req.owner_email;
  rec.auto_connect = req.auto_connect;
  if (!req.creds_json.empty()) {
    WAS_ASSIGN_OR_RETURN(auto creds, wa::DeviceCredentials::FromBaileysJson(req.creds_json));
    rec.phone_number = std::to_string(creds.phone);
    rec.device_jid = creds.Jid();
    auto sealed = sealer_.Seal(AsBytes(req.creds_json));
    rec.credentials = SealedCredentials{sealed.key_id, std::move(sealed.blob)};
  }
  std::optional<ImportedPreKeys> pre_keys;
  if (!req.pre_key_files.empty()) {
    if (req.creds_json.empty()) {
      return absl::InvalidArgumentError("pre_key_files come with the creds_json they belong to");
    }
    WAS_ASSIGN_OR_RETURN(pre_keys, ImportPreKeys(req));
  }
  // A session to pair later needs no runtime (nor lease) until StartPairing; one with
  // credentials is stored leased to this replica (under its lease holder).
  const bool leased = rec.credentials.has_value();
  int64_t holder = 0;
  if (leased) {
    WAS_ASSIGN_OR_RETURN(holder, leases_->Holder());
  }
  WAS_ASSIGN_OR_RETURN(auto created, leased ? store_.Create(rec, options_.replica_id, holder,
                                                            pre_keys ? &*pre_keys : nullptr)
                                            : store_.Create(rec));
  if (!leased) return SessionView{created.first, std::nullopt};
  WAS_RETURN_IF_ERROR(leases_->HoldLease(created.first));
  return sessions_->OnIo([&] { return sessions_->Created(created.first); });
}

// Baileys' pre-key-<id>.json files beside the creds.json: the one-time pre-keys the device
// uploaded, kept so that what senders encrypted to them still decrypts. Ids of the session's own
// batches continue after creds.json's nextPreKeyId and every imported id.
absl::StatusOr<ImportedPreKeys> SessionManager::ImportPreKeys(const NewSession& req) {
  if (!options_.prekeys) {
    return absl::FailedPreconditionError("this service keeps no Signal pre-keys");
  }
  std::vector<signal::PreKey> keys;
  keys.reserve(req.pre_key_files.size());
  for (const auto& [name, contents] : req.pre_key_files) {
    auto k = wa::ParseBaileysPreKeyFile(name, contents);
    if (!k.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pre_key_files[", name, "]: ", k.status().message()));
    }
    signal::PreKey key;
    key.id = k->id;
    key.key.pub.assign(k->key.pub.begin(), k->key.pub.end());
    key.key.priv.assign(k->key.priv.begin(), k->key.priv.end());
    keys.push_back(std::move(key));
  }
  const auto creds = nlohmann::json::parse(req.creds_json, nullptr, false);
  uint32_t next_id = 1;
  if (creds.is_object() && creds.contains("nextPreKeyId") &&
      creds["nextPreKeyId"].is_number_unsigned() &&
      creds["nextPreKeyId"].get<uint64_t>() <= 0xFFFFFE) {
    next_id = creds["nextPreKeyId"].get<uint32_t>();
  }
  return options_.prekeys->Import(keys, next_id);
}

absl::StatusOr<SessionView> SessionManager::StartPairing(const PairingRequest& req,
                                                         std::shared_ptr<PairingFeed> feed) {
  absl::StatusOr<SessionRecord> rec;
  if (!req.session_id.empty()) {
    rec = store_.Get(req.session_id);
  } else {
    const std::string name = req.session_name.empty() ? "primary" : req.session_name;
    rec = store_.GetByName(req.tenant_id, name);
    if (absl::IsNotFound(rec.status())) {
      NewSession n;
      n.tenant_id = req.tenant_id;
      n.session_name = name;
      n.account_name = req.account_name;
      n.owner_email = req.owner_email;
      auto created = Create(n);
      // Two pairings raced to create it: the loser reuses the winner's row.
      if (absl::IsAlreadyExists(created.status())) {
        rec = store_.GetByName(req.tenant_id, name);
      } else if (!created.ok()) {
        return created.status();
      } else {
        rec = created->record;
      }
    }
  }
  if (!rec.ok()) return rec.status();
  auto paired_already = [&] {
    return absl::FailedPreconditionError(absl::StrCat(
        "session ", rec->id, " already has credentials; Logout first to pair another device"));
  };
  if (rec->credentials) return paired_already();
  WAS_RETURN_IF_ERROR(leases_->HoldLease(*rec));
  // Read again under the lease: credentials imported meanwhile are not to be paired over.
  if (rec->credentials) return paired_already();
  return sessions_->OnIo(
      [&] { return sessions_->StartPairing(*rec, std::move(feed), req.phone_number); });
}

void SessionManager::CancelPairing(const std::string& id,
                                   const std::shared_ptr<PairingFeed>& feed) {
  sessions_->OnIo([&] { sessions_->CancelPairing(id, feed); });
}

absl::StatusOr<SessionView> SessionManager::Get(const std::string& id) {
  auto restore = [&] { return sessions_->HeldView(id); };
  if (auto view = sessions_->OnIo(restore)) return *view;
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Get(id));
  // Held by another replica (rec.owner: the live view is there), or it should not be
  // connected: the stored row.
  const bool elsewhere = !rec.owner.empty() && rec.owner != options_.replica_id;
  if (elsewhere || !rec.credentials || !WantsSocket(rec, rec.state, rec.reason)) {
    return SessionView{rec, std::nullopt};
  }
  // Nobody holds it and it should be connected: restore it here.
  if (auto held = leases_->HoldLease(rec); !held.ok()) {
    if (auto owner = OwnerOf(held)) rec.owner = *owner;  // another replica took it meanwhile
    return SessionView{rec, std::nullopt};
  }
  if (auto view = sessions_->OnIo(restore)) return *view;
  return SessionView{rec, std::nullopt};
}

void SessionManager::GetAsync(std::string id,
                              std::function<void(absl::StatusOr<SessionView>)> done) {
  // Answers exactly once: a handler dropped unrun (the io context or the readers stopping)
  // answers UNAVAILABLE from its destructor.
  struct Once {
    explicit Once(std::function<void(absl::StatusOr<SessionView>)> f) : fn(std::move(f)) {}
    Once(const Once&) = delete;
    Once& operator=(const Once&) = delete;
    std::function<void(absl::StatusOr<SessionView>)> fn;
    void operator()(absl::StatusOr<SessionView> view) {
      if (auto f = std::exchange(fn, nullptr)) f(std::move(view));
    }
    ~Once() {
      if (fn) fn(absl::UnavailableError("session-service is shutting down; retry"));
    }
  };
  if (auto view = sessions_->views().Get(id)) return done(*std::move(view));
  auto once = std::make_shared<Once>(std::move(done));
  // Posted without Touch(): a view does not change the session (HeldView touches when it does).
  asio::post(sessions_->io(), [this, id = std::move(id), once]() mutable {
    if (auto view = sessions_->HeldView(id)) return (*once)(*std::move(view));
    asio::post(*readers_, [this, id = std::move(id), once] { (*once)(Get(id)); });
  });
}

absl::StatusOr<std::vector<SessionView>> SessionManager::GetMany(
    const std::vector<std::string>& ids) {
  WAS_ASSIGN_OR_RETURN(auto records, store_.GetMany(ids));
  return Overlay(std::move(records));
}

// The stored row of a session this replica now holds; `active_only` refuses an inactive one
// first (CheckActive).
static absl::StatusOr<SessionRecord> Held(SessionStore& store, LeaseKeeper& leases,
                                          const std::string& id, bool active_only = false) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store.Get(id));
  if (active_only) WAS_RETURN_IF_ERROR(CheckActive(rec));
  WAS_RETURN_IF_ERROR(leases.HoldLease(rec));
  return rec;
}

absl::StatusOr<SessionView> SessionManager::Connect(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id, /*active_only=*/true));
  return sessions_->OnIo([&] { return sessions_->Connect(rec); });
}

absl::StatusOr<SessionView> SessionManager::Reconnect(const std::string& id, bool recovery) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id, /*active_only=*/true));
  return sessions_->OnIo([&] { return sessions_->Reconnect(rec, recovery); });
}

absl::StatusOr<SessionView> SessionManager::Disconnect(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id));
  return sessions_->OnIo([&] { return sessions_->Disconnect(rec); });
}

absl::StatusOr<SessionView> SessionManager::Logout(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id));
  Promised<absl::Status> done;
  sessions_->OnIo([&] {
    sessions_->Logout(rec, v1::STATE_REASON_USER,
                      [p = done.promise](absl::Status st) { p->set_value(st); });
  });
  const absl::Status at_whatsapp = done.future.get();
  if (!at_whatsapp.ok()) {
    sessions_->log()->warn("session {}: logout did not reach WhatsApp: {}", id, at_whatsapp);
  }
  WAS_ASSIGN_OR_RETURN(rec, store_.Get(id));
  rec.credentials.reset();
  return SessionView{rec, sessions_->OnIo([&] { return sessions_->LiveOf(id); })};
}

absl::Status SessionManager::Delete(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id));
  Promised<absl::StatusOr<EventRecord>> stored;
  sessions_->OnIo([&] {
    sessions_->Delete(
        rec, [p = stored.promise](const absl::StatusOr<EventRecord>& e) { p->set_value(e); });
  });
  return stored.future.get().status();
}

absl::StatusOr<std::pair<SessionView, ProbeResult>> SessionManager::Probe(const std::string& id,
                                                                          absl::Duration timeout) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Get(id));
  Promised<absl::StatusOr<absl::Duration>> probed;
  WAS_RETURN_IF_ERROR(sessions_->OnIo([&] {
    return sessions_->Probe(rec, timeout, [p = probed.promise](absl::StatusOr<absl::Duration> rtt) {
      p->set_value(rtt);
    });
  }));
  ProbeResult result{probed.future.get()};
  return std::pair{SessionView{rec, sessions_->OnIo([&] { return sessions_->LiveOf(id); })},
                   result};
}

absl::StatusOr<SessionView> SessionManager::ImportCredentials(const std::string& id,
                                                              const std::string& creds_json) {
  WAS_ASSIGN_OR_RETURN(auto creds, wa::DeviceCredentials::FromBaileysJson(creds_json));
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, Held(store_, *leases_, id));
  auto sealed = sealer_.Seal(AsBytes(creds_json));
  CredentialsUpdate update{SealedCredentials{sealed.key_id, std::move(sealed.blob)},
                           std::to_string(creds.phone), creds.Jid()};
  Promised<absl::StatusOr<EventRecord>> stored;
  WAS_RETURN_IF_ERROR(sessions_->OnIo([&] {
    return sessions_->ImportCredentials(
        rec, creds, update,
        [p = stored.promise](const absl::StatusOr<EventRecord>& e) { p->set_value(e); });
  }));
  WAS_RETURN_IF_ERROR(stored.future.get().status());
  WAS_ASSIGN_OR_RETURN(rec, store_.Get(id));
  return sessions_->OnIo([&] { return sessions_->Imported(rec); });
}

absl::StatusOr<SessionView> SessionManager::Update(const std::string& id,
                                                   const SessionUpdate& update) {
  WAS_ASSIGN_OR_RETURN(SessionRecord before, store_.Get(id));
  const bool held_here = sessions_->OnIo([&] { return sessions_->Holds(id); });
  if (!held_here && !before.owner.empty() && before.owner != options_.replica_id) {
    return HeldElsewhere(id, before.owner);  // its holder applies is_active to the socket
  }
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Update(id, update));
  return sessions_->OnIo([&] { return sessions_->Updated(rec); });
}

absl::StatusOr<SessionManager::RotationResult> SessionManager::RotateSealingKey() {
  RotationResult result;
  result.key_id = sealer_.current_key_id();
  for (;;) {
    WAS_ASSIGN_OR_RETURN(auto batch, store_.ListSealedNotUnder(result.key_id, 100));
    if (batch.empty()) break;
    int64_t progressed = 0;
    for (const auto& rec : batch) {
      auto plain = sealer_.Open(rec.credentials->key_id, rec.credentials->blob);
      if (!plain.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("credentials of session ", rec.id, " do not open under key id \"",
                         rec.credentials->key_id, "\": ", plain.status().message()));
      }
      auto sealed = sealer_.Seal(*plain);
      WAS_ASSIGN_OR_RETURN(bool replaced,
                           store_.ReplaceSealed(rec.id, *rec.credentials,
                                                SealedCredentials{sealed.key_id, sealed.blob}));
      if (replaced) ++result.resealed;
      ++progressed;  // a row changed meanwhile was re-sealed by whoever changed it
    }
    if (progressed == 0) break;
  }
  sessions_->log()->info("re-sealed {} credentials under key id {}", result.resealed,
                         result.key_id);
  return result;
}

std::vector<SessionView> SessionManager::Overlay(std::vector<SessionRecord> records) {
  return sessions_->OnIo([&] { return sessions_->Overlay(std::move(records)); });
}

absl::Status SessionManager::FlushPhoneSightings() {
  auto sightings = sessions_->OnIo([&] { return sessions_->TakePhoneSightings(); });
  if (sightings.empty()) return absl::OkStatus();
  absl::Status st = store_.RecordPhoneSightings(sightings);
  if (!st.ok()) sessions_->OnIo([&] { sessions_->KeepPhoneSightings(sightings); });
  return st;
}

absl::Status SessionManager::RestoreAll() {
  const ManagerOptions& o = options_;
  auto& log = *sessions_->log();
  WAS_ASSIGN_OR_RETURN(auto replicas, store_.LiveReplicas());
  // Only this replica's id live: a first replica, or this one restarted before its previous
  // incarnation's holder expired (whose leases it takes over at once below). Replicas of the
  // previous version count as live too (store.h LiveReplicas, expand step): in a rolling
  // update this one joins them and claims only orphans.
  const bool first = std::all_of(replicas.begin(), replicas.end(),
                                 [&](const ReplicaInfo& r) { return r.id == o.replica_id; });
  WAS_RETURN_IF_ERROR(leases_->StartHolder());
  WAS_ASSIGN_OR_RETURN(const int64_t holder, leases_->Holder());
  if (first) {
    WAS_ASSIGN_OR_RETURN(auto live, store_.ListLive());
    WAS_ASSIGN_OR_RETURN(auto restorable, store_.ListRestorable());
    std::vector<std::string> ids;
    ids.reserve(restorable.size());
    for (const auto& rec : restorable) ids.push_back(rec.id);
    WAS_ASSIGN_OR_RETURN(auto won, store_.AcquireLeases(ids, o.replica_id, holder));
    absl::flat_hash_map<std::string, int64_t> tokens;
    for (const auto& l : won) tokens[l.session_id] = l.token;
    sessions_->OnIo([&] {
      absl::flat_hash_set<std::string> will_restore(ids.begin(), ids.end());
      for (const auto& rec : live) {
        if (!will_restore.contains(rec.id)) {
          sessions_->RecordUnowned(rec, v1::SESSION_STATE_DISCONNECTED,
                                   v1::STATE_REASON_SERVICE_RESTART);
        }
      }
      log.info("first replica up: restoring {} sessions at {} per second", tokens.size(),
               o.restore_per_second > 0 ? std::to_string(o.restore_per_second)
                                        : std::string("unlimited"));
      sessions_->AdoptAndRestore(restorable, tokens, v1::STATE_REASON_STARTUP_RESTORE);
    });
  } else {
    log.info("joining {} live replicas: claiming only sessions no replica holds", replicas.size());
    leases_->ClaimOrphans(v1::STATE_REASON_TAKEOVER);
  }
  leases_->Start();
  return absl::OkStatus();
}

void SessionManager::Shutdown(absl::Time deadline) {
  auto closed = std::make_shared<std::promise<void>>();
  auto future = closed->get_future();
  sessions_->Post(
      [sessions = sessions_, closed] { sessions->ShutdownAll([closed] { closed->set_value(); }); });
  if (future.wait_until(absl::ToChronoTime(deadline)) != std::future_status::ready) {
    sessions_->log()->warn("drain deadline reached; aborting the connections still closing");
    sessions_->Post([sessions = sessions_] { sessions->AbortClosing(); });
  }
}

void SessionManager::Leave() {
  leases_->Stop();
  std::vector<int64_t> tokens;
  for (const auto& [id, token] : sessions_->OnIo([&] { return sessions_->HeldLeases(); })) {
    tokens.push_back(token);
  }
  auto& log = *sessions_->log();
  if (auto st = store_.ReleaseLeases(tokens); !st.ok()) {
    log.warn("could not give up {} leases: {}", tokens.size(), st);
  }
  // Ending the holder frees whatever lease is still stored under it, removes this replica's
  // heartbeat for previous-version replicas (expand step) and tells the others.
  if (auto holder = leases_->Holder(); holder.ok()) {
    if (auto st = store_.EndHolder(*holder); !st.ok()) {
      log.warn("could not leave the replica set (the leases expire in {}): {}", options_.lease_ttl,
               st);
    }
  }
  log.info("gave up {} session leases", tokens.size());
}

}  // namespace wasentinel::session
