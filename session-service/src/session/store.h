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
#include "wasentinel/common/bytes.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

/// Credentials sealed at rest (wasentinel::Sealer output).
struct SealedCredentials {
  std::string key_id;
  Bytes blob;
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

/// A live session-service replica (the `session_replicas` table): its id and the gRPC address
/// other replicas forward calls to.
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
};

class SessionStore : public TransitionStore {
 public:
  /// Inserts `record` (its id, state and timestamps are assigned) and its CREATED event. With
  /// a `lease_owner`, the same transaction gives that replica the session's lease for
  /// `lease_ttl`, so a session that wants a socket is never an orphan another replica claims
  /// between its insert and its lease.
  virtual absl::StatusOr<std::pair<SessionRecord, EventRecord>> Create(
      const SessionRecord& record, const std::string& lease_owner = "",
      absl::Duration lease_ttl = absl::ZeroDuration()) = 0;
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

  // ---- replicas: leases, fencing tokens, heartbeats (README "Architecture" › "More than one
  // replica"). Expiry is judged by the database clock, so replica clocks need not agree. ----

  /// Takes the leases of `ids` for `owner` for `ttl` where none is live or `owner` holds it
  /// (a fresh token either way); answers the leases won.
  virtual absl::StatusOr<std::vector<Lease>> AcquireLeases(const std::vector<std::string>& ids,
                                                           const std::string& owner,
                                                           absl::Duration ttl) = 0;
  /// Takes up to `limit` leases of sessions that want a socket and have no live lease: active,
  /// auto-connect, with credentials, and stored live, DISCONNECTED for a passing cause (not
  /// USER, RETRIES_EXHAUSTED, CLIENT_OUTDATED or LOGIN_REFUSED), or BANNED with a known end
  /// (its holder reconnects it then). The orphans of a replica that died or left.
  virtual absl::StatusOr<std::vector<Lease>> ClaimOrphans(const std::string& owner,
                                                          absl::Duration ttl, int limit) = 0;
  struct WantedCounts {
    int64_t wanted = 0;    ///< sessions that want a socket (the ClaimOrphans condition)
    int64_t orphaned = 0;  ///< of those, the ones no replica holds a live lease on
  };
  virtual absl::StatusOr<WantedCounts> CountWanted() = 0;
  /// Extends the leases still carrying `tokens` to now + `ttl`; answers those tokens (a token
  /// missing from the answer was taken over or its session deleted).
  virtual absl::StatusOr<std::vector<int64_t>> RenewLeases(const std::vector<int64_t>& tokens,
                                                           absl::Duration ttl) = 0;
  /// Gives up the leases still carrying `tokens`.
  virtual absl::Status ReleaseLeases(const std::vector<int64_t>& tokens) = 0;
  /// The replica holding a live lease on session `id`, nullopt when none does.
  virtual absl::StatusOr<std::optional<ReplicaInfo>> LeaseOwner(const std::string& id) = 0;
  /// Records that `me` is alive (its heartbeat).
  virtual absl::Status Heartbeat(const ReplicaInfo& me) = 0;
  /// Replicas whose heartbeat is younger than `ttl`, `me` included if it is.
  virtual absl::StatusOr<std::vector<ReplicaInfo>> LiveReplicas(absl::Duration ttl) = 0;
  /// A replica that leaves: its heartbeat row goes, and the others hear of it (NOTIFY
  /// `session_leases`) so they claim the sessions it gave up at once.
  virtual absl::Status RemoveReplica(const std::string& id) = 0;
  /// The events with these sequences, in sequence order (those pruned are left out).
  virtual absl::StatusOr<std::vector<EventRecord>> EventsBySequence(
      const std::vector<int64_t>& sequences) = 0;
};

/// True for the status of a transition refused by fencing (another replica owns the session).
bool IsFenced(const absl::Status& status);

}  // namespace wasentinel::session
