#include "lease_keeper.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "session_rules.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {

using SteadyClock = std::chrono::steady_clock;

LeaseKeeper::LeaseKeeper(SessionStore& store, const ManagerOptions& options,
                         std::shared_ptr<StateMachine> sessions)
    : store_(store), options_(options), sessions_(std::move(sessions)) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

absl::Status LeaseKeeper::HoldLease(const SessionRecord& rec) {
  absl::MutexLock lock(&lease_mu_);
  if (sessions_->OnIo([&] { return sessions_->HasLease(rec.id); })) return absl::OkStatus();
  WAS_ASSIGN_OR_RETURN(auto won,
                       store_.AcquireLeases({rec.id}, options_.replica_id, options_.lease_ttl));
  if (won.empty()) {
    WAS_ASSIGN_OR_RETURN(auto owner, store_.LeaseOwner(rec.id));
    if (!owner) {
      return absl::UnavailableError(
          absl::StrCat("the lease of session ", rec.id, " is changing hands; retry"));
    }
    return HeldElsewhere(rec.id, owner->id);
  }
  sessions_->OnIo([&] { sessions_->Adopt(rec, won.front().token); });
  return absl::OkStatus();
}

void LeaseKeeper::ClaimOrphans(v1::StateReason reason) {
  absl::MutexLock lock(&lease_mu_);
  if (stopping_claims_) return;
  auto& log = *sessions_->log();
  auto replicas = store_.LiveReplicas(options_.lease_ttl);
  auto counts = replicas.ok() ? store_.CountWanted() : replicas.status();
  if (!counts.ok()) {
    log.warn("cannot look for orphaned sessions: {}", counts.status());
    return;
  }
  if (counts->orphaned == 0) return;
  const int64_t live = std::max<int64_t>(1, static_cast<int64_t>(replicas->size()));
  const int64_t held = sessions_->OnIo([&] { return static_cast<int64_t>(sessions_->held()); });
  const int64_t share = (counts->wanted + live - 1) / live;
  const int64_t limit = std::max(share - held, (counts->orphaned + live - 1) / live);
  auto claimed =
      store_.ClaimOrphans(options_.replica_id, options_.lease_ttl, static_cast<int>(limit));
  if (!claimed.ok()) {
    log.warn("claiming orphaned sessions: {}", claimed.status());
    return;
  }
  if (claimed->empty()) return;
  std::vector<std::string> ids;
  absl::flat_hash_map<std::string, int64_t> tokens;
  for (const auto& l : *claimed) {
    ids.push_back(l.session_id);
    tokens[l.session_id] = l.token;
  }
  auto records = store_.GetMany(ids);
  if (!records.ok()) {
    std::vector<int64_t> giving_up;
    for (const auto& l : *claimed) giving_up.push_back(l.token);
    (void)store_.ReleaseLeases(giving_up);
    log.warn("claimed {} sessions but could not read them: {}", ids.size(), records.status());
    return;
  }
  log.info("took over {} sessions that no replica held ({} replicas live)", ids.size(), live);
  sessions_->OnIo([&] { sessions_->AdoptAndRestore(*records, tokens, reason); });
}

void LeaseKeeper::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void LeaseKeeper::Nudge() {
  absl::MutexLock lock(&keeper_mu_);
  keeper_nudged_ = true;
}

void LeaseKeeper::Stop() {
  {
    absl::MutexLock lock(&lease_mu_);
    stopping_claims_ = true;
  }
  {
    absl::MutexLock lock(&keeper_mu_);
    keeper_stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LeaseKeeper::Loop() {
  const absl::Duration every = options_.lease_ttl / 3;
  for (;;) {
    {
      absl::MutexLock lock(&keeper_mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(keeper_mu_) {
        return keeper_stop_ || keeper_nudged_;
      };
      keeper_mu_.AwaitWithTimeout(absl::Condition(&wake), every);
      if (keeper_stop_) return;
      keeper_nudged_ = false;
    }
    if (Renew()) ClaimOrphans(v1::STATE_REASON_TAKEOVER);
  }
}

bool LeaseKeeper::Renew() {
  auto& log = *sessions_->log();
  const SteadyClock::time_point sent = SteadyClock::now();
  const auto held = sessions_->OnIo([&] { return sessions_->HeldLeases(); });
  std::vector<int64_t> tokens;
  tokens.reserve(held.size());
  for (const auto& [id, token] : held) tokens.push_back(token);
  const absl::Status beat = store_.Heartbeat(Me());
  absl::StatusOr<std::vector<int64_t>> renewed =
      beat.ok() ? store_.RenewLeases(tokens, options_.lease_ttl) : beat;
  if (renewed.ok()) {
    last_renewed_ = sent;
    const absl::flat_hash_set<int64_t> alive(renewed->begin(), renewed->end());
    std::vector<std::pair<std::string, int64_t>> lost;
    for (const auto& h : held) {
      if (!alive.contains(h.second)) lost.push_back(h);
    }
    if (!lost.empty()) {
      sessions_->Post([sessions = sessions_, lost = std::move(lost)] {
        for (const auto& [id, token] : lost) {
          sessions->LoseLease(id, token, "another replica took it over", false);
        }
      });
    }
    return true;
  }
  const absl::Duration silent = absl::FromChrono(SteadyClock::now() - last_renewed_);
  log.warn("cannot renew {} session leases (last renewed {} ago): {}", held.size(), silent,
           renewed.status());
  if (silent > options_.lease_ttl * 0.8 && !held.empty()) {
    log.error("closing {} sockets: their leases may have expired, so another replica may hold them",
              held.size());
    sessions_->Post([sessions = sessions_, held] {
      for (const auto& [id, token] : held) {
        sessions->LoseLease(id, token, "its lease could not be renewed (database unreachable)",
                            true);
      }
    });
  }
  return false;
}

}  // namespace wasentinel::session
