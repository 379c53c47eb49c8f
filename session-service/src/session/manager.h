// The session core: every WhatsApp session this replica holds, kept connected.
//
// Parts, one job each:
//   manager.h        the calls (this class): store reads, leases, then the state machine
//   state_machine.h  the runtimes and their transitions, on the connection thread
//   session_rules.h  the rules that need no thread (which sessions want a socket, …)
//   lease_keeper.h   leases across replicas: take, renew, lose, claim orphans (its own thread)
//   restore_pacer.h  the start-up restore's pace
//   view_cache.h     GetSession answered without the connection thread
//
// Source: README "Architecture" › "Session states" (causes → next state → action; the start-up
// restore with stagger and 5/15/45 s retries; the restore on a status query; shutdown writes
// DISCONNECTED) and "More than one replica" (leases; calls about a session another replica
// holds answer UNAVAILABLE carrying that replica, OwnerOf, for the API to forward).
//
// Threads: the public methods are called from gRPC threads (never the connection thread: they
// block on it); store reads happen on the caller's thread; runtime changes run on the
// connection thread and are awaited. Transitions are stored in order by the TransitionWriter
// and published to watchers after they are stored.
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
#include "lease_keeper.h"
#include "metrics.h"
#include "session_types.h"
#include "state_machine.h"
#include "transition_writer.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel::session {

// The entry point of the session core for the API (session_service.h): each call reads the
// stored row on the caller's thread, takes the session's lease (LeaseKeeper), then has the
// state machine act on the connection thread (StateMachine::OnIo) and answers its view.
class SessionManager {
 public:
  /// Not owned: io (the connection thread's io_context), tls, store, sealer, writer, metrics
  /// (may be null), clock (null: the system clock). `connect` null: real WhatsApp connections
  /// (state_machine.h ConnectionFactory).
  SessionManager(boost::asio::io_context& io, boost::asio::ssl::context& tls, SessionStore& store,
                 const Sealer& sealer, TransitionWriter& writer, ManagerOptions options,
                 std::shared_ptr<spdlog::logger> log, SessionMetrics* metrics = nullptr,
                 Clock* clock = nullptr, ConnectionFactory connect = nullptr);
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

  /// Start-up. Joins the replica set first (a new lease holder, LeaseKeeper::StartHolder). The
  /// first replica of a cluster (no other live one) restores as README "Session states" says:
  /// sessions stored as live that will not be restored become DISCONNECTED (SERVICE_RESTART);
  /// restorable ones are leased and connected at `restore_per_second`. A replica joining a
  /// running cluster claims only orphans (TAKEOVER). Then the lease keeper starts.
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
  /// After Shutdown and once its transitions are written: gives every lease up and ends its
  /// lease holder (store.h EndHolder), so the other replicas take the sessions over at once.
  void Leave();

 private:
  absl::StatusOr<ImportedPreKeys> ImportPreKeys(const NewSession& req);

  const ManagerOptions options_;
  SessionStore& store_;
  const Sealer& sealer_;
  std::shared_ptr<StateMachine> sessions_;  // shared with the io_context's pending handlers
  std::unique_ptr<LeaseKeeper> leases_;
  // Runs the blocking part of GetAsync (database reads) off the io and gRPC threads.
  std::unique_ptr<boost::asio::thread_pool> readers_;
};

}  // namespace wasentinel::session
