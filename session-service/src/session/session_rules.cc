#include "session_rules.h"

#include "absl/strings/str_cat.h"

namespace wasentinel::session {
namespace {

constexpr char kOwnerPayload[] = "type.wasentinel/owner";

std::optional<absl::Time> MillisToTime(int64_t ms) {
  if (ms <= 0) return std::nullopt;
  return absl::FromUnixMillis(ms);
}

}  // namespace

bool IsTerminal(v1::SessionState s) {
  return s == v1::SESSION_STATE_LOGGED_OUT || s == v1::SESSION_STATE_REPLACED ||
         s == v1::SESSION_STATE_BANNED;
}

bool WantsSocket(const SessionRecord& rec, v1::SessionState state, v1::StateReason reason) {
  return rec.is_active && rec.auto_connect && !IsTerminal(state) &&
         reason != v1::STATE_REASON_USER && reason != v1::STATE_REASON_RETRIES_EXHAUSTED &&
         reason != v1::STATE_REASON_CLIENT_OUTDATED && reason != v1::STATE_REASON_LOGIN_REFUSED;
}

bool BanEnds(const SessionRecord& rec, v1::SessionState state) {
  return state == v1::SESSION_STATE_BANNED && rec.ban_expires_at.has_value() && rec.is_active &&
         rec.auto_connect;
}

bool RecoveryAllowed(const SessionRecord& rec, v1::SessionState state, v1::StateReason reason) {
  return !IsTerminal(state) && rec.auto_connect &&
         !(state == v1::SESSION_STATE_DISCONNECTED &&
           (reason == v1::STATE_REASON_USER || reason == v1::STATE_REASON_LOGIN_REFUSED ||
            reason == v1::STATE_REASON_CLIENT_OUTDATED));
}

v1::StateReason ReasonOf(wa::CloseCause cause) {
  switch (cause) {
    case wa::CloseCause::kClosedByUs:
      return v1::STATE_REASON_USER;
    case wa::CloseCause::kConnectFailed:
      return v1::STATE_REASON_CONNECT_FAILED;
    case wa::CloseCause::kHandshakeFailed:
      return v1::STATE_REASON_HANDSHAKE_FAILED;
    case wa::CloseCause::kSocketClosed:
      return v1::STATE_REASON_SOCKET_CLOSED;
    case wa::CloseCause::kKeepaliveTimeout:
      return v1::STATE_REASON_KEEPALIVE_TIMEOUT;
    case wa::CloseCause::kRestartRequired:
      return v1::STATE_REASON_RESTART_REQUIRED;
    case wa::CloseCause::kLoggedOut:
      return v1::STATE_REASON_LOGGED_OUT;
    case wa::CloseCause::kReplaced:
      return v1::STATE_REASON_REPLACED;
    case wa::CloseCause::kTemporaryBan:
      return v1::STATE_REASON_BANNED;
    case wa::CloseCause::kClientOutdated:
      return v1::STATE_REASON_CLIENT_OUTDATED;
    case wa::CloseCause::kServerError:
      return v1::STATE_REASON_SERVER_ERROR;
    case wa::CloseCause::kLoginRefused:
      return v1::STATE_REASON_LOGIN_REFUSED;
    case wa::CloseCause::kProtocolError:
      return v1::STATE_REASON_PROTOCOL_ERROR;
    case wa::CloseCause::kPairingTimeout:
      return v1::STATE_REASON_PAIRING_TIMEOUT;
    case wa::CloseCause::kPairingRejected:
      return v1::STATE_REASON_PAIRING_REJECTED;
  }
  return v1::STATE_REASON_UNSPECIFIED;
}

absl::Status HeldElsewhere(const std::string& id, const std::string& owner) {
  absl::Status st = absl::UnavailableError(
      absl::StrCat("session ", id, " is held by replica ", owner, "; call that replica"));
  st.SetPayload(kOwnerPayload, absl::Cord(owner));
  return st;
}

std::optional<std::string> OwnerOf(const absl::Status& status) {
  auto owner = status.GetPayload(kOwnerPayload);
  if (!owner) return std::nullopt;
  return std::string(*owner);
}

absl::Status CheckActive(const SessionRecord& rec) {
  if (rec.is_active) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("session ", rec.id, " is inactive; set is_active with UpdateSession first"));
}

void MirrorTransition(SessionRecord& rec, const Transition& t) {
  rec.state = t.to;
  rec.reason = t.reason;
  if (!t.error.empty()) {
    rec.last_error = t.error;
  } else if (t.to == v1::SESSION_STATE_CONNECTED) {
    rec.last_error.clear();
  }
  if (t.to == v1::SESSION_STATE_CONNECTED) rec.last_connected_at = t.at;
  if (t.from == v1::SESSION_STATE_CONNECTED && t.to != v1::SESSION_STATE_CONNECTED) {
    rec.last_disconnected_at = t.at;
  }
  if (t.to == v1::SESSION_STATE_CONNECTED) {
    rec.failure_code = 0;
  } else if (t.failure_code > 0) {
    rec.failure_code = t.failure_code;
  }
  rec.ban_code = t.to == v1::SESSION_STATE_BANNED ? t.ban_code : 0;
  rec.ban_expires_at =
      t.to == v1::SESSION_STATE_BANNED ? t.ban_expires_at : std::optional<absl::Time>();
  rec.reconnect_count += t.count_reconnect ? 1 : 0;
  rec.error_count += t.count_error ? 1 : 0;
  if (t.set_credentials) {
    rec.credentials = t.set_credentials->sealed;
    rec.phone_number = t.set_credentials->phone_number;
    rec.device_jid = t.set_credentials->device_jid;
  } else if (t.clear_credentials) {
    rec.credentials.reset();
  }
  rec.updated_at = t.at;
}

void SettleSettings(SessionRecord& mine, const SessionRecord& stored) {
  mine.is_active = stored.is_active;
  mine.auto_connect = stored.auto_connect;
  mine.account_name = stored.account_name;
  mine.owner_email = stored.owner_email;
}

void OverlayConnectionStats(LiveInfo& live, const wa::ConnectionHandle& conn) {
  const auto& s = conn.stats();
  live.missed_pings = s.missed_pings.load();
  live.inbound_messages = s.inbound_messages.load();
  live.last_inbound_at = MillisToTime(s.last_inbound_unix_ms.load());
  live.last_pong_at = MillisToTime(s.last_pong_unix_ms.load());
  if (int64_t rtt = s.keepalive_rtt_us.load(); rtt >= 0) {
    live.keepalive_rtt = absl::Microseconds(rtt);
  }
}

PairingFeed::Update PairingFailure(v1::PairingUpdate::Failure::Reason reason, std::string message) {
  PairingFeed::Update u;
  u.kind = PairingFeed::Update::Kind::kFailure;
  u.reason = reason;
  u.message = std::move(message);
  return u;
}

}  // namespace wasentinel::session
