// The time source of code whose behaviour depends on time passing (health levels, recovery
// windows, job schedules): SystemClock in production, FakeClock (common/testing) in tests, so
// a test moves through six hours in milliseconds.
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace wasentinel {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

/// absl::Now().
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  /// The process-wide instance.
  static SystemClock& Get() {
    static SystemClock clock;
    return clock;
  }
};

}  // namespace wasentinel
