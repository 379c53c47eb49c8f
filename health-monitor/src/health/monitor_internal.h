// What monitor.cc, monitor_recovery.cc and monitor_alerts.cc share of Monitor (monitor.h).
#pragma once

#include <string>

#include "absl/strings/match.h"
#include "assessment.h"
#include "wasentinel/common/event_types.h"

namespace wasentinel::monitor::internal {

// Dedup-key kinds: one alert per session and outage.
inline constexpr const char* kOffline = event_types::kOfflineKind;
inline constexpr const char* kLoggedOut = event_types::kLoggedOut;
inline constexpr const char* kManual = event_types::kManualIntervention;
inline constexpr const char* kBanned = event_types::kTemporarilyBanned;
inline constexpr const char* kOutdated = event_types::kClientOutdated;
inline constexpr const char* kPhone = event_types::kPhoneInactive;

inline std::string StateName(sv1::SessionState s) {
  std::string n = sv1::SessionState_Name(s);
  return absl::StartsWith(n, "SESSION_STATE_") ? n.substr(14) : n;
}

inline std::string ReasonName(sv1::StateReason r) {
  std::string n = sv1::StateReason_Name(r);
  return absl::StartsWith(n, "STATE_REASON_") ? n.substr(13) : n;
}

}  // namespace wasentinel::monitor::internal
