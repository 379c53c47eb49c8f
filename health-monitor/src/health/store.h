// What the health-monitor keeps in PostgreSQL (its own tables; it never reads session-service's):
// each watched session's health and last facts, level and state transitions, recovery attempts,
// the alerts it raised and has not resolved, its jobs, and the last session event it saw.
//
// Sources: README "Architecture" › "Health" (uptime history, transitions, recovery attempts
// logged and rate-limited across restarts), docs/api.md "MonitorService".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/monitor/v1/monitor.pb.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::monitor {

namespace sv1 = wasentinel::session::v1;

/// A session as the monitor keeps it.
struct MonitoredSession {
  v1::SessionHealth health;  ///< what the monitor made of it (session_id is the key)
  sv1::Session facts;        ///< the last facts session-service gave (deep check or event)
  /// The socket was last proven alive (a probe answered, inbound traffic) at this time.
  std::optional<absl::Time> last_proof_of_life;
  absl::Time first_seen_at;  ///< uptime is counted from here
};

/// An alert the monitor raised and has not resolved (its dedup key is the identity).
struct OpenAlert {
  std::string dedup_key;
  std::string session_id;  ///< empty for service-wide alerts
  std::string event_type;
  std::string severity;  ///< alert.v1.Severity name
  absl::Time raised_at;
};

struct JobRecord {
  std::string name;
  bool paused = false;
  int64_t runs = 0;
  int64_t failures = 0;
  std::optional<absl::Time> last_run_at;
  v1::JobResult last_result;
};

struct HealthFilter {
  std::string tenant_id;
  std::vector<v1::HealthLevel> levels;    ///< empty: any
  std::vector<sv1::SessionState> states;  ///< empty: any
  bool manual_intervention_only = false;
  /// Lower-case text found in the session's search key (SearchKey), empty: any.
  std::string query;
};

/// What a session is found by (HealthFilter::query): its account and session names in lower
/// case, its phone number's digits and its id, separated by newlines (docs/api.md
/// "MonitorService", ListSessionHealth).
std::string SearchKey(const MonitoredSession& s);

/// The query a person typed, as SearchKey holds it: lower case; 3 or more digits with only
/// spaces, "+", "-", "(", ")" or "." among them become the digits alone (a phone number).
std::string NormalizeQuery(std::string_view query);

struct HealthPage {
  std::vector<MonitoredSession> sessions;
  std::string next_page_token;  ///< empty on the last page
};

class HealthStore {
 public:
  virtual ~HealthStore() = default;

  /// Every watched session, for the monitor's memory at start-up.
  virtual absl::StatusOr<std::vector<MonitoredSession>> LoadAll() = 0;
  /// Inserts or replaces the session (first_seen_at is kept from the first save).
  virtual absl::Status Save(const MonitoredSession& session) = 0;
  /// Saves `sessions` and appends `transitions` in one transaction (a check over thousands of
  /// sessions commits once). The transitions' sessions must be among `sessions` or stored.
  virtual absl::Status SaveBatch(const std::vector<const MonitoredSession*>& sessions,
                                 const std::vector<v1::Transition>& transitions) = 0;
  /// Forgets a session session-service no longer has; its history goes with it.
  virtual absl::Status Forget(const std::string& session_id) = 0;
  /// NOT_FOUND for a session never seen.
  virtual absl::StatusOr<MonitoredSession> Get(const std::string& session_id) = 0;
  /// Ordered by session id; page_size 1..500.
  virtual absl::StatusOr<HealthPage> List(const HealthFilter& filter, int page_size,
                                          const std::string& page_token) = 0;
  /// Counts by (level, state), with the totals (GetHealthStats).
  virtual absl::StatusOr<v1::GetHealthStatsResponse> Stats(const std::string& tenant_id) = 0;
  /// The fleet (one tenant's, or every one's for "") over [since, until) in buckets of
  /// `bucket` from `since`, the last one cut at `until` (GetHealthHistory): sessions by level
  /// at each bucket's end, drops, reconnects and recovery attempts within it.
  virtual absl::StatusOr<v1::GetHealthHistoryResponse> FleetHistory(const std::string& tenant_id,
                                                                    absl::Time since,
                                                                    absl::Time until,
                                                                    absl::Duration bucket) = 0;

  /// Appends a transition; answers its id.
  virtual absl::StatusOr<int64_t> AddTransition(const v1::Transition& t) = 0;
  /// Appends a recovery attempt; answers its id.
  virtual absl::StatusOr<int64_t> AddRecovery(const v1::RecoveryAttempt& r) = 0;
  /// Sets the outcome of attempt `id` once known (a probe's answer).
  virtual absl::Status SetRecoveryOutcome(int64_t id, v1::RecoveryAttempt::Outcome outcome,
                                          const std::string& error) = 0;
  /// Reconnect attempts of every session since `since` (the rate limiter's memory).
  virtual absl::StatusOr<std::vector<v1::RecoveryAttempt>> ReconnectsSince(absl::Time since) = 0;
  /// A session's transitions and recovery attempts in [since, until), at most `limit` of each
  /// (the latest), and its uptime over the part of the range it was watched. NOT_FOUND for a
  /// session never seen.
  virtual absl::StatusOr<v1::ListTransitionsResponse> History(const std::string& session_id,
                                                              absl::Time since, absl::Time until,
                                                              int limit) = 0;

  virtual absl::StatusOr<std::vector<OpenAlert>> OpenAlerts() = 0;
  /// Records an alert raised (replacing the record of the same key: an escalation).
  virtual absl::Status RecordAlert(const OpenAlert& alert) = 0;
  /// The alert with this key was resolved.
  virtual absl::Status CloseAlert(const std::string& dedup_key, absl::Time at) = 0;

  virtual absl::StatusOr<std::vector<JobRecord>> Jobs() = 0;
  virtual absl::Status SaveJob(const JobRecord& job) = 0;

  /// The last session event sequence handled (0: none yet); a watch resumes after it.
  virtual absl::StatusOr<int64_t> LastSequence() = 0;
  virtual absl::Status SetLastSequence(int64_t sequence) = 0;

  /// Deletes transitions, recovery attempts and resolved alerts from before `before`, at most
  /// `batch` rows per statement (no statement holds locks long); answers the rows deleted.
  virtual absl::StatusOr<int64_t> PruneHistoryBefore(absl::Time before, int batch) = 0;
};

}  // namespace wasentinel::monitor
