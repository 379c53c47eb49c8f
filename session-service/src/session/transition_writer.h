// Writes state transitions to the store in the order they happened, off the connection thread,
// and publishes each stored event to the EventBus. While the database is unreachable it keeps
// the queue and retries (every `retry_interval`), so no event is lost to an outage.
#pragma once

#include <deque>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "store.h"

namespace spdlog {
class logger;
}

namespace wasentinel::session {

class TransitionWriter {
 public:
  TransitionWriter(SessionStore& store, EventBus& bus, std::shared_ptr<spdlog::logger> log,
                   absl::Duration retry_interval = absl::Seconds(1));
  ~TransitionWriter();  // stops after what is queued is written or Stop's deadline passed

  void Post(Transition t);
  /// Publishes an event that was stored elsewhere (the CREATED event of a new session).
  void PublishStored(const EventRecord& event) { bus_.Publish(event); }
  /// Waits until the queue is empty or `deadline`; false when events are still queued.
  bool Drain(absl::Time deadline);
  size_t queued() const;

 private:
  void Loop();

  SessionStore& store_;
  EventBus& bus_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Duration retry_interval_;
  mutable absl::Mutex mu_;
  std::deque<Transition> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace wasentinel::session
