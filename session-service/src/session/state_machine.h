// The session state machine: the runtime of every session this replica holds (its lease, its
// credentials, its connection, its state), the transitions that WhatsApp's answers, the
// retry schedule and people's calls cause, and the records of those transitions (through the
// TransitionWriter, fenced by the session's lease).
//
// Source: README "Architecture" › "Session states" (causes → next state → action) and its
// "What WhatsApp says" table; session_rules.h holds the rules that need no thread.
//
// Threads: everything here runs on the connection thread (the io_context `io` that also runs
// every wa::Connection), and asserts it (connection_thread.h), except where a method says
// "any thread". Other threads reach it through OnIo(), which posts a task and waits.
// Clock: `clock` for transition times and ban ends; timers are the io_context's steady timers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "connection_thread.h"
#include "e2ee/signal.h"
#include "metrics.h"
#include "restore_pacer.h"
#include "session_types.h"
#include "transition_writer.h"
#include "view_cache.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel::session {

/// Starts a WhatsApp connection; the seam between the state machine and the sockets
/// (wa::Connection::Start in production).
using ConnectionFactory = std::function<std::shared_ptr<wa::ConnectionHandle>(
    const wa::ConnectionOptions& options, const wa::DeviceCredentials& credentials,
    std::shared_ptr<wa::ConnectionObserver> observer)>;

/// The optional parts of a state change (SetState): what else the stored transition carries.
struct StateChange {
  std::string error;             ///< last_error (kept when empty, cleared on CONNECTED)
  bool count_reconnect = false;  ///< reconnect_count + 1
  bool count_error = false;      ///< error_count + 1
  bool clear_credentials = false;
  std::optional<CredentialsUpdate> set_credentials;
  /// Runs on the writer's thread once the transition is stored (or failed to be).
  std::function<void(const absl::StatusOr<EventRecord>&)> on_stored;
};

class StateMachine : public std::enable_shared_from_this<StateMachine> {
 public:
  /// `connect` null: wa::Connection::Start on `io` with `tls`. `metrics` may be null. Not
  /// owned: io, tls, sealer, writer, clock, metrics (they outlive the io_context's handlers).
  StateMachine(boost::asio::io_context& io, boost::asio::ssl::context& tls, const Sealer& sealer,
               TransitionWriter& writer, const ManagerOptions& options, Clock& clock,
               std::shared_ptr<spdlog::logger> log, SessionMetrics* metrics,
               ConnectionFactory connect = nullptr);

  /// Any thread but the connection thread: runs `fn` there and waits for its result.
  template <class F>
  auto OnIo(F fn) -> decltype(fn()) {
    WAS_ASSERT_NOT_CONNECTION_THREAD(io_);
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto result = task->get_future();
    // The handler owns the task: a handler destroyed unrun breaks the promise (an exception
    // here) instead of leaving the caller waiting forever.
    Post([task] { (*task)(); });
    return result.get();
  }
  /// Any thread: runs `fn` on the connection thread later (after Touch()).
  void Post(std::function<void()> fn);
  /// Any thread: GetSession's read cache (view_cache.h).
  ViewCache& views() { return views_; }
  boost::asio::io_context& io() { return io_; }
  const std::shared_ptr<spdlog::logger>& log() const { return log_; }

  // ---- the API's calls, on the connection thread; `rec` is the stored row ----

