// The Monitor over the real wire: session-service in process (PostgreSQL, wa-sim, gRPC) through
// GrpcSessionSource, and alerts through GrpcAlertSink to a recording AlertService on loopback
// (alert-service itself is tested in alert-service/test). The session events are fed to the monitor
// as its event watcher will: a drop is recovered with a real Reconnect, a 440 raises an alert.
#include <gtest/gtest.h>

#include "health/event_watcher.h"
#include "health/grpc_clients.h"
#include "health/monitor.h"
#include "health/pg_health_store.h"
#include "session/stack.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::monitor {
namespace {

// alert-service's API, recording what it is told.
class RecordingAlertService final : public av1::AlertService::Service {
 public:
  grpc::Status RaiseAlert(grpc::ServerContext*, const av1::RaiseAlertRequest* req,
                          av1::RaiseAlertResponse* resp) override {
    absl::MutexLock lock(&mu_);
    raised_.push_back(*req);
    resp->mutable_alert()->set_dedup_key(req->dedup_key());
    resp->set_created(true);
    return grpc::Status::OK;
  }
  grpc::Status ResolveAlert(grpc::ServerContext*, const av1::ResolveAlertRequest* req,
                            av1::ResolveAlertResponse*) override {
    absl::MutexLock lock(&mu_);
    resolved_.push_back(req->dedup_key());
    return grpc::Status::OK;
  }
  std::vector<av1::RaiseAlertRequest> raised() {
    absl::MutexLock lock(&mu_);
    return raised_;
  }

 private:
  absl::Mutex mu_;
  std::vector<av1::RaiseAlertRequest> raised_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resolved_ ABSL_GUARDED_BY(mu_);
};

struct AlertServer {
  RecordingAlertService service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  AlertServer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
  }
  ~AlertServer() { server->Shutdown(std::chrono::system_clock::now()); }
};

TEST(MonitorOverGrpc, RecoversADropAndAlertsOnAConflict) {
  session::Stack s;
  session::Watcher w(*s.stub);
  AlertServer alerts;
  auto pool = PgPool::Create(s.db.url(), 2).value();
  auto log =
      MakeLogger("monitor", std::getenv("WAS_TEST_LOG") ? std::getenv("WAS_TEST_LOG") : "warn");
  ASSERT_THAT(ApplyMigrations(*pool, "health-monitor", PgHealthStore::Migrations(), *log), IsOk());
  PgHealthStore store(*pool);
  GrpcSessionSource source(s.channel, "");
  GrpcAlertSink sink(grpc::CreateChannel("127.0.0.1:" + std::to_string(alerts.port),
                                         grpc::InsecureChannelCredentials()),
                     "");
  Monitor monitor(SystemClock::Get(), store, source, sink, HealthPolicy{}, log);
  ASSERT_THAT(monitor.Load(), IsOk());

  const std::string id = s.Create("acme", s.sim.Device(15550009001)).value().id();
  ASSERT_TRUE(w.WaitFor(id, sv1::SESSION_STATE_CONNECTED));
  auto check = monitor.DeepCheck();
  EXPECT_TRUE(check.error().empty()) << check.error();
  EXPECT_EQ(check.total(), 1);
  EXPECT_EQ(check.healthy(), 1);
  ASSERT_EQ(monitor.Health(id)->level(), v1::HEALTH_LEVEL_HEALTHY);
  EXPECT_EQ(monitor.Health(id)->phone_number_masked(), "155******01");

  // Feeds the events seen since `from` to the monitor, as its watcher does.
  size_t fed = 0;
  auto feed = [&] {
    auto all = w.events.Snapshot();
    for (; fed < all.size(); ++fed) monitor.OnEvent(all[fed]);
    monitor.Settle();
  };
  feed();

  // A drop: classified at once, recovered (by session-service's own retry or the monitor's
  // Reconnect, whichever comes first), counted in the budget, healthy again.
  ASSERT_THAT(s.sim.control().Post("/connections/15550009001:5/drop", {{"mode", "rst"}}), IsOk());
  ASSERT_TRUE(w.WaitFor(id, sv1::SESSION_STATE_DISCONNECTED, sv1::STATE_REASON_SOCKET_CLOSED));
  {
    auto all = w.events.Snapshot();
    for (; fed < all.size(); ++fed) {
      monitor.OnEvent(all[fed]);
      if (all[fed].to_state() == sv1::SESSION_STATE_DISCONNECTED) break;
    }
    ++fed;
    EXPECT_EQ(monitor.Health(id)->level(), v1::HEALTH_LEVEL_WARNING) << "classified at once";
  }
  // Until the events settle on CONNECTED (a Reconnect may follow session-service's own retry).
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    feed();
    auto all = w.events.Snapshot();
    return all.back().to_state() == sv1::SESSION_STATE_CONNECTED &&
           monitor.Health(id)->level() == v1::HEALTH_LEVEL_HEALTHY;
  }));
  EXPECT_EQ(monitor.Health(id)->recovery_attempts_last_hour(), 1);
  EXPECT_TRUE(alerts.service.raised().empty());

  // A conflict (440): a person must act; one alert, no reconnect.
  ASSERT_THAT(s.sim.control().Post("/connections/15550009001:5/conflict"), IsOk());
  ASSERT_TRUE(w.WaitFor(id, sv1::SESSION_STATE_REPLACED));
  feed();
  EXPECT_EQ(monitor.Health(id)->level(), v1::HEALTH_LEVEL_CRITICAL);
  EXPECT_EQ(monitor.Health(id)->recovery_attempts_last_hour(), 1);
  auto raised = alerts.service.raised();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].event_type(), "session.manual_intervention");
  EXPECT_EQ(raised[0].dedup_key(), "session.manual_intervention/" + id);
  EXPECT_EQ(raised[0].session().phone_number_masked(), "155******01");
  EXPECT_EQ(raised[0].session().owner_email(), "ops@example.com");
  EXPECT_EQ(raised[0].session().state(), "REPLACED");
  monitor.DeepCheck();
  EXPECT_EQ(alerts.service.raised().size(), 1u);
}

