#include "rhythm.h"

#include <algorithm>

#include "wasentinel/common/backoff.h"

namespace wasentinel::monitor {

LightCheckRhythm::LightCheckRhythm(absl::Duration light, absl::Duration fast, absl::Duration young,
                                   std::vector<absl::Duration> unreachable)
    : light_(light),
      fast_(std::min(fast, light)),
      young_(young),
      unreachable_(std::move(unreachable)),
      rng_(std::random_device{}()) {}

absl::Duration LightCheckRhythm::Next(bool reachable, absl::Duration uptime) {
  absl::MutexLock lock(&mu_);
  if (!reachable) {
    if (unreachable_.empty()) return fast_;
    retries_ = std::min<int>(retries_ + 1, static_cast<int>(unreachable_.size()));
    return Backoff(unreachable_, 0.2).Delay(retries_, rng_);
  }
  retries_ = 0;
  return uptime < young_ ? fast_ : light_;
}

}  // namespace wasentinel::monitor
