// The job scheduler on a fake clock with a real PostgreSQL under it: due times, a rhythm that
// follows the monitor's state, pause/resume/trigger, and counters that survive a restart.
#include "health/jobs.h"

#include <gtest/gtest.h>

#include "monitor_db.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/fake_clock.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::monitor {
namespace {

TEST(NextDailyUtc, IsTheNextMidnight) {
  const absl::Time t =
      absl::FromCivil(absl::CivilSecond(2026, 11, 23, 13, 5, 0), absl::UTCTimeZone());
  EXPECT_EQ(NextDailyUtc(t, 0, 0),
            absl::FromCivil(absl::CivilSecond(2026, 11, 24, 0, 0, 0), absl::UTCTimeZone()));
  EXPECT_EQ(NextDailyUtc(t, 14, 0),
            absl::FromCivil(absl::CivilSecond(2026, 11, 23, 14, 0, 0), absl::UTCTimeZone()));
  const absl::Time midnight = absl::FromCivil(absl::CivilDay(2026, 11, 24), absl::UTCTimeZone());
  EXPECT_EQ(NextDailyUtc(midnight, 0, 0), midnight + absl::Hours(24));
}

struct Fixture : MonitorDb {
  wasentinel::testing::FakeClock clock;
  int light = 0, deep = 0;
  bool fast = false;  // the light check's rhythm: 5 s while session-service is young

  std::unique_ptr<JobScheduler> Scheduler() {
    std::vector<JobSpec> jobs;
    jobs.push_back(
        {"health-check-light", "every 30s",
         [this](absl::Time now) { return now + (fast ? absl::Seconds(5) : absl::Seconds(30)); },
         [this] {
           ++light;
           v1::JobResult r;
           r.set_total(2);
           r.set_healthy(2);
           return r;
         }});
    jobs.push_back({"health-check-deep", "every 5m",
                    [](absl::Time now) { return now + absl::Minutes(5); },
                    [this] {
                      ++deep;
                      v1::JobResult r;
                      r.set_error("session-service does not answer");
                      return r;
                    }});
    auto s =
        std::make_unique<JobScheduler>(clock, store, std::move(jobs), MakeLogger("jobs", "warn"));
    EXPECT_TRUE(s->Load().ok());
    return s;
  }
};

TEST(JobScheduler, RunsWhatIsDueAndFollowsTheRhythm) {
  Fixture f;
  auto jobs = f.Scheduler();
  EXPECT_EQ(jobs->NextDue(), f.clock.Now() + absl::Seconds(30));
  jobs->RunDue();
  EXPECT_EQ(f.light, 0);
  for (int i = 0; i < 10; ++i) {  // 5 minutes
    f.clock.Advance(absl::Seconds(30));
    jobs->RunDue();
  }
  EXPECT_EQ(f.light, 10);
  EXPECT_EQ(f.deep, 1);
  f.fast = true;  // session-service restarted: poll every 5 s
  f.clock.Advance(absl::Seconds(30));
  jobs->RunDue();
  EXPECT_EQ(jobs->NextDue(), f.clock.Now() + absl::Seconds(5));

  auto listed = jobs->List();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name(), "health-check-light");
  EXPECT_EQ(listed[0].runs(), 11);
  EXPECT_EQ(listed[0].last_result().healthy(), 2);
  EXPECT_EQ(listed[1].failures(), 1);
  EXPECT_EQ(listed[1].last_result().error(), "session-service does not answer");
}

TEST(JobScheduler, PauseResumeTriggerAndRestart) {
  Fixture f;
  auto jobs = f.Scheduler();
  EXPECT_EQ(jobs->Trigger("nope").status().code(), absl::StatusCode::kNotFound);
  auto r = jobs->Trigger("health-check-light");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->total(), 2);
  EXPECT_EQ(f.light, 1);
  ASSERT_TRUE(jobs->Pause("health-check-light").value().paused());
  EXPECT_EQ(jobs->Trigger("health-check-light").status().code(),
            absl::StatusCode::kFailedPrecondition);
  f.clock.Advance(absl::Minutes(10));
  jobs->RunDue();
  EXPECT_EQ(f.light, 1) << "paused";
  EXPECT_EQ(f.deep, 1);

  // A restart keeps the pause and the counts.
  jobs = f.Scheduler();
  auto listed = jobs->List();
  EXPECT_TRUE(listed[0].paused());
  EXPECT_EQ(listed[0].runs(), 1);
  EXPECT_FALSE(listed[0].has_next_run_at());
  EXPECT_EQ(jobs->NextDue(), f.clock.Now() + absl::Minutes(5));
  auto resumed = jobs->Resume("health-check-light").value();
  EXPECT_FALSE(resumed.paused());
  EXPECT_EQ(jobs->NextDue(), f.clock.Now() + absl::Seconds(30));
}

}  // namespace
}  // namespace wasentinel::monitor
