// A background round at a fixed interval, stoppable at once: the services' housekeeping
// (session-service's event pruning, alert-service's reminders and outbox gauges).
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace wasentinel {

class PeriodicThread {
 public:
  /// Runs `round` on a thread of its own at once, then `interval` after each round ends, until
  /// Stop(). A round is never cut short; Stop() waits for one under way, never for the pause.
  PeriodicThread(absl::Duration interval, std::function<void()> round);
  ~PeriodicThread() { Stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  /// Idempotent.
  void Stop();

 private:
  void Run(absl::Duration interval, const std::function<void()>& round);

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace wasentinel
