#include "session_types.h"

namespace wasentinel::session {

void PairingFeed::Push(Update update) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(update));
}

std::optional<PairingFeed::Update> PairingFeed::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
  Update u = std::move(queue_.front());
  queue_.pop_front();
  return u;
}

}  // namespace wasentinel::session
