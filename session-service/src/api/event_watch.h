// One WatchSessionEvents stream as a gRPC callback reactor: no thread is held per watcher, and
// what a watcher may cost is bounded (README "gRPC API", WatchSessionEvents).
//
// The stream replays the stored events after `after_sequence` (when given) in batches read from
// the store, then follows the EventBus live. At most one message is in flight at a time; live
// events wait in the watcher's bounded queue (EventBus::Subscription) meanwhile. A watcher that
// does not read falls behind: once its queue overflows, the queue is dropped and the stream ends
// with RESOURCE_EXHAUSTED naming the last sequence it was sent, so that it resumes with
// after_sequence and loses nothing. Live events that overflow the queue while a replay is still
// reading the store are read from the store again instead (the replay catches up).
//
// Threads: the gRPC callback threads (start, write completions, cancellation) and the thread
// that publishes events (it only wakes the stream up; the store is read on write completions).
// Lifetime: the reactor owns itself until gRPC calls OnDone.
#pragma once

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "store.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

class EventWatch final : public grpc::ServerWriteReactor<v1::SessionEvent>,
                         public std::enable_shared_from_this<EventWatch> {
 public:
  /// Starts a watch of `filter` (subscribed before anything is read, so no event falls between
  /// the replay and the live part). `after`: replay the store's events after this sequence
  /// first. `buffer`: the live queue's bound, in events. `done` runs once, when gRPC is done
  /// with the call, told whether the watcher fell behind. `subscribed` (may be empty) runs once
  /// the subscription is in place, before the initial metadata (set on the call's context by
  /// the caller, there too) is sent.
  static grpc::ServerWriteReactor<v1::SessionEvent>* Start(
      SessionStore& store, EventBus& bus, SessionFilter filter, std::optional<int64_t> after,
      size_t buffer, std::function<void(bool fell_behind)> done,
      const std::function<void()>& subscribed = {});

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  EventWatch(SessionStore& store, EventBus& bus, SessionFilter filter, std::optional<int64_t> after,
             size_t buffer, std::function<void(bool fell_behind)> done);
  // A fresh subscription to the bus, its listener waking this stream.
  void SubscribeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the next write if none is in flight and there is something to send. `from_bus`:
  // woken by the publishing thread, which never reads the store.
  void Pump(bool from_bus);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESOURCE_EXHAUSTED, naming the sequence to resume after.
  void FinishBehindLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SessionStore& store_;
  EventBus& bus_;
  const SessionFilter filter_;
  const size_t buffer_;
  std::function<void(bool fell_behind)> done_callback_;

  absl::Mutex mu_;
  std::shared_ptr<EventWatch> self_ ABSL_GUARDED_BY(mu_);  // until OnDone
  std::shared_ptr<EventBus::Subscription> sub_ ABSL_GUARDED_BY(mu_);
  std::deque<EventRecord> backlog_ ABSL_GUARDED_BY(mu_);  // read from the store, to send
  bool replaying_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_ ABSL_GUARDED_BY(mu_) = 0;  // the last sequence sent (or replayed past)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool fell_behind_ ABSL_GUARDED_BY(mu_) = false;
  v1::SessionEvent current_ ABSL_GUARDED_BY(mu_);  // the message in flight
};

}  // namespace wasentinel::session
