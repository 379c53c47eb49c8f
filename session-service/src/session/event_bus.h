// Fan-out of stored session events to live watchers (WatchSessionEvents) in this process.
// Events are published after they are written, so each carries its database sequence.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "store.h"

namespace wasentinel::session {

class EventBus {
 public:
  /// One watcher's queue. Bounded: a watcher that falls `capacity` events behind is cut off
  /// (Next answers RESOURCE_EXHAUSTED) rather than holding memory without limit.
  class Subscription {
   public:
    /// The next event, nullopt after `timeout` without one; CANCELLED once the bus closed,
    /// RESOURCE_EXHAUSTED if the queue overflowed.
    absl::StatusOr<std::optional<EventRecord>> Next(absl::Duration timeout);

   private:
    friend class EventBus;
    explicit Subscription(SessionFilter filter, size_t capacity)
        : filter_(std::move(filter)), capacity_(capacity) {}
    bool Matches(const EventRecord& e) const;
    void Push(const EventRecord& e);
    void Close();

    const SessionFilter filter_;
    const size_t capacity_;
    absl::Mutex mu_;
    std::deque<EventRecord> queue_ ABSL_GUARDED_BY(mu_);
    bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
    bool closed_ ABSL_GUARDED_BY(mu_) = false;
  };

  std::shared_ptr<Subscription> Subscribe(SessionFilter filter, size_t capacity = 10000);
  void Publish(const EventRecord& event);
  /// Ends every subscription (shutdown); later subscriptions start closed.
  void Close();

 private:
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subs_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace wasentinel::session
