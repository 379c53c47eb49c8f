#include "event_watch.h"

#include "absl/strings/str_cat.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::session {
namespace {

// Stored events read per round of a replay.
constexpr int kReplayBatch = 500;

v1::SessionEvent ToProto(const EventRecord& e) {
  v1::SessionEvent ev;
  ev.set_sequence(e.sequence);
  ev.set_session_id(e.session_id);
  ev.set_tenant_id(e.tenant_id);
  ev.set_from_state(e.from);
  ev.set_to_state(e.to);
  ev.set_reason(e.reason);
  ev.set_error(e.error);
  *ev.mutable_at() = ::wasentinel::ToProto(e.at);
  return ev;
}

}  // namespace

grpc::ServerWriteReactor<v1::SessionEvent>* EventWatch::Start(
    SessionStore& store, EventBus& bus, SessionFilter filter, std::optional<int64_t> after,
    size_t buffer, std::function<void(bool fell_behind)> done,
    const std::function<void()>& subscribed) {
  std::shared_ptr<EventWatch> watch(
      new EventWatch(store, bus, std::move(filter), after, buffer, std::move(done)));
  {
    absl::MutexLock lock(&watch->mu_);
    watch->self_ = watch;
    watch->SubscribeLocked();
  }
  if (subscribed) subscribed();
  watch->StartSendInitialMetadata();
  watch->Pump(/*from_bus=*/false);
  return watch.get();
}

EventWatch::EventWatch(SessionStore& store, EventBus& bus, SessionFilter filter,
                       std::optional<int64_t> after, size_t buffer,
                       std::function<void(bool fell_behind)> done)
    : store_(store),
      bus_(bus),
      filter_(std::move(filter)),
      buffer_(buffer),
      done_callback_(std::move(done)) {
  // Without after_sequence the watch starts at the subscription: every event the bus hands
  // over from then on is new, even one committed just before.
  replaying_ = after.has_value();
  last_ = after.value_or(0);
}

void EventWatch::SubscribeLocked() {
  if (sub_) sub_->SetListener(nullptr);
  sub_ = bus_.Subscribe(filter_, buffer_);
  sub_->SetListener([weak = weak_from_this()] {
    if (auto watch = weak.lock()) watch->Pump(/*from_bus=*/true);
  });
}

void EventWatch::Pump(bool from_bus) {
  absl::MutexLock lock(&mu_);
  if (done_ || finished_) return;
  if (writing_) {
    // A write that does not complete while the queue overflows: the watcher does not read. It
    // is told now (after the message in flight), not when it reads again.
    if (!replaying_ && sub_->overflowed()) FinishBehindLocked();
    return;
  }
  if (from_bus && replaying_) return;  // the replay reads the store on write completions
  while (backlog_.empty()) {
    if (replaying_) {
      auto batch = store_.EventsAfter(last_, filter_, kReplayBatch);
      if (!batch.ok()) return FinishLocked(ToGrpc(batch.status()));
      for (auto& e : *batch) backlog_.push_back(std::move(e));
      if (static_cast<int>(batch->size()) < kReplayBatch) {
        replaying_ = false;
        // Live events dropped while the replay ran are in the store: subscribe afresh and read
        // the store once more past the last event sent.
        if (sub_->overflowed()) {
          SubscribeLocked();
          replaying_ = true;
          if (backlog_.empty()) continue;
        }
      }
      if (!backlog_.empty()) last_ = backlog_.back().sequence;
      continue;
    }
    auto next = sub_->TryNext();
    if (!next.ok()) {
      if (absl::IsResourceExhausted(next.status())) return FinishBehindLocked();
      return FinishLocked(ToGrpc(next.status()));
    }
    if (!next->has_value()) return;            // nothing now: the bus wakes the stream up
    if ((*next)->sequence <= last_) continue;  // already sent by the replay
    last_ = (*next)->sequence;
    backlog_.push_back(std::move(**next));
  }
  current_ = ToProto(backlog_.front());
  backlog_.pop_front();
  writing_ = true;
  StartWrite(&current_);
}

void EventWatch::FinishBehindLocked() {
  fell_behind_ = true;
  FinishLocked(grpc::Status(
      grpc::StatusCode::RESOURCE_EXHAUSTED,
      absl::StrCat(
          "the watcher fell more than ", buffer_,
          " events behind (it does not read fast enough); resume with after_sequence = ", last_)));
}

void EventWatch::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  backlog_.clear();
  if (sub_) sub_->SetListener(nullptr);
  sub_.reset();  // its queue's memory goes now
  Finish(status);
}

void EventWatch::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the watcher left"));
  }
  Pump(/*from_bus=*/false);
}

void EventWatch::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status::CANCELLED);
}

void EventWatch::OnDone() {
  std::shared_ptr<EventWatch> keep;
  bool fell_behind = false;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    fell_behind = fell_behind_;
    if (sub_) sub_->SetListener(nullptr);
    sub_.reset();
    keep = std::move(self_);
  }
  if (done_callback_) done_callback_(fell_behind);
}  // `keep` goes last: this reactor may be deleted here

}  // namespace wasentinel::session
