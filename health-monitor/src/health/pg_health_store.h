// HealthStore on PostgreSQL (libpqxx), with the health-monitor's schema migrations (service
// name "health-monitor"; tables prefixed monitor_).
#pragma once

#include "store.h"

namespace wasentinel {
class PgPool;
struct Migration;
}  // namespace wasentinel

namespace wasentinel::monitor {

class PgHealthStore final : public HealthStore {
 public:
  explicit PgHealthStore(PgPool& pool) : pool_(pool) {}

  static const std::vector<Migration>& Migrations();

  absl::StatusOr<std::vector<MonitoredSession>> LoadAll() override;
  absl::Status Save(const MonitoredSession& session) override;
  absl::Status SaveBatch(const std::vector<const MonitoredSession*>& sessions,
                         const std::vector<v1::Transition>& transitions) override;
  absl::Status Forget(const std::string& session_id) override;
  absl::StatusOr<MonitoredSession> Get(const std::string& session_id) override;
  absl::StatusOr<HealthPage> List(const HealthFilter& filter, int page_size,
                                  const std::string& page_token) override;
  absl::StatusOr<v1::GetHealthStatsResponse> Stats(const std::string& tenant_id) override;
  absl::StatusOr<v1::GetHealthHistoryResponse> FleetHistory(const std::string& tenant_id,
                                                            absl::Time since, absl::Time until,
                                                            absl::Duration bucket) override;
  absl::StatusOr<int64_t> AddTransition(const v1::Transition& t) override;
  absl::StatusOr<int64_t> AddRecovery(const v1::RecoveryAttempt& r) override;
  absl::Status SetRecoveryOutcome(int64_t id, v1::RecoveryAttempt::Outcome outcome,
                                  const std::string& error) override;
  absl::StatusOr<std::vector<v1::RecoveryAttempt>> ReconnectsSince(absl::Time since) override;
  absl::StatusOr<v1::ListTransitionsResponse> History(const std::string& session_id,
                                                      absl::Time since, absl::Time until,
                                                      int limit) override;
  absl::StatusOr<std::vector<OpenAlert>> OpenAlerts() override;
  absl::Status RecordAlert(const OpenAlert& alert) override;
  absl::Status CloseAlert(const std::string& dedup_key, absl::Time at) override;
  absl::StatusOr<std::vector<JobRecord>> Jobs() override;
  absl::Status SaveJob(const JobRecord& job) override;
  absl::StatusOr<int64_t> LastSequence() override;
  absl::Status SetLastSequence(int64_t sequence) override;
  absl::StatusOr<int64_t> PruneHistoryBefore(absl::Time before, int batch) override;

 private:
  PgPool& pool_;
};

}  // namespace wasentinel::monitor
