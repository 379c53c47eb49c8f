#include "rhythm.h"

#include <algorithm>

namespace wasentinel::monitor {

LightCheckRhythm::LightCheckRhythm(absl::Duration light, absl::Duration fast, absl::Duration young,
                                   std::vector<absl::Duration> unreachable)
    : light_(light),
      fast_(std::min(fast, light)),
      young_(young),
      unreachable_(std::move(unreachable), 0.2, Backoff::AfterLast::kRepeatLast),
      rng_(std::random_device{}()) {}

absl::Duration LightCheckRhythm::Next(bool reachable, absl::Duration uptime) {
  absl::MutexLock lock(&mu_);
  if (!reachable) {
    auto wait = unreachable_.Next(retries_, rng_);
    if (!wait) return fast_;  // no steps
    retries_ = std::min(retries_ + 1, unreachable_.steps());
    return *wait;
  }
  retries_ = 0;
  return uptime < young_ ? fast_ : light_;
}

}  // namespace wasentinel::monitor
