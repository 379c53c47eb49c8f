// The event types of the alerts health-monitor raises at alert-service, and the dedup-key kinds
// they are raised under ("<kind>/<session id>"; the unreachable alert's key is its type). README
// "Session alerts" says what each means and what to do. alert-service labels its metrics with
// these and "other" for any further type a caller raises, so a label's values stay a small set.
#pragma once

#include <array>
#include <string_view>

namespace wasentinel::event_types {

inline constexpr char kWarning[] = "session.warning";    ///< offline past warning_after
inline constexpr char kCritical[] = "session.critical";  ///< offline past critical_after
inline constexpr char kLoggedOut[] = "session.logged_out";
/// <failure reason="402">: until when, and why; the session connects again by itself then.
inline constexpr char kTemporarilyBanned[] = "session.temporarily_banned";
/// <failure reason="405"> also with the version just read from WhatsApp Web.
inline constexpr char kClientOutdated[] = "session.client_outdated";
/// The account's phone was not seen for phone_inactive_warning_after (WARNING) or
/// phone_inactive_critical_after (CRITICAL): WhatsApp unlinks devices of an idle phone.
inline constexpr char kPhoneInactive[] = "session.phone_inactive";
inline constexpr char kManualIntervention[] = "session.manual_intervention";
inline constexpr char kUnreachable[] = "session_service.unreachable";

/// Every event type, for metrics that list them all from the start.
inline constexpr std::array<const char*, 8> kAll = {
    kWarning,        kCritical,      kLoggedOut,          kTemporarilyBanned,
    kClientOutdated, kPhoneInactive, kManualIntervention, kUnreachable};

/// Message webhooks (alert-service's message feed, README "Message webhooks"): not alerts, so
/// not in kAll, and RaiseAlert refuses them. An endpoint gets them only when it names them.
inline constexpr char kMessageReceived[] = "message.received";
inline constexpr char kMessageStatus[] = "message.status";
/// A contact of a session reinstalled WhatsApp (its security code changed): the chat's notice,
/// sent by the message feed like the message events.
inline constexpr char kIdentityChanged[] = "session.identity_changed";
/// Every event the message feed sends.
inline constexpr std::array<const char*, 3> kFeedEvents = {kMessageReceived, kMessageStatus,
                                                           kIdentityChanged};
/// `type` is one of kFeedEvents.
inline bool IsFeedEvent(std::string_view type) {
  for (const char* feed : kFeedEvents) {
    if (type == feed) return true;
  }
  return false;
}

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
