#include "wasentinel/common/periodic.h"

namespace wasentinel {

PeriodicThread::PeriodicThread(absl::Duration interval, std::function<void()> round)
    : thread_([this, interval, round = std::move(round)] { Run(interval, round); }) {}

void PeriodicThread::Run(absl::Duration interval, const std::function<void()>& round) {
  for (;;) {
    round();
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), interval)) return;
  }
}

void PeriodicThread::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace wasentinel
