// MonitorService over gRPC on loopback: every method's answer, its errors (INVALID_ARGUMENT,
// NOT_FOUND, UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE on a standby), with a real
// PostgreSQL under the store.
#include "monitor_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "fakes.h"
#include "monitor_db.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/testing/fake_clock.h"

namespace wasentinel::monitor {
namespace {

constexpr char kReader[] = "reader-key-0123456789";
constexpr char kOperator[] = "operator-key-0123456789";
constexpr char kAdmin[] = "admin-key-0123456789ab";
constexpr char kAcmeReader[] = "acme-reader-key-0123456789";
constexpr char kGlobexAdmin[] = "globex-admin-key-0123456789";
const std::string kId = "6f1c1f1e-0000-4000-8000-000000000042";

struct Api : MonitorDb {
  wasentinel::testing::FakeClock clock;
  FakeSessions sessions;
  RecordingAlerts alerts;
  Monitor monitor{clock, store, sessions, alerts, HealthPolicy{}, MakeLogger("monitor", "warn")};
  absl::Mutex mu;
  std::unique_ptr<JobScheduler> jobs;
  ApiKeys keys =
      ApiKeys::FromConfig(absl::StrCat("r:read:", kReader, ",o:operate:", kOperator,
                                       ",a:admin:", kAdmin, ",acme-r:read:acme:", kAcmeReader,
                                       ",globex-a:admin:globex:", kGlobexAdmin))
          .value();
  bool leader = true;
  std::unique_ptr<MonitorServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::MonitorService::Stub> stub;

  Api() {
    sv1::Session s;
    s.set_id(kId);
    s.set_tenant_id("acme");
    s.set_phone_number("15551234567");
    s.set_state(sv1::SESSION_STATE_CONNECTED);
    s.set_is_active(true);
    s.set_auto_connect(true);
    s.set_has_credentials(true);
    s.set_socket_alive(true);
    *s.mutable_last_connected_at() = ToProto(clock.Now());
    sessions.sessions[kId] = s;
    std::vector<JobSpec> specs;
    specs.push_back({"health-check-deep", "every 5m",
                     [](absl::Time now) { return now + absl::Minutes(5); },
                     [this] {
                       absl::MutexLock lock(&mu);
                       return monitor.DeepCheck();
                     }});
    jobs =
        std::make_unique<JobScheduler>(clock, store, std::move(specs), MakeLogger("jobs", "warn"));
    MonitorRuntime rt{&store,
                      &mu,
                      &monitor,
                      jobs.get(),
                      [this] { return leader; },
                      [] { return std::string("monitor-a"); },
                      "monitor-a"};
    service = std::make_unique<MonitorServiceImpl>(rt, keys);
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
    stub = v1::MonitorService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                           grpc::InsecureChannelCredentials()));
  }
  ~Api() { server->Shutdown(std::chrono::system_clock::now()); }

  template <class Req, class Resp>
  grpc::StatusCode Call(grpc::Status (v1::MonitorService::Stub::*method)(grpc::ClientContext*,
                                                                         const Req&, Resp*),
                        const Req& req, Resp* resp, const char* key = kAdmin) {
    grpc::ClientContext ctx;
    if (key) ctx.AddMetadata("x-api-key", key);
    return (stub.get()->*method)(&ctx, req, resp).error_code();
  }
};

using S = v1::MonitorService::Stub;

