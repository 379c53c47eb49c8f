// SessionStore on PostgreSQL (libpqxx), with the session-service schema migrations.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "store.h"

namespace wasentinel {
class PgPool;
struct Migration;
}  // namespace wasentinel

namespace wasentinel::session {

class PgSessionStore final : public SessionStore {
 public:
  explicit PgSessionStore(PgPool& pool) : pool_(pool) {}

  /// session-service's migrations (service name "session-service").
  static const std::vector<Migration>& Migrations();

  absl::StatusOr<std::pair<SessionRecord, EventRecord>> Create(
      const SessionRecord& record, const std::string& lease_owner = "", int64_t lease_holder = 0,
      const ImportedPreKeys* pre_keys = nullptr) override;
  absl::StatusOr<SessionRecord> Get(const std::string& id) override;
  absl::StatusOr<SessionRecord> GetByName(const std::string& tenant_id,
                                          const std::string& session_name) override;
  absl::StatusOr<SessionPage> List(const SessionFilter& filter, int page_size,
                                   const std::string& page_token) override;
  absl::StatusOr<std::vector<SessionRecord>> ListRestorable() override;
  absl::StatusOr<std::vector<SessionRecord>> ListLive() override;
  absl::StatusOr<std::vector<SessionRecord>> GetMany(const std::vector<std::string>& ids) override;
  absl::StatusOr<SessionRecord> Update(const std::string& id, const SessionUpdate& update) override;
  absl::StatusOr<EventRecord> RecordTransition(const Transition& t) override;
  /// One transaction for the whole batch, its statements prepared once per connection.
  absl::StatusOr<std::vector<absl::StatusOr<EventRecord>>> RecordTransitions(
      absl::Span<const Transition> batch) override;
  absl::StatusOr<std::vector<SessionRecord>> ListSealedNotUnder(const std::string& key_id,
                                                                int limit) override;
  absl::StatusOr<bool> ReplaceSealed(const std::string& id, const SealedCredentials& expected,
                                     const SealedCredentials& replacement) override;
  absl::StatusOr<std::vector<EventRecord>> EventsAfter(int64_t after, const SessionFilter& filter,
                                                       int limit) override;
  absl::StatusOr<int64_t> LatestSequence() override;
  absl::StatusOr<int64_t> OldestSequence() override;
  absl::StatusOr<int64_t> PruneEventsBefore(absl::Time cutoff, int batch) override;
  absl::StatusOr<std::vector<std::pair<v1::SessionState, int64_t>>> CountByState() override;
  absl::Status RecordPhoneSightings(
      const std::vector<std::pair<std::string, absl::Time>>& sightings) override;
  absl::StatusOr<absl::Duration> Ping() override;
  absl::StatusOr<int64_t> StartHolder(const ReplicaInfo& me, absl::Duration ttl) override;
  absl::StatusOr<HolderState> RenewHolder(int64_t holder, absl::Duration ttl) override;
  absl::StatusOr<std::vector<int64_t>> HeldTokens(int64_t holder) override;
  absl::Status EndHolder(int64_t holder) override;
  absl::StatusOr<std::vector<Lease>> AcquireLeases(const std::vector<std::string>& ids,
                                                   const std::string& owner,
                                                   int64_t holder) override;
  absl::StatusOr<std::vector<Lease>> ClaimOrphans(const std::string& owner, int64_t holder,
                                                  int limit) override;
  absl::StatusOr<WantedCounts> CountWanted() override;
  absl::Status ReleaseLeases(const std::vector<int64_t>& tokens) override;
  absl::StatusOr<std::optional<ReplicaInfo>> LeaseOwner(const std::string& id) override;
  absl::StatusOr<std::vector<ReplicaInfo>> LiveReplicas() override;
  absl::StatusOr<std::vector<EventRecord>> EventsBySequence(
      const std::vector<int64_t>& sequences) override;

  /// NOTIFY channels: a new `session_events` row (payload: its sequence), and leases given up
  /// (payload: the holder id that ended).
  static constexpr const char* kEventsChannel = "session_events";
  static constexpr const char* kLeasesChannel = "session_leases";

 private:
  // Every session matching the SQL condition `where` (a constant), ordered by id.
  absl::StatusOr<std::vector<SessionRecord>> SelectSessions(const char* what, const char* where);
  // The one session `sql` (with `args`) selects or returns; NOT_FOUND(`not_found`) for none.
  template <class... Args>
  absl::StatusOr<SessionRecord> SelectOne(const char* what, const std::string& not_found,
                                          const std::string& sql, const Args&... args);
  // The single int64 that `sql` selects.
  absl::StatusOr<int64_t> ScalarInt64(const char* what, const char* sql);

  PgPool& pool_;
  // Expand step (removed by the contract release with `session_replicas`): the lease
  // time-to-live last given to StartHolder or RenewHolder, in µs, by which LiveReplicas judges
  // the heartbeats of previous-version replicas; before either, the default --lease_ttl.
  std::atomic<int64_t> lease_ttl_us_ = absl::ToInt64Microseconds(absl::Seconds(30));
};

/// "CONNECTED" ↔ SESSION_STATE_CONNECTED: the stored (and logged) names.
std::string StateName(v1::SessionState state);
v1::SessionState StateFromName(std::string_view name);
std::string ReasonName(v1::StateReason reason);
v1::StateReason ReasonFromName(std::string_view name);

}  // namespace wasentinel::session
