// Monitor (monitor.h): recovery: reconnects, probes, escalation to a person, acknowledgement.
#include <spdlog/spdlog.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "monitor.h"
#include "monitor_internal.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

using internal::kManual;

}  // namespace

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

}  // namespace wasentinel::monitor