TEST(MonitorService, ReadsAnswerFromTheStore) {
  Api api;
  v1::TriggerJobRequest deep;
  deep.set_name("health-check-deep");
  v1::TriggerJobResponse ran;
  ASSERT_EQ(api.Call(&S::TriggerJob, deep, &ran, kOperator), grpc::StatusCode::OK);
  EXPECT_EQ(ran.result().total(), 1);
  EXPECT_EQ(ran.result().healthy(), 1);

  v1::GetSessionHealthRequest get;
  get.set_session_id(kId);
  v1::GetSessionHealthResponse got;
  ASSERT_EQ(api.Call(&S::GetSessionHealth, get, &got, kReader), grpc::StatusCode::OK);
  EXPECT_EQ(got.health().level(), v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_EQ(got.health().score(), 100);
  EXPECT_EQ(got.health().phone_number_masked(), "155******67");
  get.set_session_id("6f1c1f1e-0000-4000-8000-000000000099");
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kReader), grpc::StatusCode::NOT_FOUND);
  get.set_session_id("not-a-uuid");
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kReader), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, nullptr), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, "wrong-key-0123456789"),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::ListSessionHealthRequest list;
  list.add_levels(v1::HEALTH_LEVEL_HEALTHY);
  v1::ListSessionHealthResponse listed;
  ASSERT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader), grpc::StatusCode::OK);
  EXPECT_EQ(listed.sessions_size(), 1);
  list.set_page_size(501);
  EXPECT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_size(0);
  list.add_levels(static_cast<v1::HealthLevel>(42));
  EXPECT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);

  list.clear_levels();
  list.set_query("+1 555 1234");  // the number, as typed
  list.add_states(sv1::SESSION_STATE_CONNECTED);
  ASSERT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader), grpc::StatusCode::OK);
  EXPECT_EQ(listed.sessions_size(), 1);
  list.set_query("nobody");
  ASSERT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader), grpc::StatusCode::OK);
  EXPECT_EQ(listed.sessions_size(), 0);
  list.set_query(std::string(101, 'x'));
  EXPECT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_query("");
  list.add_states(static_cast<sv1::SessionState>(99));
  EXPECT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetHealthStatsResponse stats;
  ASSERT_EQ(api.Call(&S::GetHealthStats, v1::GetHealthStatsRequest(), &stats, kReader),
            grpc::StatusCode::OK);
  EXPECT_EQ(stats.total(), 1);
  EXPECT_EQ(stats.healthy(), 1);

  // The fleet by hour over the last day: the session is healthy at the end of each hour since
  // the deep check saw it.
  v1::GetHealthHistoryRequest fleet;
  *fleet.mutable_since() = ToProto(api.clock.Now() - absl::Hours(24));
  *fleet.mutable_until() = ToProto(api.clock.Now() + absl::Minutes(1));
  *fleet.mutable_bucket() = ToProto(absl::Hours(1));
  v1::GetHealthHistoryResponse by_hour;
  ASSERT_EQ(api.Call(&S::GetHealthHistory, fleet, &by_hour, kReader), grpc::StatusCode::OK);
  ASSERT_EQ(by_hour.buckets_size(), 25);
  EXPECT_EQ(by_hour.buckets(24).healthy(), 1);
  EXPECT_EQ(by_hour.buckets(0).healthy(), 0);
  *fleet.mutable_bucket() = ToProto(absl::Seconds(30));
  EXPECT_EQ(api.Call(&S::GetHealthHistory, fleet, &by_hour, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  *fleet.mutable_bucket() = ToProto(absl::Minutes(1));  // 1 441 buckets
  EXPECT_EQ(api.Call(&S::GetHealthHistory, fleet, &by_hour, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  *fleet.mutable_until() = fleet.since();
  *fleet.mutable_bucket() = ToProto(absl::Hours(1));
  EXPECT_EQ(api.Call(&S::GetHealthHistory, fleet, &by_hour, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::ListTransitionsRequest history;
  history.set_session_id(kId);
  *history.mutable_since() = ToProto(api.clock.Now() - absl::Hours(1));
  *history.mutable_until() = ToProto(api.clock.Now() + absl::Minutes(1));
  v1::ListTransitionsResponse transitions;
  ASSERT_EQ(api.Call(&S::ListTransitions, history, &transitions, kReader), grpc::StatusCode::OK);
  EXPECT_EQ(transitions.transitions_size(), 1);
  EXPECT_NEAR(transitions.uptime_percent(), 100.0, 1e-9);
  *history.mutable_since() = history.until();
  EXPECT_EQ(api.Call(&S::ListTransitions, history, &transitions, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetMonitorStatusResponse status;
  ASSERT_EQ(api.Call(&S::GetMonitorStatus, v1::GetMonitorStatusRequest(), &status, kReader),
            grpc::StatusCode::OK);
  EXPECT_TRUE(status.leader());
  EXPECT_EQ(status.status(), v1::MONITOR_STATUS_OK);
}

TEST(MonitorService, JobsAndAcknowledgementNeedTheLeaderAndTheScope) {
  Api api;
  v1::PauseJobRequest pause;
  pause.set_name("health-check-deep");
  v1::PauseJobResponse paused;
  EXPECT_EQ(api.Call(&S::PauseJob, pause, &paused, kOperator), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_EQ(api.Call(&S::PauseJob, pause, &paused, kAdmin), grpc::StatusCode::OK);
  EXPECT_TRUE(paused.job().paused());
  v1::TriggerJobRequest trigger;
  trigger.set_name("health-check-deep");
  v1::TriggerJobResponse ran;
  EXPECT_EQ(api.Call(&S::TriggerJob, trigger, &ran, kOperator),
            grpc::StatusCode::FAILED_PRECONDITION);
  trigger.set_name("no-such-job");
  EXPECT_EQ(api.Call(&S::TriggerJob, trigger, &ran, kOperator), grpc::StatusCode::NOT_FOUND);
  v1::ResumeJobRequest resume;
  resume.set_name("health-check-deep");
  v1::ResumeJobResponse resumed;
  ASSERT_EQ(api.Call(&S::ResumeJob, resume, &resumed, kAdmin), grpc::StatusCode::OK);
  v1::ListJobsResponse listed;
  ASSERT_EQ(api.Call(&S::ListJobs, v1::ListJobsRequest(), &listed, kReader), grpc::StatusCode::OK);
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_FALSE(listed.jobs(0).paused());
  EXPECT_TRUE(listed.jobs(0).has_next_run_at());

  v1::AcknowledgeSessionRequest ack;
  ack.set_session_id(kId);
  v1::AcknowledgeSessionResponse acked;
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kOperator), grpc::StatusCode::NOT_FOUND)
      << "never seen yet";
  trigger.set_name("health-check-deep");
  ASSERT_EQ(api.Call(&S::TriggerJob, trigger, &ran, kOperator), grpc::StatusCode::OK);
  ASSERT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kOperator), grpc::StatusCode::OK);
  EXPECT_FALSE(acked.health().manual_intervention_required());
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kReader),
            grpc::StatusCode::PERMISSION_DENIED);

  // A standby answers reads, and sends what acts to the leader.
  api.leader = false;
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", kOperator);
  grpc::Status st = api.stub->TriggerJob(&ctx, trigger, &ran);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("monitor-a"), std::string::npos) << st.error_message();
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kOperator),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(api.Call(&S::ListJobs, v1::ListJobsRequest(), &listed, kReader), grpc::StatusCode::OK);
}

