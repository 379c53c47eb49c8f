// The light check's rhythm (README "Architecture" › "Health"): normal, fast while session-service
// is young, backoff while it does not answer.
#include "health/rhythm.h"

#include <gtest/gtest.h>

namespace wasentinel::monitor {
namespace {

TEST(LightCheckRhythm, FastWhileYoungBackoffWhileUnreachable) {
  LightCheckRhythm r(absl::Seconds(30), absl::Seconds(5), absl::Seconds(60),
                     {absl::Seconds(5), absl::Seconds(10), absl::Seconds(30)});
  EXPECT_EQ(r.Next(true, absl::Seconds(12)), absl::Seconds(5)) << "young: restoring";
  EXPECT_EQ(r.Next(true, absl::Seconds(60)), absl::Seconds(30)) << "settled";
  // Down: 5, 10, 30, 30 s, each within ±20 %.
  for (double expected : {5.0, 10.0, 30.0, 30.0}) {
    const double got = absl::ToDoubleSeconds(r.Next(false, absl::ZeroDuration()));
    EXPECT_GE(got, expected * 0.8);
    EXPECT_LE(got, expected * 1.2);
  }
  // Back (and young again, after its restart), then the backoff starts over.
  EXPECT_EQ(r.Next(true, absl::Seconds(3)), absl::Seconds(5));
  EXPECT_LE(r.Next(false, absl::ZeroDuration()), absl::Seconds(6));
}

TEST(LightCheckRhythm, FastNeverSlowerThanTheNormalPeriod) {
  LightCheckRhythm r(absl::Seconds(2), absl::Seconds(5), absl::Seconds(60), {});
  EXPECT_EQ(r.Next(true, absl::Seconds(1)), absl::Seconds(2));
  EXPECT_EQ(r.Next(false, absl::ZeroDuration()), absl::Seconds(2));
}

}  // namespace
}  // namespace wasentinel::monitor
