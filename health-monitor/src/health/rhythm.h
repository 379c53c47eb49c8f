// When the light check runs next (README "Architecture" › "Health"): every `light` normally; every
// `fast` while session-service is younger than `young` (it is restoring, and the monitor wants to
// see it settle); and while session-service does not answer, after the `unreachable` steps in turn
// (jittered ±20 %, the last repeating), so an outage is retried quickly at first and then
// without hammering. Thread-safe.
#pragma once

#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wasentinel/common/backoff.h"

namespace wasentinel::monitor {

class LightCheckRhythm {
 public:
  LightCheckRhythm(absl::Duration light, absl::Duration fast, absl::Duration young,
                   std::vector<absl::Duration> unreachable);

  /// The delay before the next light check, given what the last one saw: whether
  /// session-service answered and, if it did, its uptime.
  absl::Duration Next(bool reachable, absl::Duration uptime);

 private:
  const absl::Duration light_, fast_, young_;
  const Backoff unreachable_;  // repeats its last step
  absl::Mutex mu_;
  int retries_ ABSL_GUARDED_BY(mu_) = 0;  // light checks failed in a row
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::monitor
