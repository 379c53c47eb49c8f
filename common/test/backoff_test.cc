// The one retry schedule (common/include/wasentinel/common/backoff.h).
#include "wasentinel/common/backoff.h"

#include <gtest/gtest.h>

#include <random>

#include "wasentinel/testing/status_matchers.h"

namespace wasentinel {
namespace {

using ::wasentinel::testing::StatusIs;

TEST(Backoff, GivesUpAfterTheLastStep) {
  Backoff b({absl::Seconds(5), absl::Seconds(15), absl::Seconds(45)}, 0);
  std::mt19937_64 rng(1);
  EXPECT_EQ(b.Next(0, rng), absl::Seconds(5));
  EXPECT_EQ(b.Next(1, rng), absl::Seconds(15));
  EXPECT_EQ(b.Next(2, rng), absl::Seconds(45));
  EXPECT_EQ(b.Next(3, rng), std::nullopt);
  EXPECT_EQ(b.steps(), 3);
}

TEST(Backoff, RepeatsTheLastStepWhenAskedTo) {
  Backoff b({absl::Seconds(5), absl::Seconds(30)}, 0, Backoff::AfterLast::kRepeatLast);
  std::mt19937_64 rng(1);
  EXPECT_EQ(b.Next(0, rng), absl::Seconds(5));
  EXPECT_EQ(b.Next(1, rng), absl::Seconds(30));
  EXPECT_EQ(b.Next(1000, rng), absl::Seconds(30));
}

TEST(Backoff, JitterStaysWithinItsFractionAndVaries) {
  Backoff b({absl::Seconds(10)}, 0.2, Backoff::AfterLast::kRepeatLast);
  std::mt19937_64 rng(7);
  absl::Duration lo = absl::InfiniteDuration(), hi = absl::ZeroDuration();
  for (int i = 0; i < 200; ++i) {
    const absl::Duration d = *b.Next(i, rng);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, absl::Seconds(8));
  EXPECT_LE(hi, absl::Seconds(12));
  EXPECT_GT(hi - lo, absl::Seconds(2));  // it does vary
}

TEST(Backoff, NoStepsMeansNoRetry) {
  Backoff b({}, 0.2, Backoff::AfterLast::kRepeatLast);
  std::mt19937_64 rng(1);
  EXPECT_EQ(b.Next(0, rng), std::nullopt);
}

TEST(Backoff, ParsesStepsAndRefusesBadOnes) {
  auto steps = Backoff::ParseSteps("5s, 15s,1m");
  ASSERT_TRUE(steps.ok());
  EXPECT_EQ(*steps,
            (std::vector<absl::Duration>{absl::Seconds(5), absl::Seconds(15), absl::Minutes(1)}));
  EXPECT_THAT(Backoff::ParseSteps("5s,-1s"), StatusIs(absl::StatusCode::kInvalidArgument, "-1s"));
  EXPECT_THAT(Backoff::ParseSteps("soon"), StatusIs(absl::StatusCode::kInvalidArgument, "soon"));
}

}  // namespace
}  // namespace wasentinel
