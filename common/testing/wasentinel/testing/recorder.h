// Test helpers: a thread-safe recorder of events that a test waits on with a deadline (never
// a sleep), and status matchers (Debian's Abseil ships none).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wasentinel/testing/status_matchers.h"  // IsOk, StatusIs

namespace wasentinel::testing {

/// Collects values pushed from any thread; tests wait for a predicate over them.
template <class T>
class Recorder {
 public:
  void Push(T value) {
    {
      std::lock_guard lock(mu_);
      items_.push_back(std::move(value));
    }
    cv_.notify_all();
  }

  /// Waits until `pred(items)` holds, at most `timeout`. The assertion names what was seen.
  ::testing::AssertionResult WaitFor(const std::function<bool(const std::vector<T>&)>& pred,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, timeout, [&] { return pred(items_); })) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "condition not met within " << timeout.count()
                                         << " ms; " << items_.size() << " items recorded";
  }

  /// Waits until at least `n` items were recorded.
  ::testing::AssertionResult WaitForCount(
      size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return WaitFor([n](const std::vector<T>& v) { return v.size() >= n; }, timeout);
  }

  std::vector<T> Snapshot() const {
    std::lock_guard lock(mu_);
    return items_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> items_;
};

/// Polls `cond` (cheap, thread-safe) until it holds or `timeout` passes, yielding between
/// tries; for state that has no notification to wait on (another process's counters).
inline ::testing::AssertionResult Eventually(
    const std::function<bool()>& cond,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::mutex mu;
  std::condition_variable cv;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "condition not met within " << timeout.count() << " ms";
    }
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(5));  // a bounded wait between polls
  }
  return ::testing::AssertionSuccess();
}

}  // namespace wasentinel::testing
