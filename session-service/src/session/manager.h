// The session state machine and the owner of every WhatsApp connection of this process.
//
// Source: README "Architecture" › "Session states" (causes → next state → action; the start-up
// restore with stagger and 5/15/45 s retries; the restore on a status query; shutdown writes
// DISCONNECTED).
//
// Replicas (README "Architecture" › "More than one replica"): a session's socket is held only under
// its lease (store.h Lease). The manager holds a runtime exactly for the sessions it leases;
// a lease keeper thread renews them every lease_ttl / 3, cuts the socket of any lease lost,
// and claims the sessions of replicas that died or left. Calls about a session leased by
// another replica answer UNAVAILABLE carrying that replica (OwnerOf), for the API to forward.
//
// Threading: connections and runtime state live on one io_context thread (`io`). The public
// methods are called from gRPC threads: store reads happen on the caller's thread; runtime
// changes are posted to the io thread and awaited. Transitions are persisted in order by the
// TransitionWriter and published to watchers after they are stored.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "connection.h"
#include "metrics.h"
#include "store.h"
#include "transition_writer.h"
#include "version_keeper.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel::session {

struct ManagerOptions {
  wa::ConnectionOptions connection;
  /// Delays before retries 1, 2, 3 after a drop (README "Configuration": 5 s, 15 s, 45 s).
  std::vector<absl::Duration> backoff = {absl::Seconds(5), absl::Seconds(15), absl::Seconds(45)};
  double backoff_jitter = 0.2;
  /// Start-up restore pace: connects per second (0: no limit), each delay jittered ±50 %.
  double restore_per_second = 20;
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

class SessionManager {
 public:
  SessionManager(boost::asio::io_context& io, boost::asio::ssl::context& tls, SessionStore& store,
                 const Sealer& sealer, TransitionWriter& writer, ManagerOptions options,
                 std::shared_ptr<spdlog::logger> log, SessionMetrics* metrics = nullptr);
  ~SessionManager();

