// Benchmark: the health-monitor's own cost over N sessions, with its real PostgreSQL store.
//
//   monitor_checks --database_url=URL [--sessions=5000] [--drops=1000]
//
// session-service is replaced by an in-memory table at the monitor's SessionSource seam, so
// the figures are the monitor's: the first deep check (every session new: assessed, saved,
// its first transition written), a steady deep check (nothing changed: assessed, nothing
// written), and drop → level change (OnEvent of a drop until the session is WARNING, with all
// N sessions under watch). session-service's GetDeepHealth and the event stream's hop are
// measured by bench/session_load.mjs. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "health/monitor.h"
#include "health/pg_health_store.h"
#include "nlohmann/json.hpp"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/process.h"
#include "wasentinel/common/proto_time.h"

ABSL_FLAG(std::string, database_url, "", "an empty database for the monitor's tables");
ABSL_FLAG(int, sessions, 5000, "sessions under watch");
ABSL_FLAG(int, drops, 1000, "drops to classify");

namespace wasentinel::monitor {
namespace {

using Clock = std::chrono::steady_clock;

class Table final : public SessionSource {
 public:
  absl::StatusOr<sv1::GetHealthResponse> Health() override { return sv1::GetHealthResponse(); }
  absl::StatusOr<sv1::GetDeepHealthResponse> DeepHealth() override { return deep; }
  absl::StatusOr<std::vector<sv1::Session>> BulkGet(const std::vector<std::string>&) override {
    return std::vector<sv1::Session>();
  }
  absl::StatusOr<sv1::Session> Get(const std::string&) override { return sv1::Session(); }
  absl::StatusOr<sv1::Session> Reconnect(const std::string&) override { return sv1::Session(); }
  absl::StatusOr<absl::Duration> Probe(const std::string&) override {
    return absl::Milliseconds(1);
  }
  sv1::GetDeepHealthResponse deep;
};

class NoAlerts final : public AlertSink {
 public:
  absl::Status Raise(const av1::RaiseAlertRequest&) override { return absl::OkStatus(); }
  absl::Status Resolve(const std::string&, const std::string&) override { return absl::OkStatus(); }
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int Run() {
  DisableMutexDeadlockDetection();
  const int n = absl::GetFlag(FLAGS_sessions);
  auto log = MakeLogger("bench", "error");
  auto pool = PgPool::Create(absl::GetFlag(FLAGS_database_url), 4);
  if (!pool.ok()) {
    std::cerr << pool.status() << "\n";
    return 1;
  }
  if (auto st = ApplyMigrations(**pool, "health-monitor", PgHealthStore::Migrations(), *log);
      !st.ok()) {
    std::cerr << st << "\n";
    return 1;
  }
  PgHealthStore store(**pool);
  Table table;
  const absl::Time now = absl::Now();
  for (int i = 0; i < n; ++i) {
    sv1::Session* s = table.deep.add_sessions();
    s->set_id(absl::StrFormat("6f1c1f1e-0000-4000-8000-%012d", i));
    s->set_tenant_id(absl::StrCat("tenant-", i % 50));
    s->set_phone_number(absl::StrCat(15550000000 + i));
    s->set_state(sv1::SESSION_STATE_CONNECTED);
    s->set_reason(sv1::STATE_REASON_LOGIN_SUCCESS);
    s->set_is_active(true);
    s->set_auto_connect(true);
    s->set_has_credentials(true);
    s->set_socket_alive(true);
    *s->mutable_last_connected_at() = ToProto(now);
    *s->mutable_updated_at() = ToProto(now);
    s->mutable_keepalive_rtt()->set_nanos(30'000'000);
  }
  NoAlerts alerts;
  Monitor monitor(SystemClock::Get(), store, table, alerts, HealthPolicy{}, log);
  if (auto st = monitor.Load(); !st.ok()) {
    std::cerr << st << "\n";
    return 1;
  }
  auto t0 = Clock::now();
  auto first = monitor.DeepCheck();
  const double first_s = Seconds(Clock::now() - t0);
  t0 = Clock::now();
  auto steady = monitor.DeepCheck();
  const double steady_s = Seconds(Clock::now() - t0);

  // Drops: each event until its session is WARNING (the Reconnect decision waits for Settle).
  const int drops = std::min(absl::GetFlag(FLAGS_drops), n);
  std::vector<double> us;
  for (int i = 0; i < drops; ++i) {
    sv1::SessionEvent e;
    e.set_sequence(i + 1);
    e.set_session_id(table.deep.sessions(i).id());
    e.set_from_state(sv1::SESSION_STATE_CONNECTED);
    e.set_to_state(sv1::SESSION_STATE_DISCONNECTED);
    e.set_reason(sv1::STATE_REASON_KEEPALIVE_TIMEOUT);
    *e.mutable_at() = ToProto(absl::Now());
    t0 = Clock::now();
    monitor.OnEvent(e);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (monitor.Health(e.session_id())->level() != v1::HEALTH_LEVEL_WARNING) {
      std::cerr << "drop " << i << " was not classified\n";
      return 1;
    }
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us.empty() ? 0.0 : us[static_cast<size_t>(p * (us.size() - 1))];
  };
  std::cout << nlohmann::json{{"benchmark", "monitor_checks"},
                              {"sessions", n},
                              {"first_deep_check_seconds", first_s},
                              {"steady_deep_check_seconds", steady_s},
                              {"healthy", steady.healthy()},
                              {"drops", drops},
                              {"drop_to_level_us_p50", pct(0.5)},
                              {"drop_to_level_us_p99", pct(0.99)}}
                   .dump()
            << std::endl;
  return first.total() == n ? 0 : 1;
}

}  // namespace
}  // namespace wasentinel::monitor

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return wasentinel::monitor::Run();
}
