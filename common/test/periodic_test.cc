// PeriodicThread: a round at once, then one per interval; Stop() waits for a round under way
// and never for the pause.
#include "wasentinel/common/periodic.h"

#include <gtest/gtest.h>

#include <atomic>

namespace wasentinel {
namespace {

// Waits (bounded) until `done` holds.
template <class F>
bool Eventually(F done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(PeriodicThread, RunsAtOnceThenEveryInterval) {
  std::atomic<int> rounds{0};
  PeriodicThread t(absl::Milliseconds(5), [&] { ++rounds; });
  EXPECT_TRUE(Eventually([&] { return rounds >= 3; }));
  t.Stop();
  const int after = rounds;
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(rounds, after) << "no round after Stop()";
}

TEST(PeriodicThread, StopDoesNotWaitForThePause) {
  std::atomic<int> rounds{0};
  PeriodicThread t(absl::Hours(1), [&] { ++rounds; });
  ASSERT_TRUE(Eventually([&] { return rounds == 1; }));
  const absl::Time start = absl::Now();
  t.Stop();
  t.Stop();  // idempotent
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(rounds, 1);
}

TEST(PeriodicThread, StopWaitsForARoundUnderWay) {
  std::atomic<bool> started{false}, finished{false};
  PeriodicThread t(absl::Hours(1), [&] {
    started = true;
    absl::SleepFor(absl::Milliseconds(50));
    finished = true;
  });
  ASSERT_TRUE(Eventually([&] { return started.load(); }));
  t.Stop();
  EXPECT_TRUE(finished);
}

}  // namespace
}  // namespace wasentinel
