#include "monitor_service.h"

#include "absl/strings/str_cat.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::monitor {
namespace {

constexpr int kMaxPageSize = 500;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxTransitions = 1000;
constexpr int kDefaultTransitions = 200;
constexpr int kMaxBuckets = 1000;
constexpr size_t kMaxQueryBytes = 100;

grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

grpc::Status CheckSessionId(const std::string& id) {
  return ToGrpc(CheckIdentifier("session_id", id, 128));
}
grpc::Status CheckTenantFilter(const std::string& tenant) {
  return tenant.empty() ? grpc::Status::OK : ToGrpc(CheckTenantId("tenant_id", tenant));
}
grpc::Status CheckJobName(const std::string& name) {
  return ToGrpc(CheckIdentifier("name", name, 64));
}
grpc::Status CheckTime(std::string_view field, const google::protobuf::Timestamp& t) {
  return ToGrpc(CheckTimestamp(field, t.seconds(), t.nanos()));
}

}  // namespace

MonitorServiceImpl::MonitorServiceImpl(MonitorRuntime runtime, const ApiKeys& keys)
    : rt_(std::move(runtime)), keys_(keys) {}

grpc::Status MonitorServiceImpl::Authorize(grpc::ServerContext* ctx, Scope scope,
                                           Caller* caller) const {
  return AuthorizeCall(keys_, ctx, scope, caller);
}

absl::StatusOr<MonitoredSession> MonitorServiceImpl::Visible(const Caller& caller,
                                                             const std::string& session_id) const {
  auto s = rt_.store->Get(session_id);
  if (s.ok() && caller.Sees(s->health.tenant_id())) return s;
  if (!s.ok() && s.status().code() != absl::StatusCode::kNotFound) return s.status();
  return NotVisible(caller, "session", session_id, s.status());
}

grpc::Status MonitorServiceImpl::LeaderOnly() const {
  if (rt_.leader()) return grpc::Status::OK;
  const std::string leader = rt_.leader_name();
  return {grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("this monitor (", rt_.replica, ") stands by; ",
                       leader.empty() ? "no leader is known yet" : "call the leader, " + leader)};
}

