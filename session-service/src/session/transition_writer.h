// Writes state transitions to the store in the order they happened, off the connection thread.
// While the database is unreachable it keeps the queue and retries (every `retry_interval`), so
// no event is lost to an outage. Stored events reach watchers through the EventListener
// (PostgreSQL NOTIFY), the same way as the events of other replicas. A transition refused by
// fencing (another replica owns the session) is dropped and reported to `on_fenced`.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "store.h"

namespace spdlog {
class logger;
}

namespace wasentinel::session {

class TransitionWriter {
 public:
  TransitionWriter(TransitionStore& store, std::shared_ptr<spdlog::logger> log,
                   absl::Duration retry_interval = absl::Seconds(1));
  ~TransitionWriter();  // stops after what is queued is written or Stop's deadline passed

  void Post(Transition t);
  /// Called on the writer's thread with a transition that fencing refused. Set before Post.
  void set_on_fenced(std::function<void(const Transition&)> fn) { on_fenced_ = std::move(fn); }
  /// The highest sequence this writer stored (0: none yet).
  int64_t last_sequence() const;
  /// Waits until the queue is empty or `deadline`; false when events are still queued.
  bool Drain(absl::Time deadline);
  size_t queued() const;

 private:
  void Loop();

  TransitionStore& store_;
  std::function<void(const Transition&)> on_fenced_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Duration retry_interval_;
  mutable absl::Mutex mu_;
  std::deque<Transition> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace wasentinel::session
