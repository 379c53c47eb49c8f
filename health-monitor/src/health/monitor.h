// The health-monitor's decisions over time: it keeps every session's health (assessment.h) from
// session-service's events and checks, records transitions and recovery attempts (store.h),
// reconnects and probes within the rate limit, and raises and resolves alerts.
//
// Sources: README "Architecture" › "Health" (recovery, levels, the 6-hour alert, uptime) and
// "Session alerts"; the alerts:
//   session.warning             offline longer than warning_after (WARNING)
//   session.critical            offline for the critical window, 6 h (CRITICAL; the same dedup
//                               key as session.warning, so the open alert escalates)
//   session.logged_out          logged out at WhatsApp: needs pairing again (CRITICAL)
//   session.manual_intervention replaced, banned, client outdated, or recovery exhausted
//   session_service.unreachable session-service does not answer (one alert for the outage)
// A session back to HEALTHY (or stopped on purpose) resolves its open alerts: the recovered
// notice. Dedup keys are "<kind>/<session id>", so one outage is one alert.
//
// Not thread-safe: one thread (the leader's check loop) calls it.
#pragma once

#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "assessment.h"
#include "metrics.h"
#include "recovery_limiter.h"
#include "store.h"
#include "wasentinel/alert/v1/alert.pb.h"
#include "wasentinel/common/clock.h"

namespace spdlog {
class logger;
}

namespace wasentinel::monitor {

namespace av1 = wasentinel::alert::v1;

/// session-service as the monitor uses it (GrpcSessionSource in production).
class SessionSource {
 public:
  virtual ~SessionSource() = default;
  virtual absl::StatusOr<sv1::GetHealthResponse> Health() = 0;
  virtual absl::StatusOr<sv1::GetDeepHealthResponse> DeepHealth() = 0;
  /// The sessions with these ids, from the database (no restore is triggered).
  virtual absl::StatusOr<std::vector<sv1::Session>> BulkGet(
      const std::vector<std::string>& ids) = 0;
  /// One session with the live facts of the replica that holds it (GetSession).
  virtual absl::StatusOr<sv1::Session> Get(const std::string& id) = 0;
  virtual absl::StatusOr<sv1::Session> Reconnect(const std::string& id) = 0;
  /// Presence + ping: the round trip, or why the probe failed.
  virtual absl::StatusOr<absl::Duration> Probe(const std::string& id) = 0;
};

/// alert-service as the monitor uses it (GrpcAlertSink in production).
class AlertSink {
 public:
  virtual ~AlertSink() = default;
  virtual absl::Status Raise(const av1::RaiseAlertRequest& alert) = 0;
  virtual absl::Status Resolve(const std::string& dedup_key, const std::string& note) = 0;
};

class Monitor {
 public:
  Monitor(Clock& clock, HealthStore& store, SessionSource& sessions, AlertSink& alerts,
          HealthPolicy policy, std::shared_ptr<spdlog::logger> log);

  /// Loads the memory (sessions, open alerts, the recovery window) from the store: a monitor
  /// that restarts neither alerts twice nor resets anyone's rate limit.
  absl::Status Load();

  /// A session event (WatchSessionEvents): the level changes at once. Sessions never seen are
  /// fetched (BulkGet) first; an event older than the facts already held is only counted.
  /// A drop (a connection ended by an error) is a recovery attempt in the hourly budget: once
  /// the budget is spent the session needs a person at once; otherwise Settle() recovers it.
  void OnEvent(const sv1::SessionEvent& event);
  /// After a batch of events (the watcher calls it when no more are waiting): each drop still
  /// offline is reconnected; one that session-service already reconnected by itself is
  /// recorded as a recovery that succeeded. Both count in the budget.
  void Settle();
  /// Sessions whose socket looked dead under a stored CONNECTED are looked at again once
  /// `socket_dead_grace` has passed (GetSession); reconnected only if it still is dead. The
  /// runner calls it often; it costs nothing when none is due.
  void RecheckDue();
  /// The deep check: every session's live facts (GetDeepHealth), assessed, recovered, alerted.
  /// Sessions session-service no longer has are forgotten.
  v1::JobResult DeepCheck();
  /// The light check: is session-service there (GetHealth)? Raises or resolves
  /// session_service.unreachable, and re-assesses what time alone changes (offline windows).
  v1::JobResult LightCheck();

  /// The daily-counter-reset job: every session's drops_today and recoveries_today start
  /// afresh, and history older than `history_retention` is pruned.
  v1::JobResult ResetDailyCounters(absl::Duration history_retention);
  /// The inactive-session-cleanup job: sessions session-service no longer has (deleted while the
  /// watch was down, or with deep checks paused) are forgotten and their alerts resolved;
  /// alerts still open on sessions stopped on purpose (INACTIVE) are resolved.
  v1::JobResult CleanupInactive();