TEST(MonitorService, TenantKeysSeeTheirOwnTenantOnly) {
  Api api;
  v1::TriggerJobRequest deep;
  deep.set_name("health-check-deep");
  v1::TriggerJobResponse ran;
  ASSERT_EQ(api.Call(&S::TriggerJob, deep, &ran, kOperator), grpc::StatusCode::OK);
  // The one session is acme's: acme's key sees it, globex's gets what a missing one gets.
  v1::GetSessionHealthRequest get;
  get.set_session_id(kId);
  v1::GetSessionHealthResponse got;
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kAcmeReader), grpc::StatusCode::OK);
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  get.set_session_id("6f1c1f1e-0000-4000-8000-000000000099");
  EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListSessionHealthResponse listed;
  ASSERT_EQ(api.Call(&S::ListSessionHealth, v1::ListSessionHealthRequest(), &listed, kAcmeReader),
            grpc::StatusCode::OK);
  EXPECT_EQ(listed.sessions_size(), 1);
  ASSERT_EQ(api.Call(&S::ListSessionHealth, v1::ListSessionHealthRequest(), &listed, kGlobexAdmin),
            grpc::StatusCode::OK);
  EXPECT_EQ(listed.sessions_size(), 0);
  v1::ListSessionHealthRequest other;
  other.set_tenant_id("acme");
  EXPECT_EQ(api.Call(&S::ListSessionHealth, other, &listed, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::GetHealthStatsResponse stats;
  v1::GetHealthStatsRequest acme_stats;
  acme_stats.set_tenant_id("acme");
  EXPECT_EQ(api.Call(&S::GetHealthStats, acme_stats, &stats, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::GetHealthHistoryRequest acme_history;
  acme_history.set_tenant_id("acme");
  v1::GetHealthHistoryResponse fleet;
  EXPECT_EQ(api.Call(&S::GetHealthHistory, acme_history, &fleet, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_EQ(api.Call(&S::GetHealthHistory, v1::GetHealthHistoryRequest(), &fleet, kGlobexAdmin),
            grpc::StatusCode::OK);
  EXPECT_EQ(fleet.buckets_size(), 7);
  EXPECT_EQ(fleet.buckets(6).healthy() + fleet.buckets(6).warning(), 0);  // acme's is not counted
  v1::ListTransitionsRequest history;
  history.set_session_id(kId);
  v1::ListTransitionsResponse transitions;
  EXPECT_EQ(api.Call(&S::ListTransitions, history, &transitions, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::AcknowledgeSessionRequest ack;
  ack.set_session_id(kId);
  v1::AcknowledgeSessionResponse acked;
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  // The monitor's jobs concern every tenant.
  v1::ListJobsResponse jobs;
  EXPECT_EQ(api.Call(&S::ListJobs, v1::ListJobsRequest(), &jobs, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(api.Call(&S::TriggerJob, deep, &ran, kGlobexAdmin),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST(MonitorService, BadInputIsRefusedWithAShortClearError) {
  Api api;
  const std::string huge(1 << 20, 'x');
  v1::GetSessionHealthRequest get;
  v1::GetSessionHealthResponse got;
  for (const std::string& id : {std::string(), huge, std::string("a\0b", 3), std::string("a b")}) {
    get.set_session_id(id);
    EXPECT_EQ(api.Call(&S::GetSessionHealth, get, &got, kReader),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  v1::ListSessionHealthRequest list;
  list.set_tenant_id("acme\r\n");
  v1::ListSessionHealthResponse listed;
  EXPECT_EQ(api.Call(&S::ListSessionHealth, list, &listed, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListTransitionsRequest history;
  history.set_session_id(kId);
  history.mutable_since()->set_seconds(-62135596801);
  v1::ListTransitionsResponse transitions;
  EXPECT_EQ(api.Call(&S::ListTransitions, history, &transitions, kReader),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::AcknowledgeSessionRequest ack;
  ack.set_session_id(kId);
  ack.set_note(huge);
  v1::AcknowledgeSessionResponse acked;
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kOperator),
            grpc::StatusCode::INVALID_ARGUMENT);
  ack.set_note("line one\x1b[2J");
  EXPECT_EQ(api.Call(&S::AcknowledgeSession, ack, &acked, kOperator),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::TriggerJobRequest job;
  job.set_name(huge);
  v1::TriggerJobResponse ran;
  EXPECT_EQ(api.Call(&S::TriggerJob, job, &ran, kOperator), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GetMonitorStatusResponse status;
  EXPECT_EQ(api.Call(&S::GetMonitorStatus, v1::GetMonitorStatusRequest(), &status, kReader),
            grpc::StatusCode::OK)
      << "still answering";
}

}  // namespace
}  // namespace wasentinel::monitor
