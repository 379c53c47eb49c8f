// Persistence of sessions and their state-change events (the `sessions` and `session_events`
// tables; README "Architecture" › "Session states").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

/// Credentials sealed at rest (wasentinel::Sealer output).
struct SealedCredentials {
  std::string key_id;
  /// Empty in the state machine's copy of a held session once the credentials are open there
  /// (StateMachine::ReleaseSealedCopy).
  Bytes blob;
};

/// One-time pre-keys a session is created with (another client made and uploaded them:
/// Baileys' pre-key-<id>.json files): id → libsignal pre-key record, sealed like the
/// credentials, and the id its own next batch starts from (pg_signal_store.h).
struct ImportedPreKeys {
  std::vector<std::pair<uint32_t, SealedCredentials>> keys;
  uint32_t next_id = 1;
};

struct SessionRecord {
  std::string id;  ///< UUID
  std::string tenant_id;
  std::string session_name = "primary";
  std::string phone_number;
  std::string device_jid;
  std::string account_name;
  std::string owner_email;
  bool is_active = true;
  bool auto_connect = true;
  std::optional<SealedCredentials> credentials;
  v1::SessionState state = v1::SESSION_STATE_DISCONNECTED;
  v1::StateReason reason = v1::STATE_REASON_CREATED;
  std::string last_error;
  std::optional<absl::Time> last_connected_at;
  std::optional<absl::Time> last_disconnected_at;
  absl::Time created_at;
  absl::Time updated_at;
  int64_t reconnect_count = 0;
  int64_t error_count = 0;
  /// The replica whose lease on the session is live ("" when none), read with the row.
  std::string owner;
  /// The `<failure reason>` / `<stream:error code>` of the last connection WhatsApp ended; 0
  /// once connected again.
  int failure_code = 0;
  /// While BANNED: the temporary ban's code and end (absent: WhatsApp gave none).
  int ban_code = 0;
  std::optional<absl::Time> ban_expires_at;
  /// When the account's phone (its device 0) was last seen on this device's connection.
  std::optional<absl::Time> phone_last_seen_at;
};

/// A session lease (README "Architecture" › "More than one replica"): the right to hold the
/// session's WhatsApp socket. `token` is the fencing token: drawn from one sequence at every
/// acquisition, so it is unique across sessions and grows with each new owner; state writes carry
/// it and are refused once a newer owner holds the lease.
struct Lease {
  std::string session_id;
  int64_t token = 0;
};

/// A session-service replica (as its `lease_holders` row records it): its id and the gRPC
/// address other replicas forward calls to.
struct ReplicaInfo {
  std::string id;
  std::string address;
};

struct EventRecord {
  int64_t sequence = 0;
  std::string session_id;
  std::string tenant_id;
  v1::SessionState from = v1::SESSION_STATE_UNSPECIFIED;
  v1::SessionState to = v1::SESSION_STATE_UNSPECIFIED;
  v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
  std::string error;
  absl::Time at;
};

/// New credentials for a session (pairing, ImportCredentials), written with a transition.
struct CredentialsUpdate {
  SealedCredentials sealed;
  std::string phone_number;
  std::string device_jid;
};

/// UpdateSession: the fields that are set change.
struct SessionUpdate {
  std::optional<bool> auto_connect;
  std::optional<bool> is_active;
  std::optional<std::string> account_name;
  std::optional<std::string> owner_email;
};

/// One state change, written with its event in a single transaction.
struct Transition {
  std::string session_id;
  std::string tenant_id;
  v1::SessionState from = v1::SESSION_STATE_UNSPECIFIED;
  v1::SessionState to = v1::SESSION_STATE_UNSPECIFIED;
  v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
  std::string error;  ///< becomes last_error when not empty
  absl::Time at;
  bool count_reconnect = false;    ///< reconnect_count += 1
  bool count_error = false;        ///< error_count += 1
  bool clear_credentials = false;  ///< the device was logged out: its credentials are dead
  std::optional<CredentialsUpdate> set_credentials;  ///< stored with the transition
  bool delete_session = false;  ///< DeleteSession: the row goes, the event stays
  /// What WhatsApp ended the connection with (failure_code; 0 keeps the stored one, and a
  /// transition to CONNECTED clears it).
  int failure_code = 0;
  /// Stored with a transition to BANNED; any other transition clears them.
  int ban_code = 0;
  std::optional<absl::Time> ban_expires_at;
  /// Fencing: the writer's lease token. The write is refused (FAILED_PRECONDITION, IsFenced)
  /// unless the session's lease still carries this token; 0 writes only while no replica holds
  /// a live lease.
  int64_t lease_token = 0;
  /// Called on the writer's thread once the transition is stored (or finally failed).
  std::function<void(const absl::StatusOr<EventRecord>&)> on_stored;
};

