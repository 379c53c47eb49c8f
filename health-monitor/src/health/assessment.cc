#include "assessment.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

std::optional<absl::Time> Opt(bool has, const google::protobuf::Timestamp& t) {
  if (!has || (t.seconds() == 0 && t.nanos() == 0)) return std::nullopt;
  return FromProto(t);
}

class Score {
 public:
  void Penalty(const char* name, int points, std::string detail) {
    if (points <= 0) return;
    v1::ScoreFactor f;
    f.set_name(name);
    f.set_penalty(points);
    f.set_detail(std::move(detail));
    factors_.push_back(std::move(f));
    total_ += points;
  }
  int value() const { return std::clamp(100 - total_, 0, 100); }
  std::vector<v1::ScoreFactor> factors() && { return std::move(factors_); }

 private:
  int total_ = 0;
  std::vector<v1::ScoreFactor> factors_;
};

}  // namespace

bool EndedByWhatsApp(const sv1::Session& s) {
  switch (s.state()) {
    case sv1::SESSION_STATE_LOGGED_OUT:
    case sv1::SESSION_STATE_REPLACED:
    case sv1::SESSION_STATE_BANNED:
      return true;
    default:
      return s.reason() == sv1::STATE_REASON_CLIENT_OUTDATED ||
             s.reason() == sv1::STATE_REASON_LOGIN_REFUSED;
  }
}

std::optional<absl::Duration> PhoneAway(const sv1::Session& s, absl::Time now) {
  // Only while session-service keeps the session connected can it see the phone: a session
  // a person or WhatsApp stopped is not judged (its own alerts say why it is down).
  if (!s.has_phone_last_seen_at() || !WantsSocket(s)) return std::nullopt;
  return std::max(absl::ZeroDuration(), now - FromProto(s.phone_last_seen_at()));
}

bool WantsSocket(const sv1::Session& s) {
  return s.is_active() && s.auto_connect() && s.has_credentials() && !EndedByWhatsApp(s) &&
         !(s.state() == sv1::SESSION_STATE_DISCONNECTED && s.reason() == sv1::STATE_REASON_USER) &&
         s.state() != sv1::SESSION_STATE_QR_PENDING;
}

std::string HumanDuration(absl::Duration d) {
  if (d < absl::Seconds(1)) return "0s";
  return absl::FormatDuration(
      absl::Trunc(d, d < absl::Minutes(1) ? absl::Seconds(1) : absl::Minutes(1)));
}

v1::QualityBand BandOf(int score) {
  if (score >= 90) return v1::QUALITY_BAND_EXCELLENT;
  if (score >= 70) return v1::QUALITY_BAND_GOOD;
  if (score >= 40) return v1::QUALITY_BAND_POOR;
  return v1::QUALITY_BAND_CRITICAL;
}

