#include "monitor.h"

#include <spdlog/spdlog.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/event_types.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

using event_types::kUnreachable;
// Dedup-key kinds: one alert per session and outage.
constexpr const char* kOffline = event_types::kOfflineKind;
constexpr const char* kLoggedOut = event_types::kLoggedOut;
constexpr const char* kManual = event_types::kManualIntervention;
constexpr const char* kBanned = event_types::kTemporarilyBanned;
constexpr const char* kOutdated = event_types::kClientOutdated;
constexpr const char* kPhone = event_types::kPhoneInactive;
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

std::string StateName(sv1::SessionState s) {
  std::string n = sv1::SessionState_Name(s);
  return absl::StartsWith(n, "SESSION_STATE_") ? n.substr(14) : n;
}

std::string ReasonName(sv1::StateReason r) {
  std::string n = sv1::StateReason_Name(r);
  return absl::StartsWith(n, "STATE_REASON_") ? n.substr(13) : n;
}

}  // namespace

std::string DedupKey(std::string_view kind, std::string_view session_id) {
  return absl::StrCat(Sv(kind), "/", Sv(session_id));
}

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
           tally);
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

void Monitor::Settle() {
  Tally tally;
  auto pending = std::exchange(pending_drops_, {});
  if (!pending.empty()) metrics_dirty_ = true;
  for (auto& [id, trigger] : pending) {
    auto it = watched_.find(id);
    if (it == watched_.end()) continue;
    Watched& w = it->second;
    if (w.s.health.manual_intervention_required() || !WantsSocket(w.s.facts)) continue;
    const absl::Time now = clock_.Now();
    if (w.s.facts.state() == sv1::SESSION_STATE_CONNECTED) {
      // session-service reconnected it by itself: a recovery all the same.
      limiter_.Record(id, now);
      *w.s.health.mutable_last_recovery_at() = ToProto(now);
      v1::RecoveryAttempt r;
      r.set_session_id(id);
      *r.mutable_at() = ToProto(now);
      r.set_action(v1::RecoveryAttempt::ACTION_RECONNECT);
      r.set_outcome(v1::RecoveryAttempt::OUTCOME_SUCCEEDED);
      r.set_trigger(absl::StrCat(trigger, "; session-service reconnected it"));
      RecordRecovery(w, r);
      w.s.health.set_recovery_attempts_last_hour(limiter_.Count(id, now));
      Persist(w);
      continue;
    }
    Assessment a;
    a.action = limiter_.Allows(id, now) ? Action::kReconnect : Action::kEscalate;
    a.trigger = std::move(trigger);
    Act(w, a, tally);
  }
  SaveCursor();
  PublishIfChanged();
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
    Adopt(s).facts_are_live = true;
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

void Monitor::RecordRecovery(Watched& w, const v1::RecoveryAttempt& r) {
  w.s.health.set_recoveries_today(w.s.health.recoveries_today() + 1);
  if (auto st = store_.AddRecovery(r); !st.ok()) {
    log_->warn("recording a recovery attempt of {}: {}", r.session_id(), st.status());
  }
  if (metrics_) {
    auto lower = [](std::string n, size_t prefix) {
      return absl::AsciiStrToLower(n.substr(prefix));
    };
    metrics_->Recovery(lower(v1::RecoveryAttempt::Action_Name(r.action()), 7),
                       lower(v1::RecoveryAttempt::Outcome_Name(r.outcome()), 8));
  }
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

absl::StatusOr<v1::SessionHealth> Monitor::Acknowledge(const std::string& session_id,
                                                       const std::string& note) {
  auto it = watched_.find(session_id);
  if (it == watched_.end()) {
    return absl::NotFoundError(absl::StrCat("the monitor has not seen session ", session_id));
  }
  Watched& w = it->second;
  limiter_.Reset(session_id);
  if (w.s.health.manual_intervention_required()) {
    w.s.health.set_manual_intervention_required(false);
    w.s.health.clear_manual_intervention_reason();
    ResolveOpen(DedupKey(kManual, session_id),
                absl::StrCat("acknowledged", note.empty() ? "" : ": ", note));
  }
  Tally tally;
  metrics_dirty_ = true;
  Evaluate(w, absl::StrCat("acknowledged", note.empty() ? "" : ": ", note), tally);
  return w.s.health;
}

Monitor::Evaluated Monitor::Classify(Watched& w, const std::string& why) {
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
    }
    t.set_cause(absl::StrCat(why, ": ", a.cause));
    if (old_level != a.level) {
      log_->info("session {} ({}) {} → {}: {}", h.session_id(), h.phone_number_masked(),
                 v1::HealthLevel_Name(old_level), v1::HealthLevel_Name(a.level), t.cause());
    }
  }
  return e;
}