  /// A held session's live view from memory, restored on the spot if it should be
  /// (RESTORE_ON_DEMAND); nullopt when it is not held here. Caches the view.
  std::optional<SessionView> HeldView(const std::string& id);
  /// A session just created with credentials (leased here): connects it when auto_connect.
  /// INVALID_ARGUMENT when its credentials do not open.
  absl::StatusOr<SessionView> Created(const SessionRecord& rec);
  /// Fresh credentials and a registration connection; the QR codes (or the code for
  /// `phone_number`) and the outcome go to `feed`. FAILED_PRECONDITION while pairing.
  absl::StatusOr<SessionView> StartPairing(const SessionRecord& rec,
                                           std::shared_ptr<PairingFeed> feed,
                                           const std::string& phone_number);
  /// Cancels a pairing still waiting for its scan (no-op for another feed or once paired).
  void CancelPairing(const std::string& id, const std::shared_ptr<PairingFeed>& feed);
  /// Connects unless a connection exists (USER). FAILED_PRECONDITION without credentials.
  absl::StatusOr<SessionView> Connect(const SessionRecord& rec);
  /// A fresh connection and retry schedule; `recovery`: RECOVERY, refused (FAILED_PRECONDITION)
  /// where session_rules.h RecoveryAllowed says no.
  absl::StatusOr<SessionView> Reconnect(const SessionRecord& rec, bool recovery);
  /// DISCONNECTED / USER; cancels a pairing.
  SessionView Disconnect(const SessionRecord& rec);
  /// Logs the device out at WhatsApp (connecting first if needed) and forgets its credentials:
  /// LOGGED_OUT with `reason`. `then` runs here afterwards with what WhatsApp answered.
  void Logout(const SessionRecord& rec, v1::StateReason reason,
              std::function<void(absl::Status)> then);
  /// Logout when paired, then DELETED; `on_stored` gets the stored event (or why not).
  void Delete(const SessionRecord& rec,
              std::function<void(const absl::StatusOr<EventRecord>&)> on_stored);
  /// A ping on the live socket; `done` gets the round trip. HeldElsewhere when `rec.owner` is
  /// another replica, FAILED_PRECONDITION without a live socket here.
  absl::Status Probe(const SessionRecord& rec, absl::Duration timeout,
                     std::function<void(absl::StatusOr<absl::Duration>)> done);
  /// New credentials (DISCONNECTED / CREDENTIALS_IMPORTED, stored with the transition).
  /// FAILED_PRECONDITION while pairing.
  absl::Status ImportCredentials(const SessionRecord& rec, const wa::DeviceCredentials& creds,
                                 CredentialsUpdate update,
                                 std::function<void(const absl::StatusOr<EventRecord>&)> on_stored);
  /// After the import is stored: connects when active and auto-connect.
  absl::StatusOr<SessionView> Imported(const SessionRecord& rec);
  /// UpdateSession's stored row: its settings onto the runtime; inactive disconnects (USER).
  SessionView Updated(const SessionRecord& rec);
  /// Stored rows with this replica's live overlay (absent where it holds no runtime).
  std::vector<SessionView> Overlay(std::vector<SessionRecord> records);
  std::optional<LiveInfo> LiveOf(const std::string& id) const;
  bool Holds(const std::string& id) const { return sessions_.contains(id); }

  // ---- phone sightings (FlushPhoneSightings) ----

  /// The sightings not stored yet, marked stored.
  std::vector<std::pair<std::string, absl::Time>> TakePhoneSightings();
  /// Sightings that could not be stored: kept for the next flush.
  void KeepPhoneSightings(const std::vector<std::pair<std::string, absl::Time>>& sightings);

  // ---- leases (lease_keeper.h decides; these apply its decisions here) ----

  /// Does this replica hold the lease of `id` (a runtime carrying a token)?
  bool HasLease(const std::string& id) const;
  /// The runtime of a session whose lease was just taken, carrying `token`.
  void Adopt(const SessionRecord& rec, int64_t token);
  /// Leased sessions (`tokens` by id) adopted and queued for a paced connect with `reason`; a
  /// session whose credentials do not open is recorded DISCONNECTED.
  void AdoptAndRestore(const std::vector<SessionRecord>& records,
                       const absl::flat_hash_map<std::string, int64_t>& tokens,
                       v1::StateReason reason);
  /// (id, token) of every lease held.
  std::vector<std::pair<std::string, int64_t>> HeldLeases() const;
  size_t held() const { return sessions_.size(); }
  /// The lease carrying `token` is gone: the socket is cut at once and the runtime dropped.
  /// `record`: a live session is recorded DISCONNECTED / LEASE_LOST first (fenced by `token`).
  void LoseLease(const std::string& id, int64_t token, const std::string& why, bool record);
  /// A state change of a session no replica holds (start-up clean-up), fenced with token 0.
  void RecordUnowned(const SessionRecord& rec, v1::SessionState to, v1::StateReason reason);

  // ---- shutdown ----

  /// Refuses new connects, closes every connection (presence unavailable, clean close) and
  /// records DISCONNECTED / SHUTDOWN; `done` runs once every socket closed.
  void ShutdownAll(std::function<void()> done);
  /// Past the drain deadline: cuts what is still closing.
  void AbortClosing();
  bool stopping() const { return stopping_; }

 private:
  class Observer;
  class Link;
  // What this replica keeps of a session it holds.
  struct Runtime {
    SessionRecord record;  // the stored row as this replica changed it (MirrorTransition)
    v1::SessionState state = v1::SESSION_STATE_DISCONNECTED;
    v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
    std::string last_error;
    std::optional<wa::DeviceCredentials> creds;
    std::shared_ptr<wa::ConnectionHandle> conn;
    uint64_t generation = 0;  // bumped per connection: events of older ones are ignored
    int64_t lease_token = 0;  // this replica's fencing token for the session
    bool logged_in = false;
    int attempt = 0;  // retries used since the last successful login
    absl::Time connecting_since;
    std::unique_ptr<boost::asio::steady_timer> retry_timer;
    wa::WaVersion version;            // announced by the current (or last) connection
    bool version_retried = false;     // a 405 already led to one more login with a newer version
    bool awaiting_version = false;    // after a 405: the version keeper is asked for a newer one
    bool phone_seen_unsaved = false;  // record.phone_last_seen_at is newer than the stored one
    bool prekeys_in_flight = false;   // a batch of one-time pre-keys is being made
    std::shared_ptr<PairingFeed> pairing;  // a StartPairing stream waits for the outcome
    std::string pairing_phone;             // pairing by code for this number (empty: by QR code)
  };