Assessment Assess(const sv1::Session& s, const SessionMemory& memory, absl::Time now,
                  const HealthPolicy& policy, bool facts_are_live) {
  Assessment a;
  Score score;
  const bool connected = s.state() == sv1::SESSION_STATE_CONNECTED;
  const bool ended = EndedByWhatsApp(s);
  const bool wanted = WantsSocket(s);
  // Offline since: what the monitor saw, else what session-service stored, else creation.
  if (!connected) {
    a.offline_since = memory.offline_since;
    if (!a.offline_since) {
      a.offline_since = Opt(s.has_last_disconnected_at(), s.last_disconnected_at());
    }
    if (!a.offline_since) a.offline_since = Opt(s.has_created_at(), s.created_at());
    if (a.offline_since && *a.offline_since > now) a.offline_since = now;
  }
  const absl::Duration offline = a.offline_since ? now - *a.offline_since : absl::ZeroDuration();
  const bool socket_dead = connected && facts_are_live && !s.socket_alive();

  // ---- level ----
  if (ended) {
    a.level = v1::HEALTH_LEVEL_CRITICAL;
    a.needs_person = true;
    if (s.state() == sv1::SESSION_STATE_BANNED && s.has_ban_expires_at()) {
      // It comes back by itself when the ban ends; until then nothing may be tried.
      a.cause = absl::StrCat("temporarily banned until ",
                             absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                              FromProto(s.ban_expires_at()), absl::UTCTimeZone()));
    } else {
      a.cause = absl::StrCat(sv1::SessionState_Name(s.state()), " (",
                             sv1::StateReason_Name(s.reason()), "): a person must act");
    }
  } else if (!wanted && !connected) {
    a.level = v1::HEALTH_LEVEL_INACTIVE;
    a.cause = !s.is_active()                               ? "inactive"
              : !s.has_credentials()                       ? "waiting to be paired"
              : s.state() == sv1::SESSION_STATE_QR_PENDING ? "being paired"
              : s.reason() == sv1::STATE_REASON_USER       ? "disconnected by a person"
                                                           : "auto-connect is off";
  } else if (memory.manual_intervention) {
    a.level = v1::HEALTH_LEVEL_CRITICAL;
    a.cause = absl::StrCat("manual intervention required: ", memory.manual_intervention_reason);
  } else if (connected && !socket_dead) {
    a.level = v1::HEALTH_LEVEL_HEALTHY;
    a.cause = "connected";
  } else if (socket_dead) {
    a.level = v1::HEALTH_LEVEL_WARNING;
    a.cause = "stored CONNECTED but the socket is dead";
  } else if (offline >= policy.critical_after) {
    a.level = v1::HEALTH_LEVEL_CRITICAL;
    a.cause = absl::StrCat("offline for ", HumanDuration(offline));
  } else {
    a.level = v1::HEALTH_LEVEL_WARNING;
    a.cause = absl::StrCat("offline for ", HumanDuration(offline), " (",
                           sv1::StateReason_Name(s.reason()), ")");
  }

  // ---- score ----
  if (ended) {
    score.Penalty("state", 100, sv1::SessionState_Name(s.state()));
  } else if (s.state() == sv1::SESSION_STATE_CONNECTING) {
    score.Penalty("state", 20, "CONNECTING");
  } else if (!connected) {
    score.Penalty("state", 40, sv1::SessionState_Name(s.state()));
  }
  if (!connected && !ended && offline > absl::ZeroDuration()) {
    const double share = std::min(1.0, absl::FDivDuration(offline, policy.critical_after));
    score.Penalty("offline", static_cast<int>(std::lround(40 * share)),
                  absl::StrCat("offline ", HumanDuration(offline)));
  }
  if (socket_dead) score.Penalty("socket", 30, "stored CONNECTED, socket dead");
  if (auto away = PhoneAway(s, now); away && *away >= policy.phone_inactive_warning_after) {
    score.Penalty("phone", *away >= policy.phone_inactive_critical_after ? 30 : 15,
                  absl::StrCat("the phone was last seen ", HumanDuration(*away), " ago"));
  }
  if (connected && facts_are_live && s.has_keepalive_rtt()) {
    const absl::Duration rtt =
        absl::Seconds(s.keepalive_rtt().seconds()) + absl::Nanoseconds(s.keepalive_rtt().nanos());
    const int p = rtt >= absl::Seconds(10)  ? 15
                  : rtt >= absl::Seconds(3) ? 10
                  : rtt >= absl::Seconds(1) ? 5
                                            : 0;
    score.Penalty("keepalive_rtt", p, absl::StrCat("round trip ", absl::FormatDuration(rtt)));
  }
  if (connected && s.missed_pings() > 0) {
    score.Penalty("missed_pings", static_cast<int>(std::min<int64_t>(20, 5 * s.missed_pings())),
                  absl::StrCat(s.missed_pings(), " pings unanswered"));
  }
  score.Penalty("reconnects", std::min(20, 5 * memory.reconnects_last_hour),
                absl::StrCat(memory.reconnects_last_hour, " reconnects in the last hour"));
  score.Penalty("errors", std::min(15, 5 * memory.drops_last_hour),
                absl::StrCat(memory.drops_last_hour, " drops in the last hour"));
  if (memory.undecryptable_last_hour > 0) {
    score.Penalty(
        "undecryptable", std::min(15, 5 * memory.undecryptable_last_hour),
        absl::StrCat(memory.undecryptable_last_hour, " messages not decrypted in the last hour"));
  }
  if (memory.failed_sends_last_hour > 0) {
    score.Penalty(
        "failed_sends", std::min(15, 5 * memory.failed_sends_last_hour),
        absl::StrCat(memory.failed_sends_last_hour, " messages failed to send in the last hour"));
  }
  std::optional<absl::Time> alive_proof = memory.last_proof_of_life;
  if (auto inbound = Opt(s.has_last_inbound_message_at(), s.last_inbound_message_at());
      inbound && (!alive_proof || *inbound > *alive_proof)) {
    alive_proof = inbound;
  }
  if (auto since = Opt(s.has_last_connected_at(), s.last_connected_at());
      since && (!alive_proof || *since > *alive_proof)) {
    alive_proof = since;  // a fresh login proves the socket too
  }
  const absl::Duration silence = alive_proof ? now - *alive_proof : absl::ZeroDuration();
  if (connected && facts_are_live && silence >= policy.inbound_silence) {
    score.Penalty("inbound_silence", silence >= absl::Hours(2) ? 10 : 5,
                  absl::StrCat("no inbound traffic for ", HumanDuration(silence)));
  }
  if (memory.manual_intervention) {
    score.Penalty("recovery", 30, "automatic recovery exhausted");
  }
  a.score = score.value();
  a.band = BandOf(a.score);
  a.factors = std::move(score).factors();

  // ---- recovery (README "Architecture" › "Health", Recovery) ----
  if (!wanted || ended || memory.manual_intervention) return a;
  const bool budget = memory.recoveries_in_window < policy.max_recoveries;
  auto recover = [&](std::string trigger) {
    a.action = budget ? Action::kReconnect : Action::kEscalate;
    a.trigger = std::move(trigger);
  };
  if (socket_dead) {
    if (!memory.socket_dead_since || now - *memory.socket_dead_since < policy.socket_dead_grace) {
      a.action = Action::kRecheck;
      a.trigger = "stored CONNECTED but the socket is dead: looking again";
    } else {
      recover(absl::StrCat("stored CONNECTED but the socket is dead for ",
                           HumanDuration(now - *memory.socket_dead_since)));
    }
  } else if (connected && facts_are_live && silence >= policy.inbound_silence) {
    a.action = Action::kProbe;
    a.trigger = absl::StrCat("no inbound traffic for ", HumanDuration(silence));
  } else if (!connected &&
             (!memory.last_recovery_at ||
              now - *memory.last_recovery_at >= policy.reconnect_after) &&
             (s.reason() == sv1::STATE_REASON_RETRIES_EXHAUSTED ||
              (offline >= policy.reconnect_after && s.state() != sv1::SESSION_STATE_CONNECTING))) {
    recover(s.reason() == sv1::STATE_REASON_RETRIES_EXHAUSTED
                ? "session-service's retries are exhausted"
                : absl::StrCat("offline for ", HumanDuration(offline), " with no retry under way"));
  }
  return a;
}

}  // namespace wasentinel::monitor
