#include "recovery_limiter.h"

#include <algorithm>

namespace wasentinel::monitor {

void RecoveryLimiter::Trim(std::deque<absl::Time>& q, absl::Time now) const {
  while (!q.empty() && q.front() <= now - window_) q.pop_front();
}

int RecoveryLimiter::Count(const std::string& session, absl::Time now) {
  auto it = attempts_.find(session);
  if (it == attempts_.end()) return 0;
  Trim(it->second, now);
  const int n = static_cast<int>(
      std::count_if(it->second.begin(), it->second.end(), [&](absl::Time t) { return t <= now; }));
  if (it->second.empty()) attempts_.erase(it);
  return n;
}

void RecoveryLimiter::Record(const std::string& session, absl::Time at) {
  auto& q = attempts_[session];
  q.insert(std::upper_bound(q.begin(), q.end(), at), at);  // loaded attempts may come unsorted
}

absl::Time RecoveryLimiter::NextAllowed(const std::string& session, absl::Time now) {
  if (Count(session, now) < max_) return absl::InfinitePast();
  const auto& q = attempts_[session];
  return q[q.size() - static_cast<size_t>(max_)] + window_;
}

}  // namespace wasentinel::monitor
