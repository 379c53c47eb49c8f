#include "restore_pacer.h"

#include "absl/time/time.h"
#include "connection_thread.h"

namespace wasentinel::session {

RestorePacer::RestorePacer(boost::asio::io_context& io, double per_second, size_t max_in_flight,
                           std::function<bool(const std::string&, v1::StateReason)> connect,
                           std::function<bool(const std::string&)> connecting)
    : io_(io),
      per_second_(per_second),
      max_in_flight_(max_in_flight),
      connect_(std::move(connect)),
      connecting_(std::move(connecting)) {}

void RestorePacer::Queue(const std::vector<std::string>& ids, v1::StateReason reason,
                         std::weak_ptr<void> owner) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  owner_ = std::move(owner);
  for (const auto& id : ids) queue_.emplace_back(id, reason);
  if (!timer_) Next();
}

void RestorePacer::Stop() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  stopped_ = true;
  timer_.reset();
  queue_.clear();
  in_flight_.clear();
}

void RestorePacer::Wake() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  if (waiting_for_room_) Next();
}

void RestorePacer::Next() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  timer_.reset();
  waiting_for_room_ = false;
  while (!queue_.empty() && !stopped_) {
    if (max_in_flight_ > 0 && in_flight_.size() >= max_in_flight_) {
      absl::erase_if(in_flight_, [this](const std::string& id) { return !connecting_(id); });
      if (in_flight_.size() >= max_in_flight_) {
        // Wake() goes on as soon as an attempt ends; the timer is the backstop for an attempt
        // that ended without telling (a session deleted or its lease lost meanwhile).
        waiting_for_room_ = true;
        NextAfter(absl::Seconds(1));
        return;
      }
    }
    auto [id, reason] = std::move(queue_.front());
    queue_.pop_front();
    if (!connect_(id, reason)) continue;
    if (max_in_flight_ > 0) in_flight_.insert(id);
    if (per_second_ > 0 && !queue_.empty()) {
      std::uniform_real_distribution<double> jitter(0.5, 1.5);
      NextAfter(absl::Seconds(jitter(rng_) / per_second_));
      return;
    }
  }
  // in_flight_ is kept when the queue runs dry: attempts still under way count against the
  // bound when a later Queue (a takeover) starts more. It holds max_in_flight_ ids at most.
}

void RestorePacer::NextAfter(absl::Duration delay) {
  timer_ = std::make_unique<boost::asio::steady_timer>(io_, absl::ToChronoNanoseconds(delay));
  timer_->async_wait([this, owner = owner_](auto ec) {
    if (ec) return;
    if (auto keep = owner.lock()) Next();  // `keep`: the owner outlives this call
  });
}

}  // namespace wasentinel::session
