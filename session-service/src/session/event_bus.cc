#include "event_bus.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace wasentinel::session {

bool EventBus::Subscription::Matches(const EventRecord& e) const {
  if (!filter_.session_id.empty() && filter_.session_id != e.session_id) return false;
  if (!filter_.tenant_id.empty() && filter_.tenant_id != e.tenant_id) return false;
  return true;
}

void EventBus::Subscription::Push(const std::shared_ptr<const EventRecord>& e) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || overflowed_) return;
    if (queue_.size() >= capacity_) {
      overflowed_ = true;
      std::deque<std::shared_ptr<const EventRecord>>().swap(queue_);  // its memory goes now
    } else {
      queue_.push_back(e);
    }
  }
  Wake();
}

void EventBus::Subscription::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  Wake();
}

void EventBus::Subscription::Wake() {
  std::function<void()> wake;
  {
    absl::MutexLock lock(&mu_);
    wake = wake_;
  }
  if (wake) wake();
}

void EventBus::Subscription::SetListener(std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  wake_ = std::move(wake);
}

bool EventBus::Subscription::overflowed() {
  absl::MutexLock lock(&mu_);
  return overflowed_;
}

absl::StatusOr<std::optional<EventRecord>> EventBus::Subscription::TryNext() {
  absl::MutexLock lock(&mu_);
  if (overflowed_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the watcher fell more than ", capacity_, " events behind"));
  }
  if (!queue_.empty()) {
    std::optional<EventRecord> e(*queue_.front());
    queue_.pop_front();
    return e;
  }
  if (closed_) return absl::CancelledError("event stream closed: the service is shutting down");
  return std::optional<EventRecord>();
}

std::shared_ptr<EventBus::Subscription> EventBus::Subscribe(SessionFilter filter, size_t capacity) {
  std::shared_ptr<Subscription> sub(new Subscription(std::move(filter), capacity));
  absl::MutexLock lock(&mu_);
  if (closed_) {
    sub->Close();
    return sub;
  }
  subs_.push_back(sub);
  return sub;
}

void EventBus::Publish(const EventRecord& event) {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    absl::MutexLock lock(&mu_);
    subs_.erase(std::remove_if(subs_.begin(), subs_.end(),
                               [&](const std::weak_ptr<Subscription>& w) {
                                 auto s = w.lock();
                                 if (!s) return true;  // the watcher has gone
                                 live.push_back(std::move(s));
                                 return false;
                               }),
                subs_.end());
  }
  if (live.empty()) return;
  const auto shared = std::make_shared<const EventRecord>(event);
  for (auto& s : live) {
    if (s->Matches(event)) s->Push(shared);
  }
}

void EventBus::Close() {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& w : subs_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    subs_.clear();
  }
  for (auto& s : live) s->Close();
}

}  // namespace wasentinel::session