TEST(EventWatcher, ResumesFromTheCursorAcrossASessionServiceRestart) {
  session::Stack s;
  // The stack's address stays while the App restarts on another port: a fixed port instead.
  const int port = s.app->grpc_port();
  s.Stop();
  s.Start(
      [&](session::Options& o) { o.runtime.grpc_listen = "127.0.0.1:" + std::to_string(port); });
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  absl::Mutex mu;
  std::vector<int64_t> seen;
  int64_t cursor = 0;
  int opened = 0;
  EventWatcher watcher(channel, "",
                       {[&] {
                          absl::MutexLock lock(&mu);
                          return cursor;
                        },
                        [&](const sv1::SessionEvent& e) {
                          absl::MutexLock lock(&mu);
                          seen.push_back(e.sequence());
                          cursor = e.sequence();
                        },
                        [&](bool open) {
                          absl::MutexLock lock(&mu);
                          opened += open;
                        }},
                       MakeLogger("watcher", "warn"),
                       {absl::Milliseconds(50), absl::Milliseconds(100)});
  watcher.Start();
  // With no cursor yet the watch starts from now: in place before the first event.
  ASSERT_TRUE(wasentinel::testing::Eventually([&] {
    absl::MutexLock lock(&mu);
    return opened >= 1;
  }));
  const std::string id = s.Create("acme", s.sim.Device(15550009002)).value().id();
  auto count_at_least = [&](size_t n) {
    return wasentinel::testing::Eventually([&] {
      absl::MutexLock lock(&mu);
      return seen.size() >= n;
    });
  };
  ASSERT_TRUE(count_at_least(3));  // CREATED, CONNECTING, CONNECTED
  s.Stop();                        // SHUTDOWN is written before the stream ends
  s.Start(
      [&](session::Options& o) { o.runtime.grpc_listen = "127.0.0.1:" + std::to_string(port); });
  session::Watcher all(*s.stub);  // every event the service keeps, from the start
  // SHUTDOWN, then the restore: CONNECTING (STARTUP_RESTORE) and CONNECTED.
  ASSERT_TRUE(all.events.WaitFor([&](const std::vector<sv1::SessionEvent>& v) {
    return v.size() >= 6 && v.back().to_state() == sv1::SESSION_STATE_CONNECTED;
  }));
  const size_t total = all.events.Snapshot().size();
  ASSERT_TRUE(count_at_least(total));
  watcher.Stop();
  absl::MutexLock lock(&mu);
  std::vector<int64_t> expected;
  for (const auto& e : all.events.Snapshot()) expected.push_back(e.sequence());
  EXPECT_EQ(seen, expected) << "every event once, in order, across the restart";
  EXPECT_GE(opened, 2);
}

}  // namespace
}  // namespace wasentinel::monitor
