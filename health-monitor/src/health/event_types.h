// The event types of the alerts health-monitor raises at alert-service (seed 003 §4), and the
// dedup-key kinds they are raised under ("<kind>/<session id>"; the unreachable alert's key is
// its type). README "Session alerts" says what each means and what to do.
#pragma once

#include <array>

namespace wasentinel::monitor::event_types {

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

}  // namespace wasentinel::monitor::event_types
