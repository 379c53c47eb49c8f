// Monitor (monitor.h): loading, events, the checks and jobs, and classifying what they find.
#include "monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "monitor_internal.h"
#include "wasentinel/common/event_types.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

using event_types::kUnreachable;
using namespace internal;  // monitor_internal.h

constexpr absl::Duration kRefreshSaved = absl::Minutes(15);

void Trim(std::deque<absl::Time>& q, absl::Time since) {
  while (!q.empty() && q.front() <= since) q.pop_front();
}

// A connection that ended for a reason a reconnect may cure (not a person, not a replica hand-
// over, not WhatsApp asking for the usual restart, not an ending only a person can undo).
bool IsDrop(const sv1::SessionEvent& e) {
  if (e.from_state() != sv1::SESSION_STATE_CONNECTED ||
      e.to_state() == sv1::SESSION_STATE_CONNECTED) {
    return false;
  }
  switch (e.reason()) {
    case sv1::STATE_REASON_SOCKET_CLOSED:
    case sv1::STATE_REASON_KEEPALIVE_TIMEOUT:
    case sv1::STATE_REASON_SERVER_ERROR:
    case sv1::STATE_REASON_CONNECT_FAILED:
    case sv1::STATE_REASON_HANDSHAKE_FAILED:
    case sv1::STATE_REASON_PROTOCOL_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

Monitor::Monitor(Clock& clock, HealthStore& store, SessionSource& sessions, AlertSink& alerts,
                 HealthPolicy policy, std::shared_ptr<spdlog::logger> log)
    : clock_(clock),
      store_(store),
      sessions_(sessions),
      alerts_(alerts),
      policy_(policy),
      log_(std::move(log)),
      limiter_(policy.max_recoveries, policy.recovery_window) {}

absl::Status Monitor::Load() {
  auto sessions = store_.LoadAll();
  if (!sessions.ok()) return sessions.status();
  // A replica that leads again forgets what it knew as the previous leader.
  watched_.clear();
  open_alerts_.clear();
  pending_drops_.clear();
  rechecks_.clear();
  auto cursor = store_.LastSequence();
  if (!cursor.ok()) return cursor.status();
  cursor_ = cursor_saved_ = *cursor;
  limiter_.Clear();
  metrics_dirty_ = true;
  for (auto& s : *sessions) {
    Watched& w = watched_[s.health.session_id()];
    w.s = std::move(s);
  }
  auto open = store_.OpenAlerts();
  if (!open.ok()) return open.status();
  for (auto& a : *open) open_alerts_[a.dedup_key] = std::move(a);
  auto recent = store_.ReconnectsSince(clock_.Now() - policy_.recovery_window);
  if (!recent.ok()) return recent.status();
  for (const auto& r : *recent) limiter_.Record(r.session_id(), FromProto(r.at()));
  log_->info("watching {} sessions; {} alerts open; {} reconnects in the last {}", watched_.size(),
             open_alerts_.size(), recent->size(), absl::FormatDuration(policy_.recovery_window));
  return absl::OkStatus();
}

std::optional<v1::SessionHealth> Monitor::Health(const std::string& id) const {
  auto it = watched_.find(id);
  if (it == watched_.end()) return std::nullopt;
  return it->second.s.health;
}

Monitor::Watched& Monitor::Adopt(const sv1::Session& facts) {
  auto [it, inserted] = watched_.try_emplace(facts.id());
  Watched& w = it->second;
  if (inserted) {
    w.s.health.set_session_id(facts.id());
    w.s.first_seen_at = clock_.Now();
  }
  w.s.facts = facts;
  return w;
}

SessionMemory Monitor::MemoryOf(Watched& w) {
  const absl::Time now = clock_.Now();
  Trim(w.reconnects, now - absl::Hours(1));
  Trim(w.drops, now - absl::Hours(1));
  SessionMemory m;
  const auto& h = w.s.health;
  if (h.has_offline_since()) m.offline_since = FromProto(h.offline_since());
  m.last_proof_of_life = w.s.last_proof_of_life;
  m.recoveries_in_window = limiter_.Count(h.session_id(), now);
  if (h.has_last_recovery_at()) m.last_recovery_at = FromProto(h.last_recovery_at());
  m.reconnects_last_hour = static_cast<int>(w.reconnects.size());
  m.drops_last_hour = static_cast<int>(w.drops.size());
  m.undecryptable_last_hour = w.undecryptable_last_hour;
  m.failed_sends_last_hour = w.failed_sends_last_hour;
  m.socket_dead_since = w.socket_dead_since;
  m.manual_intervention = h.manual_intervention_required();
  m.manual_intervention_reason = h.manual_intervention_reason();
  return m;
}

void Monitor::OnEvent(const sv1::SessionEvent& e) {
  Tally tally;
  auto it = watched_.find(e.session_id());
  const absl::Time at = FromProto(e.at());
  if (metrics_) metrics_->Event(clock_.Now() - at);
  metrics_dirty_ = true;
  if (e.reason() == sv1::STATE_REASON_DELETED) {
    if (it != watched_.end()) ForgetSession(e.session_id(), "the session was deleted", tally);
    NoteSequence(e.sequence());
    return;
  }
  if (it == watched_.end()) {
    auto got = sessions_.BulkGet({e.session_id()});
    if (!got.ok() || got->empty()) {
      log_->warn("event for session {} that session-service does not answer for: {}",
                 e.session_id(), got.ok() ? "not found" : got.status().ToString());
      return;
    }
    it = watched_.find(Adopt(got->front()).s.health.session_id());
  }
  Watched& w = it->second;
  sv1::Session& f = w.s.facts;
  if (f.has_updated_at() && at < FromProto(f.updated_at())) {
    // Older than the facts held (a deep check read them later): nothing to change.
    NoteSequence(e.sequence());
    return;
  }
  *f.mutable_updated_at() = e.at();
  f.set_state(e.to_state());
  f.set_reason(e.reason());
  if (!e.error().empty()) f.set_last_error(e.error());
  if (e.to_state() == sv1::SESSION_STATE_CONNECTED) {
    *f.mutable_last_connected_at() = e.at();
    f.set_socket_alive(true);
    w.s.health.clear_offline_since();
  } else if (e.from_state() == sv1::SESSION_STATE_CONNECTED) {
    *f.mutable_last_disconnected_at() = e.at();
    f.set_socket_alive(false);
    *w.s.health.mutable_offline_since() = e.at();
  }
  if (e.to_state() == sv1::SESSION_STATE_CONNECTING) w.reconnects.push_back(at);
  if (e.to_state() == sv1::SESSION_STATE_LOGGED_OUT) f.set_has_credentials(false);
  if (e.to_state() == sv1::SESSION_STATE_CONNECTED) f.set_failure_code(0);
  if (e.to_state() != sv1::SESSION_STATE_BANNED) {
    f.set_ban_code(0);
    f.clear_ban_expires_at();
  }
  if (EndedByWhatsApp(f)) {
    // What WhatsApp said (its code, a ban's end) is in the session, not the event: the alert
    // about to be raised must carry it.
    if (auto fresh = sessions_.Get(e.session_id()); fresh.ok() && fresh->state() == e.to_state()) {
      f.set_failure_code(fresh->failure_code());
      f.set_ban_code(fresh->ban_code());
      if (fresh->has_ban_expires_at()) *f.mutable_ban_expires_at() = fresh->ban_expires_at();
      if (!fresh->last_error().empty()) f.set_last_error(fresh->last_error());
    }
  }
  const bool drop = IsDrop(e);
  if (drop) {
    w.drops.push_back(at);
    w.s.health.set_drops_today(w.s.health.drops_today() + 1);
  }
  w.facts_are_live = false;  // the socket facts of the last deep check are stale now
  Evaluate(w,
           absl::StrCat(StateName(e.from_state()), " → ", StateName(e.to_state()), " (",
                        ReasonName(e.reason()), ")"),
           tally, drop);
  // A drop needs recovering (README "Architecture" › "Health", Recovery), within the hourly
  // budget.
  if (drop && WantsSocket(f) && !w.s.health.manual_intervention_required()) {
    const std::string trigger = absl::StrCat("dropped (", ReasonName(e.reason()), ")");
    if (limiter_.Allows(e.session_id(), clock_.Now())) {
      pending_drops_[e.session_id()] = trigger;
    } else {
      Assessment a;
      a.action = Action::kEscalate;
      a.trigger = trigger;
      Act(w, a, tally);
    }
  }
  NoteSequence(e.sequence());
}

void Monitor::NoteSequence(int64_t sequence) {
  cursor_ = std::max(cursor_, sequence);
  if (cursor_ - cursor_saved_ >= 500) SaveCursor();
}

void Monitor::SaveCursor() {
  if (cursor_ <= cursor_saved_) return;
  if (auto st = store_.SetLastSequence(cursor_); !st.ok()) {
    log_->warn("storing the event cursor: {}", st);
    return;
  }
  cursor_saved_ = cursor_;
}

void Monitor::RecheckDue() {
  if (rechecks_.empty()) return;
  const absl::Time now = clock_.Now();
  std::vector<std::string> due;
  for (const auto& [id, at] : rechecks_) {
    if (at <= now) due.push_back(id);
  }
  Tally tally;
  for (const auto& id : due) {
    rechecks_.erase(id);
    auto it = watched_.find(id);
    if (it == watched_.end()) continue;
    auto facts = sessions_.Get(id);
    if (!facts.ok()) {
      log_->debug("looking again at session {}: {}", id, facts.status());
      continue;  // the next deep check sees it
    }
    Watched& w = Adopt(*facts);
    w.facts_are_live = true;
    Evaluate(w, "looked again", tally);
  }
}

v1::JobResult Monitor::DeepCheck() {
  const absl::Time started = absl::Now();
  v1::JobResult result;
  auto deep = sessions_.DeepHealth();
  if (!deep.ok()) {
    result.set_error(std::string(deep.status().message()));
    return result;
  }
  Tally tally;
  absl::flat_hash_set<std::string> seen;
  std::vector<std::string> ids;
  for (const auto& s : deep->sessions()) {
    seen.insert(s.id());
    ids.push_back(s.id());
    Watched& w = Adopt(s);
    w.facts_are_live = true;
    w.undecryptable_last_hour = s.undecryptable_last_hour();
    w.failed_sends_last_hour = s.failed_sends_last_hour();
  }
  EvaluateAll(ids, "deep check", tally);
  std::vector<std::string> gone;
  for (const auto& [id, w] : watched_) {
    if (!seen.contains(id)) gone.push_back(id);
  }
  for (const auto& id : gone) ForgetSession(id, "the session no longer exists", tally);
  CountLevels(result);
  result.set_reconnected(tally.reconnected);
  result.set_notified(tally.notified);
  const absl::Duration took = absl::Now() - started;
  *result.mutable_took() = ToProto(took);
  if (metrics_) metrics_->Check("deep", took);
  PublishMetrics();
  return result;
}

v1::JobResult Monitor::LightCheck() {
  const absl::Time started = absl::Now();
  v1::JobResult result;
  Tally tally;
  auto health = sessions_.Health();
  const absl::Time now = clock_.Now();
  if (metrics_) metrics_->SessionServiceUp(health.ok());
  if (!health.ok()) {
    last_error_ = std::string(health.status().message());
    if (reachable_) {
      log_->error("session-service does not answer: {}", last_error_);
      unreachable_since_ = now;
    }
    reachable_ = false;
    if (!unreachable_since_) unreachable_since_ = now;
    av1::RaiseAlertRequest req;
    if (RaiseOnce(kUnreachable, nullptr, kUnreachable, av1::SEVERITY_CRITICAL,
                  absl::StrCat("session-service does not answer since ",
                               absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", *unreachable_since_,
                                                absl::UTCTimeZone()),
                               ": ", last_error_))) {
      ++tally.notified;
    }
    result.set_error(last_error_);
    result.set_notified(tally.notified);
    return result;
  }
  if (!reachable_) {
    log_->info("session-service answers again");
    if (ResolveOpen(kUnreachable, "session-service answers again")) ++tally.notified;
  }
  reachable_ = true;
  unreachable_since_.reset();
  last_error_.clear();
  uptime_ = absl::Seconds(health->uptime().seconds()) + absl::Nanoseconds(health->uptime().nanos());
  // Time alone moves sessions along (offline → critical); nothing socket-based is decided on
  // facts a deep check gathered minutes ago.
  std::vector<std::string> ids;
  for (auto& [id, w] : watched_) {
    // A dead socket being looked at again keeps its live facts until the second look.
    if (!w.socket_dead_since) w.facts_are_live = false;
    ids.push_back(id);
  }
  EvaluateAll(ids, "light check", tally);
  CountLevels(result);
  result.set_reconnected(tally.reconnected);
  result.set_notified(tally.notified);
  if (metrics_) metrics_->Check("light", absl::Now() - started);
  PublishMetrics();
  return result;
}

v1::JobResult Monitor::ResetDailyCounters(absl::Duration history_retention) {
  v1::JobResult result;
  const absl::Time now = clock_.Now();
  std::vector<const MonitoredSession*> saves;
  for (auto& [id, w] : watched_) {
    v1::SessionHealth& h = w.s.health;
    if (h.drops_today() == 0 && h.recoveries_today() == 0) continue;
    h.set_drops_today(0);
    h.set_recoveries_today(0);
    w.saved_at = now;
    saves.push_back(&w.s);
  }
  if (auto st = store_.SaveBatch(saves, {}); !st.ok()) {
    result.set_error(absl::StrCat("saving the reset counters: ", st.message()));
    return result;
  }
  auto pruned = store_.PruneHistoryBefore(now - history_retention, 1000);
  if (!pruned.ok()) {
    result.set_error(absl::StrCat("pruning history: ", pruned.status().message()));
  } else {
    log_->info("day's counters reset on {} sessions; {} history rows older than {} pruned",
               saves.size(), *pruned, absl::FormatDuration(history_retention));
  }
  CountLevels(result);
  return result;
}

v1::JobResult Monitor::CleanupInactive() {
  v1::JobResult result;
  Tally tally;
  std::vector<std::string> ids;
  ids.reserve(watched_.size());
  for (const auto& [id, w] : watched_) ids.push_back(id);
  absl::flat_hash_set<std::string> present;
  constexpr size_t kBulk = 500;  // BulkGetSessions takes 1..500 ids
  for (size_t i = 0; i < ids.size(); i += kBulk) {
    std::vector<std::string> chunk(ids.begin() + i, ids.begin() + std::min(ids.size(), i + kBulk));
    auto got = sessions_.BulkGet(chunk);
    if (!got.ok()) {
      // Nothing is forgotten on a failed read.
      result.set_error(std::string(got.status().message()));
      return result;
    }
    for (const auto& s : *got) present.insert(s.id());
  }
  int forgotten = 0;
  for (const auto& id : ids) {
    if (present.contains(id)) continue;
    ForgetSession(id, "the session no longer exists", tally);
    ++forgotten;
  }
  for (const auto& [id, w] : watched_) {
    if (w.s.health.level() != v1::HEALTH_LEVEL_INACTIVE) continue;
    for (const char* kind : {kOffline, kLoggedOut, kManual, kBanned, kOutdated, kPhone}) {
      if (ResolveOpen(DedupKey(kind, id), w.s.health.cause())) ++tally.notified;
    }
  }
  if (forgotten > 0) log_->info("forgot {} sessions session-service no longer has", forgotten);
  CountLevels(result);
  result.set_notified(tally.notified);
  PublishMetrics();
  return result;
}

void Monitor::ForgetSession(const std::string& id, const std::string& note, Tally& tally) {
  for (const char* kind : {kOffline, kLoggedOut, kManual, kBanned, kOutdated, kPhone}) {
    if (ResolveOpen(DedupKey(kind, id), note)) ++tally.notified;
  }
  if (auto st = store_.Forget(id); !st.ok()) log_->warn("forgetting session {}: {}", id, st);
  watched_.erase(id);
  pending_drops_.erase(id);
  rechecks_.erase(id);
  limiter_.Reset(id);
}

void Monitor::PublishIfChanged() {
  if (metrics_dirty_) PublishMetrics();
}

void Monitor::PublishMetrics() {
  metrics_dirty_ = false;
  if (!metrics_) return;
  std::array<int64_t, 5> by_level{};
  int64_t manual = 0;
  std::vector<int> scores;
  scores.reserve(watched_.size());
  int64_t phones_warning = 0, phones_critical = 0;
  const absl::Time now = clock_.Now();
  for (const auto& [id, w] : watched_) {
    const v1::SessionHealth& h = w.s.health;
    if (h.level() >= 0 && h.level() < static_cast<int>(by_level.size())) ++by_level[h.level()];
    if (auto away = PhoneAway(w.s.facts, now)) {
      if (*away >= policy_.phone_inactive_critical_after) {
        ++phones_critical;
      } else if (*away >= policy_.phone_inactive_warning_after) {
        ++phones_warning;
      }
    }
    if (h.manual_intervention_required()) ++manual;
    if (h.level() != v1::HEALTH_LEVEL_INACTIVE) scores.push_back(h.score());
  }
  metrics_->Snapshot(by_level, manual, scores);
  metrics_->PhonesInactive(phones_warning, phones_critical);
}

Monitor::Evaluated Monitor::Classify(Watched& w, const std::string& why, bool drop) {
  const absl::Time now = clock_.Now();
  Evaluated e;
  const bool socket_dead = w.facts_are_live && w.s.facts.state() == sv1::SESSION_STATE_CONNECTED &&
                           !w.s.facts.socket_alive();
  if (!socket_dead) {
    w.socket_dead_since.reset();
  } else if (!w.socket_dead_since) {
    w.socket_dead_since = now;
  }
  e.a = Assess(w.s.facts, MemoryOf(w), now, policy_, w.facts_are_live);
  const Assessment& a = e.a;
  v1::SessionHealth& h = w.s.health;
  v1::SessionHealth before = h;
  before.clear_last_checked_at();
  const v1::HealthLevel old_level = h.level();
  const sv1::SessionState old_state = h.state();
  const sv1::Session& f = w.s.facts;
  h.set_tenant_id(f.tenant_id());
  h.set_account_name(f.account_name());
  h.set_phone_number_masked(f.phone_number().empty() ? "" : MaskPhone(f.phone_number()));
  h.set_state(f.state());
  h.set_reason(f.reason());
  h.set_level(a.level);
  h.set_score(a.score);
  h.set_quality(a.band);
  h.clear_factors();
  for (const auto& factor : a.factors) *h.add_factors() = factor;
  h.set_cause(a.cause);
  if (a.offline_since) {
    *h.mutable_offline_since() = ToProto(*a.offline_since);
  } else {
    h.clear_offline_since();
  }
  if (f.has_last_connected_at()) *h.mutable_last_connected_at() = f.last_connected_at();
  if (f.has_last_disconnected_at()) *h.mutable_last_disconnected_at() = f.last_disconnected_at();
  if (f.has_phone_last_seen_at()) *h.mutable_phone_last_seen_at() = f.phone_last_seen_at();
  h.set_recovery_attempts_last_hour(limiter_.Count(h.session_id(), now));
  *h.mutable_last_checked_at() = ToProto(now);
  if (old_level != a.level) *h.mutable_level_since() = ToProto(now);
  // Saved when something but the check time changed, and at least every kRefreshSaved: a deep
  // check over thousands of unchanged sessions writes nothing.
  v1::SessionHealth after = h;
  after.clear_last_checked_at();
  e.save =
      now - w.saved_at >= kRefreshSaved || before.SerializeAsString() != after.SerializeAsString();
  if (old_level != a.level || old_state != f.state()) {
    v1::Transition& t = e.transition.emplace();
    t.set_session_id(h.session_id());
    *t.mutable_at() = ToProto(now);
    if (old_level != a.level) {
      t.set_from_level(old_level);
      t.set_to_level(a.level);
    }
    if (old_state != f.state()) {
      t.set_from_state(old_state);
      t.set_to_state(f.state());
      t.set_drop(drop);
    }
    t.set_cause(absl::StrCat(why, ": ", a.cause));
    if (old_level != a.level) {
      log_->info("session {} ({}) {} → {}: {}", h.session_id(), h.phone_number_masked(),
                 v1::HealthLevel_Name(old_level), v1::HealthLevel_Name(a.level), t.cause());
    }
  }
  return e;
}

void Monitor::Evaluate(Watched& w, const std::string& why, Tally& tally, bool drop) {
  const Evaluated e = Classify(w, why, drop);
  if (e.save) Persist(w);
  if (e.transition) {
    if (auto id = store_.AddTransition(*e.transition); !id.ok()) {
      log_->warn("recording a transition of {}: {}", w.s.health.session_id(), id.status());
    }
  }
  Alert(w, e.a, tally);
  PhoneAlert(w, tally);
  Act(w, e.a, tally);
}

void Monitor::EvaluateAll(const std::vector<std::string>& ids, const std::string& why,
                          Tally& tally) {
  std::vector<std::pair<std::string, Evaluated>> evaluated;
  std::vector<const MonitoredSession*> saves;
  std::vector<v1::Transition> transitions;
  const absl::Time now = clock_.Now();
  for (const auto& id : ids) {
    auto it = watched_.find(id);
    if (it == watched_.end()) continue;
    Evaluated e = Classify(it->second, why);
    if (e.save) {
      saves.push_back(&it->second.s);
      it->second.saved_at = now;
    }
    if (e.transition) transitions.push_back(*e.transition);
    evaluated.emplace_back(id, std::move(e));
  }
  // One commit for the lot (watched_ is not changed until it is written).
  if (auto st = store_.SaveBatch(saves, transitions); !st.ok()) {
    log_->warn("saving the health of {} sessions: {}", saves.size(), st);
  }
  for (const auto& [id, e] : evaluated) {
    auto it = watched_.find(id);
    if (it == watched_.end()) continue;
    Alert(it->second, e.a, tally);
    PhoneAlert(it->second, tally);
    Act(it->second, e.a, tally);
  }
}

void Monitor::Persist(Watched& w) {
  w.saved_at = clock_.Now();
  if (auto st = store_.Save(w.s); !st.ok()) {
    log_->warn("saving the health of {}: {}", w.s.health.session_id(), st);
  }
}

void Monitor::CountLevels(v1::JobResult& result) const {
  for (const auto& [id, w] : watched_) {
    result.set_total(result.total() + 1);
    switch (w.s.health.level()) {
      case v1::HEALTH_LEVEL_HEALTHY:
        result.set_healthy(result.healthy() + 1);
        break;
      case v1::HEALTH_LEVEL_WARNING:
        result.set_warning(result.warning() + 1);
        break;
      case v1::HEALTH_LEVEL_CRITICAL:
        result.set_critical(result.critical() + 1);
        break;
      default:
        break;
    }
  }
}

}  // namespace wasentinel::monitor