struct SessionFilter {
  std::string tenant_id;                 ///< empty: any
  std::vector<v1::SessionState> states;  ///< empty: any
  std::string session_id;                ///< empty: any (events only)
};

struct SessionPage {
  std::vector<SessionRecord> sessions;
  std::string next_page_token;
};

/// The store seam. Errors: NOT_FOUND (unknown id), ALREADY_EXISTS (duplicate tenant +
/// session_name), INVALID_ARGUMENT (malformed id or token), UNAVAILABLE (database down).
/// Where transitions are stored: all the TransitionWriter needs of a store (SessionStore in
/// production, a recorder in the state machine's test).
class TransitionStore {
 public:
  virtual ~TransitionStore() = default;
  /// Writes the event and the session's new state (or deletes the row); answers the event with
  /// its sequence. NOT_FOUND when the session no longer exists; fenced (IsFenced) when another
  /// replica holds the session's lease.
  virtual absl::StatusOr<EventRecord> RecordTransition(const Transition& t) = 0;
  /// Writes `batch` in order: each transition's answer as RecordTransition gives it (a fenced
  /// or NOT_FOUND one does not stop the others). PgSessionStore writes a batch in one
  /// transaction, all or nothing: an error of the whole (UNAVAILABLE, or a statement that
  /// failed) means none was written. The default writes them one at a time and stops at the
  /// first the database did not answer (UNAVAILABLE, DEADLINE_EXCEEDED): that answer is given
  /// to it and to every one after it, none of which was tried; the TransitionWriter writes them
  /// again.
  virtual absl::StatusOr<std::vector<absl::StatusOr<EventRecord>>> RecordTransitions(
      absl::Span<const Transition> batch) {
    std::vector<absl::StatusOr<EventRecord>> answers;
    absl::Status unanswered;
    for (const Transition& t : batch) {
      if (!unanswered.ok()) {
        answers.push_back(unanswered);
        continue;
      }
      answers.push_back(RecordTransition(t));
      const absl::StatusCode code = answers.back().status().code();
      if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded) {
        unanswered = answers.back().status();
      }
    }
    return answers;
  }
};

