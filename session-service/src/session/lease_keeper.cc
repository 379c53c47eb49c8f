#include "lease_keeper.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
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

absl::Status LeaseKeeper::StartHolder() {
  const SteadyClock::time_point sent = SteadyClock::now();
  WAS_ASSIGN_OR_RETURN(const int64_t holder, store_.StartHolder(Me(), options_.lease_ttl));
  holder_ = holder;
  last_renewed_ = sent;  // before Start: the keeper thread has not begun
  sessions_->log()->info("joined the replica set as lease holder {}", holder);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LeaseKeeper::Holder() const {
  const int64_t holder = holder_.load();
  if (holder == 0) {
    return absl::UnavailableError(
        absl::StrCat("replica ", options_.replica_id,
                     " is not in the replica set yet (starting, or starting again after its "
                     "leases expired); retry"));
  }
  return holder;
}

absl::Status LeaseKeeper::HoldLease(SessionRecord& rec) {
  absl::MutexLock lock(&lease_mu_);
  if (sessions_->OnIo([&] { return sessions_->HasLease(rec.id); })) return absl::OkStatus();
  WAS_ASSIGN_OR_RETURN(int64_t holder, Holder());
  auto acquired = store_.AcquireLeases({rec.id}, options_.replica_id, holder);
  if (absl::IsFailedPrecondition(acquired.status()) &&
      absl::StrContains(acquired.status().message(), "holder") && AwaitNewHolder(holder)) {
    // This replica's holder expired and was deleted (PostgreSQL was out of reach longer than
    // the TTL): the keeper started a new one at once, under which the lease is taken.
    holder = holder_.load();
    acquired = store_.AcquireLeases({rec.id}, options_.replica_id, holder);
  }
  if (absl::IsFailedPrecondition(acquired.status())) {
    // The holder was deleted meanwhile (it expired; a new one is starting), or the session.
    return absl::UnavailableError(absl::StrCat("the lease of session ", rec.id,
                                               " could not be taken now; retry (",
                                               acquired.status().message(), ")"));
  }
  WAS_ASSIGN_OR_RETURN(auto won, std::move(acquired));
  if (won.empty()) {
    WAS_ASSIGN_OR_RETURN(auto owner, store_.LeaseOwner(rec.id));
    if (!owner) {
      return absl::UnavailableError(
          absl::StrCat("the lease of session ", rec.id, " is changing hands; retry"));
    }
    return HeldElsewhere(rec.id, owner->id);
  }
  // The row as it stands now that the lease is ours: `rec` was read before, and a write of the
  // previous holder (this replica's own, queued while its lease lapsed) may have landed since;
  // from here on the lease fences out every older writer, so this read is the state to go on
  // from.
  auto fresh = store_.Get(rec.id);
  if (!fresh.ok()) {
    (void)store_.ReleaseLeases({won.front().token});
    return fresh.status();
  }
  rec = *std::move(fresh);
  sessions_->OnIo([&] { sessions_->Adopt(rec, won.front().token); });
  return absl::OkStatus();
}

void LeaseKeeper::ClaimOrphans(v1::StateReason reason) {
  absl::MutexLock lock(&lease_mu_);
  if (stopping_claims_) return;
  auto& log = *sessions_->log();
  const auto holder = Holder();
  if (!holder.ok()) return;  // no holder to claim under: the next renewal starts one
  auto replicas = store_.LiveReplicas();
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
  auto claimed = store_.ClaimOrphans(options_.replica_id, *holder, static_cast<int>(limit));
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
  const int64_t holder = holder_.load();
  if (holder == 0) return NewEpoch();  // the last one ended and no new one could start yet
  const auto held = sessions_->OnIo([&] { return sessions_->HeldLeases(); });
  // One row written, whatever the number of leases: they all name this holder.
  auto renewed = store_.RenewHolder(holder, options_.lease_ttl);
  if (renewed.ok()) {
    last_renewed_ = sent;
    if (renewed->previous_version_alive != previous_version_alive_) {
      // Expand step (store.h HolderState; the contract release removes it): the renewal wrote
      // each lease's own expiry and this replica's heartbeat too while this is on.
      previous_version_alive_ = renewed->previous_version_alive;
      if (previous_version_alive_) {
        log.info(
            "replicas of the previous version are running: renewing each lease too until they "
            "are gone");
      } else {
        log.info("no replica of the previous version is left: renewing the lease holder alone");
      }
    }
    int64_t token_sum = 0;
    for (const auto& [id, token] : held) token_sum += token;
    // Tokens are unique, so the count and the sum differ as soon as a lease was lost or
    // gained behind the state machine's back; only then are the tokens read one by one.
    if (renewed->leases != static_cast<int64_t>(held.size()) || renewed->token_sum != token_sum) {
      Reconcile(holder);
    }
    return true;
  }
  if (absl::IsNotFound(renewed.status())) {
    // The holder expired and another replica deleted it, freeing every lease it had; some may
    // have new holders already. Nothing can be written under the old holder any more.
    log.error(
        "lease holder {} expired and was deleted (last renewed {} ago): closing {} sockets, "
        "then joining again under a new holder",
        holder, absl::FromChrono(SteadyClock::now() - last_renewed_), held.size());
    holder_ = 0;  // leases taken from now on wait for the new holder
    // Every lease held when this runs, not only those in `held`: one adopted meanwhile was
    // taken under the deleted holder too. Posted before the new holder starts, so it runs
    // before anything is adopted under that one.
    sessions_->Post([sessions = sessions_] {
      for (const auto& [id, token] : sessions->HeldLeases()) {
        sessions->LoseLease(id, token, "its lease expired while the database could not be reached",
                            true);
      }
    });
    return NewEpoch();
  }
  const absl::Duration silent = absl::FromChrono(SteadyClock::now() - last_renewed_);
  log.warn("cannot renew lease holder {} with {} session leases (last renewed {} ago): {}", holder,
           held.size(), silent, renewed.status());
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

void LeaseKeeper::Reconcile(int64_t holder) {
  auto& log = *sessions_->log();
  // Under lease_mu_ no lease is between its acquisition and its adoption, so the database and
  // the state machine can be compared as they stand.
  absl::MutexLock lock(&lease_mu_);
  auto stored = store_.HeldTokens(holder);
  if (!stored.ok()) {
    log.warn("cannot compare the leases of holder {}: {}", holder, stored.status());
    return;  // the next renewal finds the difference again
  }
  const auto held = sessions_->OnIo([&] { return sessions_->HeldLeases(); });
  const absl::flat_hash_set<int64_t> in_store(stored->begin(), stored->end());
  absl::flat_hash_set<int64_t> in_memory;
  std::vector<std::pair<std::string, int64_t>> lost;
  for (const auto& h : held) {
    in_memory.insert(h.second);
    if (!in_store.contains(h.second)) lost.push_back(h);
  }
  if (!lost.empty()) {
    sessions_->Post([sessions = sessions_, lost = std::move(lost)] {
      for (const auto& [id, token] : lost) {
        sessions->LoseLease(id, token, "another replica took it over", false);
      }
    });
  }
  // Leases stored under this holder that no runtime here carries (a claimed session that
  // could not be read, a socket closed while the database was out of reach): renewing the
  // holder would keep them alive unused, so they are given up for any replica to claim.
  std::vector<int64_t> unused;
  for (const int64_t token : *stored) {
    if (!in_memory.contains(token)) unused.push_back(token);
  }
  if (unused.empty()) return;
  if (auto st = store_.ReleaseLeases(unused); !st.ok()) {
    log.warn("cannot give up {} leases no session here holds: {}", unused.size(), st);
    return;
  }
  log.info("gave up {} leases no session here holds", unused.size());
}

bool LeaseKeeper::AwaitNewHolder(int64_t gone) {
  {
    absl::MutexLock lock(&keeper_mu_);
    keeper_nudged_ = true;
  }
  absl::MutexLock lock(&keeper_mu_);
  auto replaced = [this, gone]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(keeper_mu_) {
    const int64_t now = holder_.load();
    return keeper_stop_ || (now != 0 && now != gone);
  };
  return keeper_mu_.AwaitWithTimeout(absl::Condition(&replaced), absl::Seconds(3)) && !keeper_stop_;
}

bool LeaseKeeper::NewEpoch() {
  const SteadyClock::time_point sent = SteadyClock::now();
  auto holder = store_.StartHolder(Me(), options_.lease_ttl);
  if (!holder.ok()) {
    sessions_->log()->warn("cannot start a new lease holder: {}", holder.status());
    return false;
  }
  {
    absl::MutexLock lock(&keeper_mu_);  // wakes AwaitNewHolder
    holder_ = *holder;
  }
  last_renewed_ = sent;
  sessions_->log()->info("joined the replica set again as lease holder {}", *holder);
  return true;
}

}  // namespace wasentinel::session
