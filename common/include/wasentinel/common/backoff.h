// The one retry schedule of the project: a list of steps (the wait before retry 1, 2, …), each
// jittered by ± a fraction, and what happens after the last step: give up, or repeat it.
//
// Users: session reconnects after a drop (give up: RETRIES_EXHAUSTED), the monitor's light check
// while session-service does not answer and its event watch (repeat the last), alert deliveries
// (give up: the dead letter). README "Configuration" lists each flag's steps.
#pragma once

#include <algorithm>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wasentinel {

class Backoff {
 public:
  enum class AfterLast {
    kGiveUp,      ///< Next() answers nullopt once every step was used
    kRepeatLast,  ///< the last step repeats for ever
  };

  /// `steps`: the waits before retry 1, 2, …; `jitter` in [0, 1): each wait is scaled by a
  /// uniform factor in [1 - jitter, 1 + jitter].
  Backoff(std::vector<absl::Duration> steps, double jitter,
          AfterLast after_last = AfterLast::kGiveUp)
      : steps_(std::move(steps)), jitter_(jitter), after_last_(after_last) {}

  /// Parses "5s,15s,45s" (absl durations). INVALID_ARGUMENT for a bad or negative entry.
  static absl::StatusOr<std::vector<absl::Duration>> ParseSteps(std::string_view text);

  /// The retries the schedule allows before it gives up (kGiveUp), or its number of steps.
  int steps() const { return static_cast<int>(steps_.size()); }

  /// The jittered wait before the next retry after `done` retries (0: before the first), or
  /// nullopt when the schedule gives up (kGiveUp past the last step, or no steps at all).
  template <class Rng>
  std::optional<absl::Duration> Next(int done, Rng& rng) const {
    const std::optional<absl::Duration> base = Step(done);
    if (!base) return std::nullopt;
    std::uniform_real_distribution<double> f(1.0 - jitter_, 1.0 + jitter_);
    return *base * f(rng);
  }

 private:
  // The step before the next retry after `done` retries, without jitter.
  std::optional<absl::Duration> Step(int done) const {
    if (steps_.empty() || done < 0) return std::nullopt;
    if (done >= steps()) {
      if (after_last_ == AfterLast::kGiveUp) return std::nullopt;
      done = steps() - 1;
    }
    return steps_[done];
  }

  std::vector<absl::Duration> steps_;
  double jitter_;
  AfterLast after_last_;
};

}  // namespace wasentinel
