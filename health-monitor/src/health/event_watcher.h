// Follows session-service's WatchSessionEvents on a thread of its own, from the monitor's
// cursor (the last sequence it handled), and hands each event over as it arrives, so a drop is
// classified at once rather than at the next poll. When the stream ends (session-service
// restarting, the network) it resumes from the cursor after a pause: 5 s, 10 s, 30 s, then
// every 30 s (--watch_backoff), jittered. A cursor older than what session-service keeps
// (OUT_OF_RANGE) resumes from now: the next deep check covers the gap.
#pragma once

#include <grpcpp/channel.h>

#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace spdlog {
class logger;
}

namespace wasentinel::monitor {

class EventWatcher {
 public:
  struct Hooks {
    /// The sequence to resume after. 0 (nothing handled yet) starts from now: a monitor's first
    /// deep check covers the present, and replaying a month of history would only delay the
    /// first live event.
    std::function<int64_t()> cursor;
    /// Each event, in order (called on the watcher's thread).
    std::function<void(const session::v1::SessionEvent&)> on_event;
    /// The stream is open (true) or broken (false).
    std::function<void(bool)> on_stream;
  };

  EventWatcher(std::shared_ptr<grpc::Channel> channel, std::string api_key, Hooks hooks,
               std::shared_ptr<spdlog::logger> log,
               std::vector<absl::Duration> pauses = {absl::Seconds(5), absl::Seconds(10),
                                                     absl::Seconds(30)});
  ~EventWatcher();

  void Start();
  /// Ends the stream and joins the thread.
  void Stop();

 private:
  void Loop();

  std::unique_ptr<session::v1::SessionService::Stub> stub_;
  const std::string api_key_;
  Hooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff pauses_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace wasentinel::monitor
