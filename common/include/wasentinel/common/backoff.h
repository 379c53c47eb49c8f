// Retry delays: a fixed schedule of steps, each jittered by ± a fraction.
#pragma once

#include <random>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wasentinel {

class Backoff {
 public:
  /// `steps`: the delay before retry 1, 2, …; `jitter` in [0, 1): each delay is scaled by a
  /// uniform factor in [1 - jitter, 1 + jitter].
  Backoff(std::vector<absl::Duration> steps, double jitter)
      : steps_(std::move(steps)), jitter_(jitter) {}

  /// Parses "5s,15s,45s" (absl durations). INVALID_ARGUMENT for a bad or negative entry.
  static absl::StatusOr<std::vector<absl::Duration>> ParseSteps(std::string_view text);

  /// The number of retries the schedule allows.
  int max_attempts() const { return static_cast<int>(steps_.size()); }

  /// The jittered delay before retry `attempt` (1-based, ≤ max_attempts()).
  template <class Rng>
  absl::Duration Delay(int attempt, Rng& rng) const {
    const absl::Duration base = steps_.at(attempt - 1);
    std::uniform_real_distribution<double> f(1.0 - jitter_, 1.0 + jitter_);
    return base * f(rng);
  }

 private:
  std::vector<absl::Duration> steps_;
  double jitter_;
};

}  // namespace wasentinel