  Runtime& Insert(const SessionRecord& rec);
  absl::StatusOr<Runtime*> Ensure(const SessionRecord& rec);
  Runtime& EnsureAnyway(const SessionRecord& rec);
  void ReleaseSealedCopy(Runtime& rt);
  Runtime* Find(const std::string& id, uint64_t generation);
  LiveInfo Live(const Runtime& rt) const;
  void SetState(Runtime& rt, v1::SessionState to, v1::StateReason reason, StateChange change = {});
  void SetEnded(Runtime& rt, v1::SessionState to, const wa::CloseInfo& info,
                bool clear_credentials = false);
  void Apply(Runtime& rt, Transition t);
  Transition Change(const SessionRecord& rec, v1::SessionState from, v1::SessionState to,
                    v1::StateReason reason, const std::string& error = "") const;
  absl::Status ConnectNow(Runtime& rt, v1::StateReason reason, bool count_reconnect);
  void WakePacer();
  bool RestoreOne(const std::string& id, v1::StateReason reason);
  bool WantsRestore(const Runtime& rt) const;

  // Connection events (Observer), each for the connection of `generation` only.
  void OnLoggedIn(const std::string& id, uint64_t generation);
  void OnPhoneSeen(const std::string& id, uint64_t generation, absl::Time at);
  void OnPreKeyCount(const std::string& id, uint64_t generation, int64_t count);
  bool OnEncryptedMessage(const std::string& id, uint64_t generation, const wa::Node& message);
  void OnIdentityChanged(const std::string& id, uint64_t generation, const std::string& user);
  void UploadPreKeys(const std::string& id, uint64_t generation,
                     absl::StatusOr<std::vector<signal::PreKey>> keys);
  void OnQrCode(const std::string& id, uint64_t generation, const std::string& text,
                absl::Duration valid_for, int index, int total);
  void OnPairingCode(const std::string& id, uint64_t generation, const std::string& code,
                     absl::Duration valid_for);
  void OnPaired(const std::string& id, uint64_t generation, const wa::PairedDevice& device,
                const wa::DeviceCredentials& creds);
  void OnClosed(const std::string& id, uint64_t generation, const wa::CloseInfo& info);
  void OnOutdated(Runtime& rt, wa::CloseInfo info);
  void FailPairing(Runtime& rt, v1::PairingUpdate::Failure::Reason reason,
                   const std::string& message);

  void ScheduleBanEnd(Runtime& rt);
  void ScheduleRetry(Runtime& rt);
  void ScheduleAt(Runtime& rt, absl::Duration delay, v1::StateReason reason);
  void AbortConnection(Runtime& rt);
  // The messenger drops what it keeps of the session (its credentials changed or went).
  void ForgetMessages(Runtime& rt);
  void CloseConnection(Runtime& rt);
  void DisconnectRuntime(Runtime& rt, v1::StateReason reason);
  void LogoutRuntime(const std::string& id, v1::StateReason reason,
                     std::function<void(absl::Status)> then);
  void Forget(const std::string& id);

  SessionMetrics* const metrics_;  // may be null
  boost::asio::io_context& io_;
  boost::asio::ssl::context& tls_;
  const Sealer& sealer_;
  TransitionWriter& writer_;
  const ManagerOptions options_;
  Clock& clock_;
  const Backoff backoff_;
  std::shared_ptr<spdlog::logger> log_;
  ConnectionFactory connect_;
  std::mt19937_64 rng_;
  // Nodes: a Runtime is ~1 KB, and a flat table's empty slots (up to half of them after a
  // growth) would cost as much again per session; a node also keeps `Runtime&` valid across
  // inserts.
  absl::node_hash_map<std::string, Runtime> sessions_;
  // Connections closing gracefully, by "<id>/<generation>"; each handle is kept until OnClosed.
  absl::flat_hash_map<std::string, std::shared_ptr<wa::ConnectionHandle>> closing_;
  std::function<void()> all_closed_;
  RestorePacer pacer_;
  ViewCache views_;
  bool stopping_ = false;
};

}  // namespace wasentinel::session
