// gRPC wasentinel.monitor.v1.MonitorService (docs/api.md). Reads answer from the store, so every
// replica answers them; what acts (AcknowledgeSession, TriggerJob, PauseJob, ResumeJob) needs
// the leader's monitor, and a standby answers UNAVAILABLE naming the leader. Each call's API
// key scope is checked first (UNAUTHENTICATED / PERMISSION_DENIED); bad input is
// INVALID_ARGUMENT.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "health/jobs.h"
#include "health/monitor.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/monitor/v1/monitor.grpc.pb.h"

namespace wasentinel::monitor {

/// What the API needs from the running monitor.
struct MonitorRuntime {
  HealthStore* store = nullptr;
  /// The monitor and its lock (the checks and the watcher hold it while they work).
  absl::Mutex* mu = nullptr;
  Monitor* monitor = nullptr;
  JobScheduler* jobs = nullptr;
  /// Is this replica the leader now?
  std::function<bool()> leader;
  /// The replica that leads, as last recorded (empty: unknown).
  std::function<std::string()> leader_name;
  std::string replica;
};

class MonitorServiceImpl final : public v1::MonitorService::Service {
 public:
  MonitorServiceImpl(MonitorRuntime runtime, const ApiKeys& keys);

  grpc::Status GetSessionHealth(grpc::ServerContext*, const v1::GetSessionHealthRequest*,
                                v1::GetSessionHealthResponse*) override;
  grpc::Status ListSessionHealth(grpc::ServerContext*, const v1::ListSessionHealthRequest*,
                                 v1::ListSessionHealthResponse*) override;
  grpc::Status ListTransitions(grpc::ServerContext*, const v1::ListTransitionsRequest*,
                               v1::ListTransitionsResponse*) override;
  grpc::Status GetHealthStats(grpc::ServerContext*, const v1::GetHealthStatsRequest*,
                              v1::GetHealthStatsResponse*) override;
  grpc::Status GetHealthHistory(grpc::ServerContext*, const v1::GetHealthHistoryRequest*,
                                v1::GetHealthHistoryResponse*) override;
  grpc::Status AcknowledgeSession(grpc::ServerContext*, const v1::AcknowledgeSessionRequest*,
                                  v1::AcknowledgeSessionResponse*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse*) override;
  grpc::Status TriggerJob(grpc::ServerContext*, const v1::TriggerJobRequest*,
                          v1::TriggerJobResponse*) override;
  grpc::Status PauseJob(grpc::ServerContext*, const v1::PauseJobRequest*,
                        v1::PauseJobResponse*) override;
  grpc::Status ResumeJob(grpc::ServerContext*, const v1::ResumeJobRequest*,
                         v1::ResumeJobResponse*) override;
  grpc::Status GetMonitorStatus(grpc::ServerContext*, const v1::GetMonitorStatusRequest*,
                                v1::GetMonitorStatusResponse*) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx, Scope scope, Caller* caller = nullptr) const;
  // The session as the store keeps it, if `caller` may see it; another tenant's session answers
  // as a missing one does (api_keys.h NotVisible).
  absl::StatusOr<MonitoredSession> Visible(const Caller& caller,
                                           const std::string& session_id) const;
  // OK on the leader; UNAVAILABLE naming the leader elsewhere.
  grpc::Status LeaderOnly() const;

  MonitorRuntime rt_;
  const ApiKeys& keys_;
};

}  // namespace wasentinel::monitor
