// Writes state transitions to the store in the order they happened, off the connection thread,
// up to kMaxBatch of them in one transaction (a start-up restore makes two per session).
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

  /// Transitions written in one transaction at most.
  static constexpr size_t kMaxBatch = 256;

  void Post(Transition t);
  /// Called on the writer's thread with a transition that fencing refused. Set before Post.
  void set_on_fenced(std::function<void(const Transition&)> fn) { on_fenced_ = std::move(fn); }
  /// The highest sequence this writer stored (0: none yet).
  int64_t last_sequence() const;
  /// Waits until the queue is empty or `deadline`; false when events are still queued. A
  /// transition stays queued until it is written or finally refused.
  bool Drain(absl::Time deadline);
  size_t queued() const;

 private:
  void Loop();
  // Writes `batch` (the queue's oldest), retrying while the database is unreachable; false when
  // stopped meanwhile (what was queued is failed then).
  bool Write(absl::Span<const Transition> batch);
  void Settle(const Transition& t, const absl::StatusOr<EventRecord>& event);

  TransitionStore& store_;
  std::function<void(const Transition&)> on_fenced_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Duration retry_interval_;
  mutable absl::Mutex mu_;
  std::deque<Transition> queue_ ABSL_GUARDED_BY(mu_);
  int64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace wasentinel::session