  /// Metrics to keep (optional; not owned).
  void set_metrics(MonitorMetrics* metrics) { metrics_ = metrics; }
  /// Publishes the levels and scores if events changed them since the last publication.
  void PublishIfChanged();

  /// Clears manual intervention (an operator acted): the recovery window starts afresh.
  absl::StatusOr<v1::SessionHealth> Acknowledge(const std::string& session_id,
                                                const std::string& note);

  /// The last event sequence handled (the watch resumes after it). It is stored every 500
  /// events and by Settle() and SaveCursor(), not on every event: after a crash a few events
  /// come again, and events older than the facts held change nothing.
  int64_t cursor() const { return cursor_; }
  void SaveCursor();

  bool session_service_reachable() const { return reachable_; }
  /// session-service's uptime at the last light check (the fast-poll rule: under 60 s).
  absl::Duration session_service_uptime() const { return uptime_; }
  std::optional<absl::Time> unreachable_since() const { return unreachable_since_; }
  const std::string& last_error() const { return last_error_; }
  /// The health the monitor holds for `id`, if it watches it.
  std::optional<v1::SessionHealth> Health(const std::string& id) const;

 private:
  struct Watched {
    MonitoredSession s;
    std::deque<absl::Time> reconnects;            // CONNECTING transitions seen (last hour)
    std::deque<absl::Time> drops;                 // connections ended by an error (last hour)
    bool facts_are_live = false;                  // facts from a deep check, not only from events
    absl::Time saved_at = absl::InfinitePast();   // when the store last got this session
    std::optional<absl::Time> socket_dead_since;  // live facts: CONNECTED with a dead socket
    // Messages in trouble in the last hour, as the last deep check counted them.
    int undecryptable_last_hour = 0;
    int failed_sends_last_hour = 0;
  };
  struct Tally {
    int64_t reconnected = 0;
    int64_t notified = 0;
  };

  struct Evaluated {
    Assessment a;
    bool save = false;                         // the health changed (or is due a refresh)
    std::optional<v1::Transition> transition;  // the level or the state changed
  };
  // Assesses `w` now and updates its health in memory (no I/O). `drop`: an error just ended
  // its connection (the state transition is marked so; GetHealthHistory counts it).
  Evaluated Classify(Watched& w, const std::string& why, bool drop = false);
  // Classify, record what changed, alert, act on the decision.
  void Evaluate(Watched& w, const std::string& why, Tally& tally, bool drop = false);
  // The same for many sessions, their changes written in one transaction first.
  void EvaluateAll(const std::vector<std::string>& ids, const std::string& why, Tally& tally);
  void Act(Watched& w, const Assessment& a, Tally& tally);
  void Alert(Watched& w, const Assessment& a, Tally& tally);
  // session.phone_inactive: raised WARNING / CRITICAL past the phone windows, resolved once the
  // phone is seen again (or the session has no linked device left to lose).
  void PhoneAlert(Watched& w, Tally& tally);
  bool RaiseOnce(const std::string& key, const Watched* w, const std::string& event_type,
                 av1::Severity severity, const std::string& summary);
  bool ResolveOpen(const std::string& key, const std::string& note);
  void Persist(Watched& w);
  // Stores a recovery attempt and counts it (recoveries_today, metrics).
  void RecordRecovery(Watched& w, const v1::RecoveryAttempt& r);
  // Resolves the session's alerts, forgets it and its history.
  void ForgetSession(const std::string& id, const std::string& note, Tally& tally);
  void PublishMetrics();
  void NoteSequence(int64_t sequence);
  SessionMemory MemoryOf(Watched& w);
  Watched& Adopt(const sv1::Session& facts);
  void CountLevels(v1::JobResult& result) const;

  Clock& clock_;
  HealthStore& store_;
  SessionSource& sessions_;
  AlertSink& alerts_;
  const HealthPolicy policy_;
  std::shared_ptr<spdlog::logger> log_;
  RecoveryLimiter limiter_;
  absl::flat_hash_map<std::string, Watched> watched_;
  absl::flat_hash_map<std::string, OpenAlert> open_alerts_;      // by dedup key
  absl::flat_hash_map<std::string, std::string> pending_drops_;  // session → trigger
  absl::flat_hash_map<std::string, absl::Time> rechecks_;        // session → when due
  bool reachable_ = true;
  absl::Duration uptime_;
  std::optional<absl::Time> unreachable_since_;
  std::string last_error_;
  MonitorMetrics* metrics_ = nullptr;
  int64_t cursor_ = 0;        // the last event sequence handled
  int64_t cursor_saved_ = 0;  // … as stored
  bool metrics_dirty_ = false;
};

/// "<kind>/<session id>": the dedup key of a session's alert of that kind.
std::string DedupKey(std::string_view kind, std::string_view session_id);

}  // namespace wasentinel::monitor