grpc::Status MonitorServiceImpl::GetSessionHealth(grpc::ServerContext* ctx,
                                                  const v1::GetSessionHealthRequest* req,
                                                  v1::GetSessionHealthResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->session_id()));
  auto s = Visible(caller, req->session_id());
  if (!s.ok()) return ToGrpc(s.status());
  *resp->mutable_health() = s->health;
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::ListSessionHealth(grpc::ServerContext* ctx,
                                                   const v1::ListSessionHealthRequest* req,
                                                   v1::ListSessionHealthResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckTenantFilter(req->tenant_id()));
  if (!req->page_token().empty()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckIdentifier("page_token", req->page_token(), 512)));
  }
  if (req->levels_size() > 8) return Invalid("levels holds at most 8 levels");
  if (req->states_size() > 16) return Invalid("states holds at most 16 states");
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckText("query", req->query(), {.max_bytes = kMaxQueryBytes})));
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  HealthFilter filter;
  filter.tenant_id = *tenant;
  filter.manual_intervention_only = req->manual_intervention_only();
  for (int l : req->levels()) {
    if (!v1::HealthLevel_IsValid(l) || l == v1::HEALTH_LEVEL_UNSPECIFIED) {
      return Invalid(absl::StrCat("unknown level ", l));
    }
    filter.levels.push_back(static_cast<v1::HealthLevel>(l));
  }
  for (int st : req->states()) {
    if (!sv1::SessionState_IsValid(st) || st == sv1::SESSION_STATE_UNSPECIFIED) {
      return Invalid(absl::StrCat("unknown state ", st));
    }
    filter.states.push_back(static_cast<sv1::SessionState>(st));
  }
  filter.query = NormalizeQuery(req->query());
  auto page = rt_.store->List(filter, req->page_size() ? req->page_size() : kDefaultPageSize,
                              req->page_token());
  if (!page.ok()) return ToGrpc(page.status());
  for (auto& s : page->sessions) *resp->add_sessions() = std::move(s.health);
  resp->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::ListTransitions(grpc::ServerContext* ctx,
                                                 const v1::ListTransitionsRequest* req,
                                                 v1::ListTransitionsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->page_size() < 0 || req->page_size() > kMaxTransitions) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxTransitions));
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->session_id()));
  if (!caller.all_tenants()) {
    if (auto s = Visible(caller, req->session_id()); !s.ok()) return ToGrpc(s.status());
  }
  if (req->has_since()) WAS_GRPC_RETURN_IF_ERROR(CheckTime("since", req->since()));
  if (req->has_until()) WAS_GRPC_RETURN_IF_ERROR(CheckTime("until", req->until()));
  const absl::Time until = req->has_until() ? FromProto(req->until()) : absl::Now();
  const absl::Time since = req->has_since() ? FromProto(req->since()) : until - absl::Hours(24);
  if (since >= until) return Invalid("since must be before until");
  auto history = rt_.store->History(req->session_id(), since, until,
                                    req->page_size() ? req->page_size() : kDefaultTransitions);
  if (!history.ok()) return ToGrpc(history.status());
  *resp = *std::move(history);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::GetHealthStats(grpc::ServerContext* ctx,
                                                const v1::GetHealthStatsRequest* req,
                                                v1::GetHealthStatsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckTenantFilter(req->tenant_id()));
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  auto stats = rt_.store->Stats(*tenant);
  if (!stats.ok()) return ToGrpc(stats.status());
  *resp = *std::move(stats);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::GetHealthHistory(grpc::ServerContext* ctx,
                                                  const v1::GetHealthHistoryRequest* req,
                                                  v1::GetHealthHistoryResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckTenantFilter(req->tenant_id()));
  if (req->has_since()) WAS_GRPC_RETURN_IF_ERROR(CheckTime("since", req->since()));
  if (req->has_until()) WAS_GRPC_RETURN_IF_ERROR(CheckTime("until", req->until()));
  const absl::Time until = req->has_until() ? FromProto(req->until()) : absl::Now();
  const absl::Time since = req->has_since() ? FromProto(req->since()) : until - absl::Hours(24 * 7);
  if (since >= until) return Invalid("since must be before until");
  const absl::Duration bucket = req->has_bucket() ? FromProto(req->bucket()) : absl::Hours(24);
  if (bucket < absl::Minutes(1)) return Invalid("bucket must be at least 1 minute");
  if ((until - since) / bucket > kMaxBuckets) {
    return Invalid(absl::StrCat("the range holds more than ", kMaxBuckets,
                                " buckets; choose a longer bucket or a shorter range"));
  }
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  auto history = rt_.store->FleetHistory(*tenant, since, until, bucket);
  if (!history.ok()) return ToGrpc(history.status());
  *resp = *std::move(history);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::AcknowledgeSession(grpc::ServerContext* ctx,
                                                    const v1::AcknowledgeSessionRequest* req,
                                                    v1::AcknowledgeSessionResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->session_id()));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("note", req->note(), {.max_bytes = 1000, .multiline = true})));
  if (auto st = Visible(caller, req->session_id()); !st.ok()) return ToGrpc(st.status());
  WAS_GRPC_RETURN_IF_ERROR(LeaderOnly());
  absl::MutexLock lock(rt_.mu);
  auto health = rt_.monitor->Acknowledge(req->session_id(), req->note());
  if (!health.ok()) return ToGrpc(health.status());
  *resp->mutable_health() = *std::move(health);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest*,
                                          v1::ListJobsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(RequireAllTenants(caller, "the monitor's jobs")));
  for (auto& j : rt_.jobs->List()) *resp->add_jobs() = std::move(j);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::TriggerJob(grpc::ServerContext* ctx,
                                            const v1::TriggerJobRequest* req,
                                            v1::TriggerJobResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(RequireAllTenants(caller, "the monitor's jobs")));
  WAS_GRPC_RETURN_IF_ERROR(LeaderOnly());
  WAS_GRPC_RETURN_IF_ERROR(CheckJobName(req->name()));
  auto result = rt_.jobs->Trigger(req->name());
  if (!result.ok()) return ToGrpc(result.status());
  *resp->mutable_result() = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::PauseJob(grpc::ServerContext* ctx, const v1::PauseJobRequest* req,
                                          v1::PauseJobResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(RequireAllTenants(caller, "the monitor's jobs")));
  WAS_GRPC_RETURN_IF_ERROR(LeaderOnly());
  WAS_GRPC_RETURN_IF_ERROR(CheckJobName(req->name()));
  auto job = rt_.jobs->Pause(req->name());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::ResumeJob(grpc::ServerContext* ctx,
                                           const v1::ResumeJobRequest* req,
                                           v1::ResumeJobResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(RequireAllTenants(caller, "the monitor's jobs")));
  WAS_GRPC_RETURN_IF_ERROR(LeaderOnly());
  WAS_GRPC_RETURN_IF_ERROR(CheckJobName(req->name()));
  auto job = rt_.jobs->Resume(req->name());
  if (!job.ok()) return ToGrpc(job.status());
  *resp->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status MonitorServiceImpl::GetMonitorStatus(grpc::ServerContext* ctx,
                                                  const v1::GetMonitorStatusRequest*,
                                                  v1::GetMonitorStatusResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  resp->set_replica(rt_.replica);
  resp->set_leader(rt_.leader());
  resp->set_leader_replica(rt_.leader_name());
  auto cursor = rt_.store->LastSequence();
  if (cursor.ok()) resp->set_last_event_sequence(*cursor);
  absl::MutexLock lock(rt_.mu);
  // The leader knows a newer cursor than it stored (it stores every 500 events).
  if (resp->leader()) {
    resp->set_last_event_sequence(std::max(resp->last_event_sequence(), rt_.monitor->cursor()));
  }
  const bool reachable = rt_.monitor->session_service_reachable();
  resp->set_session_service_reachable(reachable);
  resp->set_session_service_error(rt_.monitor->last_error());
  if (auto since = rt_.monitor->unreachable_since()) {
    *resp->mutable_session_service_unreachable_since() = ToProto(*since);
  }
  *resp->mutable_session_service_uptime() = ToProto(rt_.monitor->session_service_uptime());
  resp->set_status(reachable && cursor.ok() ? v1::MONITOR_STATUS_OK : v1::MONITOR_STATUS_ERROR);
  return grpc::Status::OK;
}

}  // namespace wasentinel::monitor