void Monitor::Evaluate(Watched& w, const std::string& why, Tally& tally) {
  const Evaluated e = Classify(w, why);
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

void Monitor::Act(Watched& w, const Assessment& a, Tally& tally) {
  const std::string& id = w.s.health.session_id();
  const absl::Time now = clock_.Now();
  auto record = [&](v1::RecoveryAttempt::Action action, v1::RecoveryAttempt::Outcome outcome,
                    const std::string& error) {
    v1::RecoveryAttempt r;
    r.set_session_id(id);
    *r.mutable_at() = ToProto(now);
    r.set_action(action);
    r.set_outcome(outcome);
    r.set_trigger(a.trigger);
    r.set_error(error);
    RecordRecovery(w, r);
  };
  auto reconnect = [&] {
    auto done = sessions_.Reconnect(id);
    if (absl::IsFailedPrecondition(done.status())) {
      // session-service knows better: it ended meanwhile (replaced, logged out) or a person
      // stopped it. Not an attempt; its events are on their way, and a second look follows.
      log_->info("session {}: not reconnected ({}): {}", id, a.trigger, done.status().message());
      rechecks_.try_emplace(id, now + policy_.socket_dead_grace);
      return;
    }
    limiter_.Record(id, now);
    *w.s.health.mutable_last_recovery_at() = ToProto(now);
    log_->info("session {}: Reconnect ({}): {}", id, a.trigger,
               done.ok() ? "started" : done.status().ToString());
    record(v1::RecoveryAttempt::ACTION_RECONNECT,
           done.ok() ? v1::RecoveryAttempt::OUTCOME_STARTED : v1::RecoveryAttempt::OUTCOME_FAILED,
           done.ok() ? "" : std::string(done.status().message()));
    ++tally.reconnected;
    w.s.health.set_recovery_attempts_last_hour(limiter_.Count(id, now));
    Persist(w);
  };
  auto escalate = [&] {
    if (w.s.health.manual_intervention_required()) return;
    w.s.health.set_manual_intervention_required(true);
    w.s.health.set_manual_intervention_reason(
        absl::StrCat(limiter_.Count(id, now), " recovery attempts in the last ",
                     absl::FormatDuration(policy_.recovery_window), " did not keep it connected (",
                     a.trigger, ")"));
    log_->warn("session {}: manual intervention required: {}", id,
               w.s.health.manual_intervention_reason());
    Tally ignored;
    Evaluate(w, "recovery exhausted", ignored);  // CRITICAL now; raises the alert
    tally.notified += ignored.notified;
  };
  switch (a.action) {
    case Action::kNone:
      return;
    case Action::kReconnect:
      return reconnect();
    case Action::kEscalate:
      return escalate();
    case Action::kRecheck:
      rechecks_.try_emplace(id, now + policy_.socket_dead_grace);
      return;
    case Action::kProbe: {
      auto rtt = sessions_.Probe(id);
      record(
          v1::RecoveryAttempt::ACTION_PROBE,
          rtt.ok() ? v1::RecoveryAttempt::OUTCOME_SUCCEEDED : v1::RecoveryAttempt::OUTCOME_FAILED,
          rtt.ok() ? "" : std::string(rtt.status().message()));
      if (rtt.ok()) {
        w.s.last_proof_of_life = now;
        Persist(w);
        return;
      }
      if (absl::IsFailedPrecondition(rtt.status()) || absl::IsNotFound(rtt.status())) {
        // Not connected any more (its events are on their way): nothing to cure by force.
        log_->info("session {}: not probed ({}); looking again shortly", id,
                   rtt.status().message());
        rechecks_.try_emplace(id, now + policy_.socket_dead_grace);
        return;
      }
      log_->info("session {}: probe failed ({}); reconnecting", id, rtt.status().message());
      return limiter_.Allows(id, now) ? reconnect() : escalate();
    }
  }
}

void Monitor::Alert(Watched& w, const Assessment& a, Tally& tally) {
  const v1::SessionHealth& h = w.s.health;
  const std::string& id = h.session_id();
  const sv1::Session& f = w.s.facts;
  auto raise = [&](const char* kind, const char* event_type, av1::Severity severity,
                   const std::string& summary) {
    if (RaiseOnce(DedupKey(kind, id), &w, event_type, severity, summary)) ++tally.notified;
  };
  auto resolve = [&](const char* kind, const std::string& note) {
    if (ResolveOpen(DedupKey(kind, id), note)) ++tally.notified;
  };
  const std::string who =
      absl::StrCat(h.account_name().empty() ? "session" : h.account_name(),
                   h.phone_number_masked().empty() ? "" : " (", h.phone_number_masked(),
                   h.phone_number_masked().empty() ? "" : ")");
  // A ban that ended, a version problem a person is fixing: their alert is over even before
  // the session is back (a new ban or a new 405 is a new alert, with its own end and text).
  if (f.state() != sv1::SESSION_STATE_BANNED) resolve(kBanned, "the ban ended");
  if (f.reason() != sv1::STATE_REASON_CLIENT_OUTDATED) resolve(kOutdated, "connecting again");
  if (a.level == v1::HEALTH_LEVEL_HEALTHY || a.level == v1::HEALTH_LEVEL_INACTIVE) {
    const std::string note = a.level == v1::HEALTH_LEVEL_HEALTHY ? "connected again" : a.cause;
    resolve(kOffline, note);
    resolve(kLoggedOut, note);
    resolve(kBanned, note);
    resolve(kOutdated, note);
    if (!h.manual_intervention_required()) resolve(kManual, note);
    return;
  }
  if (a.needs_person) {
    // What WhatsApp said, in its words as session-service recorded them (README "Session
    // states" › "What WhatsApp says").
    const std::string said = f.last_error().empty() ? "" : absl::StrCat(" (", f.last_error(), ")");
    const std::string connect = absl::StrCat("`wactl sessions connect ", id, "`");
    if (f.state() == sv1::SESSION_STATE_LOGGED_OUT) {
      raise(kLoggedOut, event_types::kLoggedOut, av1::SEVERITY_CRITICAL,
            absl::StrCat(who, " was logged out at WhatsApp", said,
                         ": link the device again (pair by QR code or phone-number code)"));
    } else if (f.state() == sv1::SESSION_STATE_BANNED) {
      const std::string until =
          f.has_ban_expires_at()
              ? absl::StrCat(" until ",
                             absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                              FromProto(f.ban_expires_at()), absl::UTCTimeZone()),
                             "; session-service connects it again then")
              : absl::StrCat(
                    "; WhatsApp gave no end, so session-service waits: once the phone "
                    "shows the ban lifted, ",
                    connect);
      raise(kBanned, event_types::kTemporarilyBanned, av1::SEVERITY_CRITICAL,
            absl::StrCat(who, " is temporarily banned by WhatsApp", said, until,
                         ". Stop what caused it (bulk or unsolicited messages) before then."));
    } else if (f.reason() == sv1::STATE_REASON_CLIENT_OUTDATED) {
      raise(
          kOutdated, event_types::kClientOutdated, av1::SEVERITY_CRITICAL,
          absl::StrCat(who, " cannot log in: WhatsApp refuses the client version as outdated", said,
                       ". Set --wa_version (WAS_WA_VERSION) on session-service to the version "
                       "WhatsApp Web serves now (or to auto), restart it, then ",
                       connect));
    } else {
      const std::string state = StateName(f.state()), reason = ReasonName(f.reason());
      raise(kManual, event_types::kManualIntervention, av1::SEVERITY_CRITICAL,
            absl::StrCat(who, " ended as ", state,
                         reason == state ? "" : absl::StrCat(" (", reason, ")"), said,
                         ": a person must act before it is connected again (",
                         f.state() == sv1::SESSION_STATE_REPLACED
                             ? "another client took the device over; stop it, then "
                         : f.reason() == sv1::STATE_REASON_LOGIN_REFUSED
                             ? "WhatsApp refused the login and is not asked again by itself; "
                               "check the account on the phone, then "
                             : "see the account at WhatsApp; then ",
                         connect, ")"));
    }
    return;
  }
  if (h.manual_intervention_required()) {
    raise(kManual, event_types::kManualIntervention, av1::SEVERITY_CRITICAL,
          absl::StrCat(who, ": ", h.manual_intervention_reason()));
  }
  if (!a.offline_since) return;
  // A person is connecting it right now (Connect or Reconnect by hand, often after fixing what
  // needed them): an offline alert at that moment would only be noise. If the attempt fails,
  // the state it ends in is judged as usual.
  if (f.state() == sv1::SESSION_STATE_CONNECTING && f.reason() == sv1::STATE_REASON_USER) return;
  const absl::Duration offline = clock_.Now() - *a.offline_since;
  if (offline < policy_.warning_after) return;
  // What the alert tells the owner: how long, since when, and how to get it back.
  const std::string last_connected =
      h.has_last_connected_at()
          ? absl::StrCat("; last connected ",
                         absl::FormatTime("%Y-%m-%d %H:%M UTC", FromProto(h.last_connected_at()),
                                          absl::UTCTimeZone()))
          : "";
  const std::string summary = absl::StrCat(
      who, " has been offline for ", HumanDuration(offline), last_connected,
      ". session-service keeps retrying; to reconnect by hand: `wactl sessions connect ", id,
      "`. If the phone shows the device as unlinked, pair it again (`wactl pair --session=", id,
      "`).");
  if (offline >= policy_.critical_after) {
    raise(kOffline, event_types::kCritical, av1::SEVERITY_CRITICAL, summary);
  } else {
    raise(kOffline, event_types::kWarning, av1::SEVERITY_WARNING, summary);
  }
}