class SessionStore : public TransitionStore {
 public:
  /// Inserts `record` (its id, state and timestamps are assigned) and its CREATED event. With
  /// a `lease_owner`, the same transaction gives that replica the session's lease under
  /// `lease_holder` (StartHolder), so a session that wants a socket is never an orphan another
  /// replica claims between its insert and its lease. FAILED_PRECONDITION when that holder is
  /// gone. `pre_keys` (with a lease owner): stored in the same transaction.
  virtual absl::StatusOr<std::pair<SessionRecord, EventRecord>> Create(
      const SessionRecord& record, const std::string& lease_owner = "", int64_t lease_holder = 0,
      const ImportedPreKeys* pre_keys = nullptr) = 0;
  virtual absl::StatusOr<SessionRecord> Get(const std::string& id) = 0;
  /// The session (tenant_id, session_name). NOT_FOUND when there is none.
  virtual absl::StatusOr<SessionRecord> GetByName(const std::string& tenant_id,
                                                  const std::string& session_name) = 0;
  /// Ordered by id; `page_size` rows at most.
  virtual absl::StatusOr<SessionPage> List(const SessionFilter& filter, int page_size,
                                           const std::string& page_token) = 0;
  /// Sessions to connect at start-up (README "Architecture" › "Session states"): session_name
  /// 'primary', credentials present, is_active and auto_connect.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListRestorable() = 0;
  /// Every session whose stored state is QR_PENDING, CONNECTING or CONNECTED.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListLive() = 0;
  /// The sessions among `ids` that exist, in no particular order.
  virtual absl::StatusOr<std::vector<SessionRecord>> GetMany(
      const std::vector<std::string>& ids) = 0;
  /// Applies `update`; answers the updated row.
  virtual absl::StatusOr<SessionRecord> Update(const std::string& id,
                                               const SessionUpdate& update) = 0;
  /// Up to `limit` sessions whose credentials are sealed under another key id than `key_id`.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListSealedNotUnder(const std::string& key_id,
                                                                        int limit) = 0;
  /// Replaces sealed credentials if they are still `expected` (compare-and-set); false when
  /// they changed meanwhile.
  virtual absl::StatusOr<bool> ReplaceSealed(const std::string& id,
                                             const SealedCredentials& expected,
                                             const SealedCredentials& replacement) = 0;
  /// Events with sequence > `after`, oldest first, at most `limit`.
  virtual absl::StatusOr<std::vector<EventRecord>> EventsAfter(int64_t after,
                                                               const SessionFilter& filter,
                                                               int limit) = 0;
  /// The newest sequence (0 when there is none).
  virtual absl::StatusOr<int64_t> LatestSequence() = 0;
  /// The oldest retained sequence (0 when there is none).
  virtual absl::StatusOr<int64_t> OldestSequence() = 0;
  /// Deletes up to `batch` events older than `cutoff`, oldest first; answers how many went.
  virtual absl::StatusOr<int64_t> PruneEventsBefore(absl::Time cutoff, int batch) = 0;
  /// phone_last_seen_at = the later of the stored one and the given one, for each (session id,
  /// time); unknown ids are skipped. Not fenced: a later time wins whoever writes it.
  virtual absl::Status RecordPhoneSightings(
      const std::vector<std::pair<std::string, absl::Time>>& sightings) = 0;
  /// Session counts by stored state.
  virtual absl::StatusOr<std::vector<std::pair<v1::SessionState, int64_t>>> CountByState() = 0;
  virtual absl::StatusOr<absl::Duration> Ping() = 0;

  // ---- replicas: lease holders, leases, fencing tokens (README "Architecture" › "More than one
  // replica"). A replica incarnation is one `lease_holders` row (its holder id, the epoch): the
  // replica's liveness and its gRPC address. Every lease names its holder and is live exactly
  // while that row exists with an expiry still ahead, so renewing the one holder row renews
  // every lease of the replica. Expiry is judged by the database clock, so replica clocks need
  // not agree. A holder past its expiry is deleted (its leases go with it) by the next replica
  // that takes leases, and is never revived: renewal only updates an existing row.
  //
  // Expand step (README "Deployment", the Migrations bullet): during a rolling update replicas
  // of the previous version run beside this one. They renew each lease's own expiry, write
  // leases without a holder and beat in `session_replicas`. A lease without a holder is live
  // while its own expiry is ahead, and is taken only once it has passed; while such a replica
  // is alive ("mixed versions", RenewHolder), this version also keeps its own leases' expiry and
  // its `session_replicas` heartbeat up to date for it. The contract release, one release
  // later, removes all of that. ----

  /// Starts a new incarnation of replica `me`: a `lease_holders` row with `me`'s id and address,
  /// live for `ttl` (database clock). Answers its holder id (> 0). While a previous-version
  /// replica is alive, also writes `me`'s heartbeat for it (expand step). UNAVAILABLE when the
  /// database is down.
  virtual absl::StatusOr<int64_t> StartHolder(const ReplicaInfo& me, absl::Duration ttl) = 0;
  /// What a holder has, as its renewal reads it: how many leases name it and the sum of their
  /// fencing tokens (tokens are unique, so a pair that differs from what the replica holds in
  /// memory means a lease was lost or gained behind its back).
  struct HolderState {
    int64_t leases = 0;
    int64_t token_sum = 0;
    /// Expand step: a replica of the previous version is alive, i.e. one whose heartbeat in
    /// `session_replicas` is younger than the ttl and which has no live holder. This renewal
    /// then also wrote the expiry of each of the holder's leases and the replica's heartbeat.
    bool previous_version_alive = false;
  };
  /// Extends `holder`'s life to now + `ttl` (database clock): one row written whatever the
  /// number of leases it has (in the same round trip, while a previous-version replica is
  /// alive, also each of its leases' own expiry and its `session_replicas` heartbeat: see
  /// HolderState), and answers its HolderState. NOT_FOUND when the holder row is gone (it
  /// expired and another replica deleted it: every lease it had is lost); UNAVAILABLE when the
  /// database is down.
  virtual absl::StatusOr<HolderState> RenewHolder(int64_t holder, absl::Duration ttl) = 0;
  /// The fencing tokens of `holder`'s leases, ascending (empty for an unknown holder).
  virtual absl::StatusOr<std::vector<int64_t>> HeldTokens(int64_t holder) = 0;
  /// Ends `holder` (a replica that leaves): its row goes, and with it every lease it still has
  /// and its replica's heartbeat in `session_replicas` (expand step), and the others hear of it
  /// (NOTIFY `session_leases`) so they claim those sessions at once. OK when the holder is
  /// already gone.
  virtual absl::Status EndHolder(int64_t holder) = 0;
  /// Deletes every expired holder (their leases go with them), then takes the leases of `ids`
  /// for replica `owner` under `holder` where no lease exists, where a previous-version
  /// replica's lease (no holder) expired, or where `owner` itself has one (under this holder or
  /// an earlier incarnation's, as a restarted replica of the same id does). Each lease won has
  /// a fresh token; answers those leases. INVALID_ARGUMENT for a
  /// malformed id (unknown ids are simply not won); FAILED_PRECONDITION when `holder` (the
  /// message names `session_leases_holder_fkey`) or a session is gone meanwhile.
  virtual absl::StatusOr<std::vector<Lease>> AcquireLeases(const std::vector<std::string>& ids,
                                                           const std::string& owner,
                                                           int64_t holder) = 0;
  /// Deletes every expired holder (their leases go with them), then takes for `owner` under
  /// `holder` up to `limit` leases of sessions that want a socket and have no lease (or only a
  /// previous-version replica's that expired): active,
  /// auto-connect, with credentials, and stored live, DISCONNECTED for a passing cause (not
  /// USER, RETRIES_EXHAUSTED, CLIENT_OUTDATED or LOGIN_REFUSED), or BANNED with a known end
  /// (its holder reconnects it then). The orphans of a replica that died or left. Oldest
  /// updated first; FAILED_PRECONDITION when `holder` is gone meanwhile.
  virtual absl::StatusOr<std::vector<Lease>> ClaimOrphans(const std::string& owner, int64_t holder,
                                                          int limit) = 0;
  struct WantedCounts {
    int64_t wanted = 0;    ///< sessions that want a socket (the ClaimOrphans condition)
    int64_t orphaned = 0;  ///< of those, the ones no replica holds a live lease on
  };
  virtual absl::StatusOr<WantedCounts> CountWanted() = 0;
  /// Gives up the leases still carrying `tokens` (tokens no longer stored are skipped).
  virtual absl::Status ReleaseLeases(const std::vector<int64_t>& tokens) = 0;
  /// The replica holding a live lease on session `id` (its id and, from its holder row, its
  /// address; for a previous-version replica's lease, from its `session_replicas` row); nullopt
  /// when none does. INVALID_ARGUMENT for a malformed id.
  virtual absl::StatusOr<std::optional<ReplicaInfo>> LeaseOwner(const std::string& id) = 0;
  /// Replicas with a live holder, `me` included once started, and (expand step) the
  /// previous-version replicas alive (HolderState), by id; one entry per replica id (the
  /// address of its newest incarnation).
  virtual absl::StatusOr<std::vector<ReplicaInfo>> LiveReplicas() = 0;
  /// The events with these sequences, in sequence order (those pruned are left out).
  virtual absl::StatusOr<std::vector<EventRecord>> EventsBySequence(
      const std::vector<int64_t>& sequences) = 0;
};

/// True for the status of a transition refused by fencing (another replica owns the session).
bool IsFenced(const absl::Status& status);
/// A FAILED_PRECONDITION that IsFenced recognises, with `message`.
absl::Status FencedStatus(std::string_view message);

}  // namespace wasentinel::session
