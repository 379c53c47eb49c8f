// Monitor (monitor.h): its alerts, raised and resolved at alert-service once per dedup key.
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "monitor.h"
#include "monitor_internal.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/event_types.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

using namespace internal;  // monitor_internal.h

}  // namespace

std::string DedupKey(std::string_view kind, std::string_view session_id) {
  return absl::StrCat(Sv(kind), "/", Sv(session_id));
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

}  // namespace wasentinel::monitor