void Monitor::PhoneAlert(Watched& w, Tally& tally) {
  const v1::SessionHealth& h = w.s.health;
  const sv1::Session& f = w.s.facts;
  const std::string key = DedupKey(kPhone, h.session_id());
  const auto away = PhoneAway(f, clock_.Now());
  if (!away || *away < policy_.phone_inactive_warning_after) {
    if (open_alerts_.contains(key) &&
        ResolveOpen(key, away ? "the phone was seen again" : "no linked device left to lose")) {
      ++tally.notified;
    }
    return;
  }
  const bool critical = *away >= policy_.phone_inactive_critical_after;
  const std::string who =
      absl::StrCat(h.account_name().empty() ? "session" : h.account_name(),
                   h.phone_number_masked().empty() ? "" : " (", h.phone_number_masked(),
                   h.phone_number_masked().empty() ? "" : ")");
  const std::string summary = absl::StrCat(
      who, ": the phone has not been online for ", HumanDuration(*away), " (last seen ",
      absl::FormatTime("%Y-%m-%d %H:%M UTC", FromProto(f.phone_last_seen_at()),
                       absl::UTCTimeZone()),
      "). WhatsApp unlinks the linked devices of a phone that stays away about 14 days: open "
      "WhatsApp on the phone, with internet, ",
      critical ? "today." : "in the next days.");
  if (RaiseOnce(key, &w, event_types::kPhoneInactive,
                critical ? av1::SEVERITY_CRITICAL : av1::SEVERITY_WARNING, summary)) {
    ++tally.notified;
  }
}

