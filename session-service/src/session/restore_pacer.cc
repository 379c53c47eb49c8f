#include "restore_pacer.h"

#include "absl/time/time.h"
#include "connection_thread.h"

namespace wasentinel::session {

RestorePacer::RestorePacer(boost::asio::io_context& io, double per_second,
                           std::function<bool(const std::string&, v1::StateReason)> connect)
    : io_(io), per_second_(per_second), connect_(std::move(connect)) {}

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
}

void RestorePacer::Next() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  timer_.reset();
  while (!queue_.empty() && !stopped_) {
    auto [id, reason] = std::move(queue_.front());
    queue_.pop_front();
    if (!connect_(id, reason)) continue;
    if (per_second_ > 0 && !queue_.empty()) {
      std::uniform_real_distribution<double> jitter(0.5, 1.5);
      const absl::Duration gap = absl::Seconds(jitter(rng_) / per_second_);
      timer_ = std::make_unique<boost::asio::steady_timer>(io_, absl::ToChronoNanoseconds(gap));
      timer_->async_wait([this, owner = owner_](auto ec) {
        if (ec) return;
        if (auto keep = owner.lock()) Next();  // `keep`: the owner outlives this call
      });
      return;
    }
  }
}

}  // namespace wasentinel::session
