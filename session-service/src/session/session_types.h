// The values the session core and its API exchange: what a held session looks like live
// (LiveInfo, SessionView), what creating and pairing one takes, the pairing feed a
// StartPairing stream reads, and the manager's options. manager.h is the entry point.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connection.h"
#include "store.h"
#include "version_keeper.h"

namespace wasentinel::session {

class Messenger;
class PreKeySupply;

struct ManagerOptions {
  wa::ConnectionOptions connection;
  /// Delays before retries 1, 2, 3 after a drop (README "Configuration": 5 s, 15 s, 45 s).
  std::vector<absl::Duration> backoff = {absl::Seconds(5), absl::Seconds(15), absl::Seconds(45)};
  double backoff_jitter = 0.2;
  /// Start-up restore pace: connects per second (0: no limit), each delay jittered ±50 %.
  double restore_per_second = 20;
  /// Start-up restore: connection attempts under way at once at most (0: no bound).
  int restore_concurrency = 200;
  /// This replica's id: the owner in session leases (unique among live replicas).
  std::string replica_id = "session-service";
  /// Lease time-to-live, renewed every lease_ttl / 3. A replica that could not renew for
  /// 0.8 × lease_ttl closes its sockets (it can no longer prove no other replica holds them);
  /// another replica takes a dead replica's sessions over once their leases expire.
  absl::Duration lease_ttl = absl::Seconds(30);
  /// Where the WhatsApp Web version announced at login comes from, and who is asked for another
  /// after a 405 (not owned; version_keeper.h). Null: `connection.client.version`, and a 405
  /// is final.
  ClientVersions* versions = nullptr;
  /// Makes the one-time pre-keys a session uploads when WhatsApp runs low (not owned;
  /// prekey_supply.h). Null: none are uploaded.
  PreKeySupply* prekeys = nullptr;
  /// Decrypts and stores what the sessions receive before it is acknowledged (not owned;
  /// messenger.h). Null: messages are acknowledged undecrypted and none are sent.
  Messenger* messages = nullptr;
};

/// The replica holding the session a failed call was about, when that is why it failed
/// (UNAVAILABLE "held by replica R"); the API forwards such calls to R.
std::optional<std::string> OwnerOf(const absl::Status& status);

/// What this process knows live about a session, beyond its stored row.
struct LiveInfo {
  v1::SessionState state = v1::SESSION_STATE_UNSPECIFIED;
  v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
  std::string last_error;
  bool socket_alive = false;
  int64_t inbound_messages = 0;
  std::optional<absl::Time> last_inbound_at;
  std::optional<absl::Time> last_pong_at;
  std::optional<absl::Duration> keepalive_rtt;
  int64_t missed_pings = 0;
  bool retry_pending = false;
  bool pairing = false;
  std::string owner;  ///< this replica (the holder of the live state)
};

/// What ProbeSession found.
struct ProbeResult {
  absl::StatusOr<absl::Duration> round_trip;  ///< or why the probe failed
};

struct SessionView {
  SessionRecord record;
  std::optional<LiveInfo> live;  ///< absent when this process holds no runtime for it
};

struct NewSession {
  std::string tenant_id;
  std::string session_name = "primary";
  std::string account_name;
  std::string owner_email;
  bool auto_connect = true;
  std::string creds_json;  ///< empty: a session to pair later
  /// Baileys' pre-key-<id>.json files beside creds_json: file name → contents.
  std::map<std::string, std::string> pre_key_files;
};

/// Where to pair: an existing session by id, or (tenant, session name) created on demand.
struct PairingRequest {
  std::string session_id;
  std::string tenant_id;
  std::string session_name = "primary";
  std::string account_name;
  std::string owner_email;
  /// Pair by phone-number code for this number (E.164 digits) instead of QR codes.
  std::string phone_number;
};

/// The updates of one pairing, handed from the connection thread to the StartPairing stream.
/// Thread-safe.
class PairingFeed {
 public:
  struct Update {
    enum class Kind { kQr, kCode, kSuccess, kFailure } kind = Kind::kQr;
    // kQr, kCode
    std::string qr;  // the QR text, or the pairing code ("ABCD-EFGH")
    absl::Time expires_at;
    int index = 0;
    int total = 0;
    // kSuccess
    wa::PairedDevice device;
    std::optional<SessionView> session;
    // kFailure
    v1::PairingUpdate::Failure::Reason reason = v1::PairingUpdate::Failure::REASON_UNSPECIFIED;
    std::string message;
  };
  void Push(Update update);
  /// The next update, or nullopt after `timeout`.
  std::optional<Update> Next(absl::Duration timeout);

 private:
  absl::Mutex mu_;
  std::deque<Update> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::session