bool Monitor::RaiseOnce(const std::string& key, const Watched* w, const std::string& event_type,
                        av1::Severity severity, const std::string& summary) {
  if (auto it = open_alerts_.find(key); it != open_alerts_.end()) {
    av1::Severity open = av1::SEVERITY_UNSPECIFIED;
    av1::Severity_Parse(it->second.severity, &open);
    if (open >= severity) return false;  // already told, at this severity or higher
  }
  av1::RaiseAlertRequest req;
  req.set_dedup_key(key);
  req.set_event_type(event_type);
  req.set_severity(severity);
  req.set_summary(summary);
  if (w) {
    const v1::SessionHealth& h = w->s.health;
    auto* s = req.mutable_session();
    s->set_session_id(h.session_id());
    s->set_tenant_id(h.tenant_id());
    s->set_account_name(h.account_name());
    s->set_phone_number_masked(h.phone_number_masked());
    s->set_owner_email(w->s.facts.owner_email());
    if (h.has_offline_since()) *s->mutable_offline_since() = h.offline_since();
    if (h.has_last_connected_at()) *s->mutable_last_connected_at() = h.last_connected_at();
    s->set_state(StateName(h.state()));
    s->set_reason(ReasonName(h.reason()));
  }
  if (auto st = alerts_.Raise(req); !st.ok()) {
    // Not recorded: the next check raises it again.
    log_->warn("raising {} ({}): {}", event_type, key, st);
    return false;
  }
  OpenAlert open{key, w ? w->s.health.session_id() : "", event_type, av1::Severity_Name(severity),
                 clock_.Now()};
  if (auto st = store_.RecordAlert(open); !st.ok()) log_->warn("recording alert {}: {}", key, st);
  open_alerts_[key] = std::move(open);
  if (metrics_) metrics_->Alert(event_type, "raised");
  log_->info("alert {} raised ({}): {}", event_type, key, summary);
  return true;
}

bool Monitor::ResolveOpen(const std::string& key, const std::string& note) {
  auto it = open_alerts_.find(key);
  if (it == open_alerts_.end()) return false;
  if (auto st = alerts_.Resolve(key, note); !st.ok() && !absl::IsNotFound(st)) {
    log_->warn("resolving alert {}: {}", key, st);  // tried again at the next check
    return false;
  }
  if (auto st = store_.CloseAlert(key, clock_.Now()); !st.ok()) {
    log_->warn("recording alert {} resolved: {}", key, st);
  }
  log_->info("alert {} resolved: {}", key, note);
  if (metrics_) metrics_->Alert(it->second.event_type, "resolved");
  open_alerts_.erase(it);
  return true;
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
