// Fan-out of stored session events to live watchers (WatchSessionEvents) in this process.
// Events are published after they are written, so each carries its database sequence.
#pragma once

#include <deque>
#include <functional>
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
  /// (TryNext answers RESOURCE_EXHAUSTED and the queue is dropped) rather than holding memory
  /// without limit.
  class Subscription {
   public:
    /// The next queued event without waiting; nullopt when none is queued. RESOURCE_EXHAUSTED
    /// once the queue overflowed, CANCELLED once the bus closed.
    absl::StatusOr<std::optional<EventRecord>> TryNext();
    /// Did the queue overflow (its events dropped)?
    bool overflowed();
    /// `wake` runs after each event is queued, on overflow and on close, on the publishing
    /// thread and without this subscription's lock held (it may call TryNext). Empty: nothing
    /// runs. A call already under way may still run once after SetListener({}) returns.
    void SetListener(std::function<void()> wake);

   private:
    friend class EventBus;
    explicit Subscription(SessionFilter filter, size_t capacity)
        : filter_(std::move(filter)), capacity_(capacity) {}
    bool Matches(const EventRecord& e) const;
    void Push(const std::shared_ptr<const EventRecord>& e);
    void Close();
    void Wake();

    const SessionFilter filter_;
    const size_t capacity_;
    absl::Mutex mu_;
    // One copy of each event is shared by every queue it waits in: a watcher that falls behind
    // costs a pointer per event, not the event.
    std::deque<std::shared_ptr<const EventRecord>> queue_ ABSL_GUARDED_BY(mu_);
    bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
    bool closed_ ABSL_GUARDED_BY(mu_) = false;
    std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
  };

  std::shared_ptr<Subscription> Subscribe(SessionFilter filter, size_t capacity = 1000);
  void Publish(const EventRecord& event);
  /// Ends every subscription (shutdown); later subscriptions start closed.
  void Close();

 private:
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subs_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace wasentinel::session
