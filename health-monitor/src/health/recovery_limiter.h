// At most N recovery attempts per session in a sliding window (default 3 per hour). The
// attempts are stored by the monitor and loaded back at start-up, so a restart does not reset
// anyone's window. Not thread-safe: the monitor's check loop owns it.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace wasentinel::monitor {

class RecoveryLimiter {
 public:
  RecoveryLimiter(int max_attempts, absl::Duration window) : max_(max_attempts), window_(window) {}

  /// Attempts of `session` in (now − window, now].
  int Count(const std::string& session, absl::Time now);
  /// Another attempt fits in the window.
  bool Allows(const std::string& session, absl::Time now) { return Count(session, now) < max_; }
  /// Records an attempt made at `at`.
  void Record(const std::string& session, absl::Time at);
  /// Forgets the attempts of `session` (an operator acknowledged it: a fresh window).
  void Reset(const std::string& session) { attempts_.erase(session); }
  /// Forgets every session's attempts (before loading them back from the store).
  void Clear() { attempts_.clear(); }
  /// When the oldest attempt in the window leaves it (the next one is allowed then), or
  /// InfinitePast when one is allowed now.
  absl::Time NextAllowed(const std::string& session, absl::Time now);

  int max_attempts() const { return max_; }
  absl::Duration window() const { return window_; }

 private:
  void Trim(std::deque<absl::Time>& q, absl::Time now) const;

  const int max_;
  const absl::Duration window_;
  absl::flat_hash_map<std::string, std::deque<absl::Time>> attempts_;
};

}  // namespace wasentinel::monitor
