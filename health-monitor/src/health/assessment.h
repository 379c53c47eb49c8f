// How healthy one session is, and what to do about it: a pure function of the session's facts
// (as session-service reports them), what the monitor remembers about it, the time and the
// policy. No I/O, so every rule is tested on a fake clock.
//
// Source: README "Architecture" › "Health" (levels, the 6-hour critical window, recovery rules
// and their rate limit, a 0–100 score and its quality band; the score's formula is ours).
//
// Levels
//   HEALTHY   connected, with a live socket (seen by the holder).
//   WARNING   offline for less than the critical window (default 6 h), or connected with a
//             dead socket (being recovered).
//   CRITICAL  offline for the critical window or longer; automatic recovery exhausted
//             (manual intervention required); or ended by WhatsApp in a way only a person can
//             undo: logged out, replaced, banned, client outdated.
//   INACTIVE  not meant to be connected: inactive, disconnected by a person, or waiting to be
//             paired. Neither recovered nor alerted on.
//
// Score: 100 minus these penalties, clamped to 0..100 (each a ScoreFactor):
//   state            CONNECTED 0, CONNECTING 20, DISCONNECTED 40, ended by WhatsApp 100
//   offline          up to 40, in proportion to the time offline over the critical window
//   socket           30 when stored CONNECTED but the socket is dead
//   keepalive_rtt    5 at ≥ 1 s, 10 at ≥ 3 s, 15 at ≥ 10 s
//   missed_pings     5 per unanswered ping, at most 20
//   reconnects       5 per reconnect in the last hour, at most 20
//   errors           5 per drop (an error ending a connection) in the last hour, at most 15
//   inbound_silence  5 after 30 min without inbound traffic while connected, 10 after 2 h
//   undecryptable    5 per message received in the last hour that could not be decrypted,
//                    at most 15 (its Signal sessions may be broken: the senders cannot reach it)
//   failed_sends     5 per message that failed to send in the last hour, at most 15
//   recovery         30 while manual intervention is required
// Bands: excellent ≥ 90, good ≥ 70, poor ≥ 40, critical below.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "wasentinel/monitor/v1/monitor.pb.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::monitor {

namespace sv1 = wasentinel::session::v1;

struct HealthPolicy {
  /// Offline this long is CRITICAL and raises session.critical (default 6 h).
  absl::Duration critical_after = absl::Hours(6);
  /// Offline this long (still under the critical window) raises session.warning.
  absl::Duration warning_after = absl::Minutes(5);
  /// A session that wants a socket and is offline this long without session-service retrying
  /// is reconnected by the monitor (session-service's own retries, 5/15/45 s, are over); and
  /// no two such reconnects of one session come closer than this.
  absl::Duration reconnect_after = absl::Minutes(3);
  /// A socket seen dead under a stored CONNECTED is looked at again this much later and only
  /// reconnected if it still is: session-service stores a drop a moment after the socket
  /// closes, and a deep check can fall in between.
  absl::Duration socket_dead_grace = absl::Seconds(5);
  /// No inbound traffic for this long on a connected session → probe it (default 30 min).
  absl::Duration inbound_silence = absl::Minutes(30);
  /// Recovery attempts (Reconnect calls) allowed per session in a sliding window (default 3
  /// per hour); beyond, manual intervention is required.
  int max_recoveries = 3;
  absl::Duration recovery_window = absl::Hours(1);
  /// The account's phone not seen for this long raises session.phone_inactive as WARNING,
  /// and for the second as CRITICAL: WhatsApp unlinks the linked devices of a phone away
  /// about 14 days (mautrix-whatsapp warns at 12).
  absl::Duration phone_inactive_warning_after = absl::Hours(24 * 12);
  absl::Duration phone_inactive_critical_after = absl::Hours(24 * 13);
};

/// How long the account's phone has not been seen, when it was seen once and the session is
/// one session-service keeps connected (WantsSocket); nullopt otherwise.
std::optional<absl::Duration> PhoneAway(const sv1::Session& s, absl::Time now);

/// What the monitor remembers about a session between checks.
struct SessionMemory {
  /// When the monitor saw the session leave CONNECTED (or first saw it offline).
  std::optional<absl::Time> offline_since;
  /// When the socket was last known good: a successful probe or an inbound message.
  std::optional<absl::Time> last_proof_of_life;
  int recoveries_in_window = 0;                ///< Reconnect calls in the recovery window
  std::optional<absl::Time> last_recovery_at;  ///< the last Reconnect the monitor made
  int reconnects_last_hour = 0;                ///< CONNECTING transitions seen in the last hour
  int drops_last_hour = 0;                     ///< connections ended by an error in the last hour
  /// Messages received but not decrypted, and sends FAILED, in the last hour (session-service's
  /// Session.undecryptable_last_hour and failed_sends_last_hour at the last deep check).
  int undecryptable_last_hour = 0;
  int failed_sends_last_hour = 0;
  /// Since when the live facts show a dead socket under a stored CONNECTED (unset: they do not).
  std::optional<absl::Time> socket_dead_since;
  bool manual_intervention = false;
  std::string manual_intervention_reason;
};

/// What the monitor should do now.
enum class Action {
  kNone,
  kReconnect,  ///< Reconnect (a recovery attempt, rate-limited)
  kProbe,      ///< ProbeSession; Reconnect if it fails
  kEscalate,   ///< recovery is needed but the window is used up: flag manual intervention
  kRecheck,    ///< look at the session's live facts again after socket_dead_grace
};

struct Assessment {
  v1::HealthLevel level = v1::HEALTH_LEVEL_UNSPECIFIED;
  std::string cause;  ///< the level's reason in words
  std::optional<absl::Time> offline_since;
  int score = 0;
  v1::QualityBand band = v1::QUALITY_BAND_UNSPECIFIED;
  std::vector<v1::ScoreFactor> factors;
  Action action = Action::kNone;
  std::string trigger;  ///< why `action`, in words (stored with the attempt)
  /// Ended by WhatsApp (logged out, replaced, banned, outdated): a person must act.
  bool needs_person = false;
};

/// The session wants a socket: active, auto-connect, with credentials, and not stopped on
/// purpose (a person's Disconnect) — the same rule as session-service's restore.
bool WantsSocket(const sv1::Session& s);
/// Ended by WhatsApp in a way only a person can undo.
bool EndedByWhatsApp(const sv1::Session& s);

/// Levels, score and the recovery decision for `s` at `now`. `facts_are_live`: `s` carries
/// live socket facts (a deep check); a session state from an event alone does not, and no
/// socket-based decision is taken on it.
Assessment Assess(const sv1::Session& s, const SessionMemory& memory, absl::Time now,
                  const HealthPolicy& policy, bool facts_are_live);

/// The quality band of a score.
v1::QualityBand BandOf(int score);

/// A duration for people: whole seconds under a minute ("0s", "42s"), whole minutes above
/// ("5m", "6h5m"), as absl::FormatDuration writes them. Used in causes and alert summaries.
std::string HumanDuration(absl::Duration d);

}  // namespace wasentinel::monitor
