// The event types of the alerts health-monitor raises at alert-service (seed 003 §4), and the
// dedup-key kinds they are raised under ("<kind>/<session id>"; the unreachable alert's key is
// its type). README "Session alerts" says what each means and what to do. alert-service labels
// its metrics with these and "other" for any further type a caller raises, so a label's values
// stay a small set.
#pragma once

#include <array>
#include <string_view>

namespace wasentinel::event_types {

inline constexpr char kWarning[] = "session.warning";    ///< offline past warning_after
inline constexpr char kCritical[] = "session.critical";  ///< offline past critical_after
inline constexpr char kLoggedOut[] = "session.logged_out";
inline constexpr char kManualIntervention[] = "session.manual_intervention";
inline constexpr char kUnreachable[] = "session_service.unreachable";

/// Every event type, for metrics that list them all from the start.
inline constexpr std::array<const char*, 5> kAll = {kWarning, kCritical, kLoggedOut,
                                                    kManualIntervention, kUnreachable};

/// The dedup-key kind of one outage's offline alert: warning, escalated to critical, one key.
inline constexpr char kOfflineKind[] = "session.offline";

/// `type` when it is one of kAll, "other" otherwise: a metric label from a bounded set.
inline const char* MetricLabel(std::string_view type) {
  for (const char* known : kAll) {
    if (type == known) return known;
  }
  return "other";
}

}  // namespace wasentinel::event_types