  /// Validates and seals the creds.json (if any), stores the session, connects it when it has
  /// credentials and auto_connect. INVALID_ARGUMENT (bad creds.json), ALREADY_EXISTS (tenant +
  /// session_name taken).
  absl::StatusOr<SessionView> Create(const NewSession& request);
  /// Starts pairing a new device into the session (created when the request names none that
  /// exists): fresh credentials, a registration connection, QR codes and the outcome pushed to
  /// `feed`. FAILED_PRECONDITION when the session has credentials or is being paired.
  absl::StatusOr<SessionView> StartPairing(const PairingRequest& request,
                                           std::shared_ptr<PairingFeed> feed);
  /// The stream went away: a pairing still waiting for its scan is cancelled
  /// (DISCONNECTED / PAIRING_CANCELLED). No-op once the pairing finished or for another feed.
  void CancelPairing(const std::string& id, const std::shared_ptr<PairingFeed>& feed);
  /// Closes any socket and connects again now with a fresh retry schedule.
  /// FAILED_PRECONDITION without credentials or while pairing. `recovery`: an automatic
  /// recovery (reason RECOVERY), also FAILED_PRECONDITION when the session is LOGGED_OUT,
  /// REPLACED or BANNED, was disconnected by a person, or has auto_connect off — decided on the
  /// io thread together with the reconnect.
  absl::StatusOr<SessionView> Reconnect(const std::string& id, bool recovery = false);
  /// Logs the device out at WhatsApp (connecting first if needed; bounded by the connect and
  /// iq timeouts), then forgets its credentials: LOGGED_OUT / USER. A failure to reach
  /// WhatsApp is recorded in last_error; the credentials are forgotten anyway.
  absl::StatusOr<SessionView> Logout(const std::string& id);
  /// Logout if it has credentials, then deletes the row (the DELETED event stays).
  absl::Status Delete(const std::string& id);
  /// Presence + ping on the live socket. FAILED_PRECONDITION when there is none here.
  absl::StatusOr<std::pair<SessionView, ProbeResult>> Probe(const std::string& id,
                                                            absl::Duration timeout);
  /// Replaces the credentials (sealed, stored with a CREDENTIALS_IMPORTED event) and connects
  /// when the session is active and auto-connect. INVALID_ARGUMENT for a bad creds.json.
  absl::StatusOr<SessionView> ImportCredentials(const std::string& id,
                                                const std::string& creds_json);
  /// Stores the changed settings; is_active=false disconnects (reason USER).
  absl::StatusOr<SessionView> Update(const std::string& id, const SessionUpdate& update);
  struct RotationResult {
    std::string key_id;
    int64_t resealed = 0;
  };
  /// Re-seals every stored credential under the current key. FAILED_PRECONDITION naming the
  /// session whose credentials do not open.
  absl::StatusOr<RotationResult> RotateSealingKey();
  /// The stored session with its live state. A session with credentials, active, auto-connect,
  /// not ended by WhatsApp (logged out, replaced, banned) or by a user, and with no socket here
  /// is restored on the spot and answered CONNECTING (RESTORE_ON_DEMAND). One held by another
  /// replica is the stored row without live state; `record.owner` names the holder.
  absl::StatusOr<SessionView> Get(const std::string& id);
  /// Get without blocking the caller (the GetSession handler): `done` runs exactly once, with
  /// what Get answers — on the io thread, from memory, when the session is held here; otherwise
  /// on a reader thread after the database read. `done` must not block. UNAVAILABLE when the
  /// service stops before answering.
  void GetAsync(std::string id, std::function<void(absl::StatusOr<SessionView>)> done);
  /// Many at once; ids that do not exist are left out.
  absl::StatusOr<std::vector<SessionView>> GetMany(const std::vector<std::string>& ids);
  /// Connect: idempotent. FAILED_PRECONDITION without credentials or when inactive.
  absl::StatusOr<SessionView> Connect(const std::string& id);
  /// Disconnect: idempotent; DISCONNECTED with reason USER.
  absl::StatusOr<SessionView> Disconnect(const std::string& id);
  /// Stored rows with this process's live overlay (absent where it holds no runtime), in the
  /// same order.
  std::vector<SessionView> Overlay(std::vector<SessionRecord> records);

  /// Start-up. The first replica of a cluster (no other live one) restores as README "Session
  /// states" says: sessions stored as live that will not be restored become DISCONNECTED
  /// (SERVICE_RESTART); restorable ones are leased and connected at `restore_per_second`. A
  /// replica joining a running cluster claims only orphans (TAKEOVER). Then the lease keeper
  /// starts.
  absl::Status RestoreAll();
  /// The gRPC address ("host:port") other replicas forward calls for this one's sessions to;
  /// set before RestoreAll.
  void set_advertise_address(std::string address);
  /// Wakes the lease keeper to claim orphans now (another replica gave its leases up).
  void ClaimNow();
  /// Stores when each held session's phone was last seen, where that changed since the last
  /// call (one statement for all; App calls it every `phone_seen_flush_interval` and at
  /// shutdown). UNAVAILABLE when the database is down: those sightings are kept for the next.
  absl::Status FlushPhoneSightings();

  /// Closes every connection (presence unavailable, clean close) and records DISCONNECTED /
  /// SHUTDOWN for each live session; connections still open at `deadline` are aborted.
  void Shutdown(absl::Time deadline);
  /// After Shutdown and once its transitions are written: gives every lease up and leaves the
  /// replica set, so the other replicas take the sessions over at once.
  void Leave();

  class Impl;

 private:
  void StopKeeper();

  std::shared_ptr<Impl> impl_;
  std::thread keeper_;
  // Runs the blocking part of GetAsync (database reads) off the io and gRPC threads.
  std::unique_ptr<boost::asio::thread_pool> readers_;
  SessionStore& store_;
  const Sealer& sealer_;
};

}  // namespace wasentinel::session
