#include "event_watcher.h"

#include <spdlog/spdlog.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::monitor {

namespace sv1 = wasentinel::session::v1;

EventWatcher::EventWatcher(std::shared_ptr<grpc::Channel> channel, std::string api_key, Hooks hooks,
                           std::shared_ptr<spdlog::logger> log, std::vector<absl::Duration> pauses)
    : stub_(sv1::SessionService::NewStub(std::move(channel))),
      api_key_(std::move(api_key)),
      hooks_(std::move(hooks)),
      log_(std::move(log)),
      pauses_(std::move(pauses), 0.2, Backoff::AfterLast::kRepeatLast) {}

EventWatcher::~EventWatcher() { Stop(); }

void EventWatcher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void EventWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (current_) current_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void EventWatcher::Loop() {
  std::mt19937 rng(std::random_device{}());
  int failures = 0;
  bool from_now = false;
  for (;;) {
    grpc::ClientContext ctx;
    if (!api_key_.empty()) ctx.AddMetadata("x-api-key", api_key_);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      current_ = &ctx;
    }
    sv1::WatchSessionEventsRequest req;
    const int64_t after = hooks_.cursor();
    if (!from_now && after > 0) req.set_after_sequence(after);
    auto reader = stub_->WatchSessionEvents(&ctx, req);
    const absl::Time opened_at = absl::Now();
    // session-service sends its headers once the watch is in place; none means it failed.
    reader->WaitForInitialMetadata();
    const bool opened = ctx.GetServerInitialMetadata().count("x-watch-replica") > 0;
    from_now = false;
    if (opened) {
      log_->info("watching session events after sequence {}{}", after,
                 failures > 0 ? absl::StrCat(" again, after ", failures, " failed attempts") : "");
      failures = 0;
      if (hooks_.on_stream) hooks_.on_stream(true);
    }
    sv1::SessionEvent e;
    while (reader->Read(&e)) hooks_.on_event(e);
    const grpc::Status st = reader->Finish();
    if (absl::Now() - opened_at > absl::Minutes(1)) failures = 0;  // it had been working
    {
      absl::MutexLock lock(&mu_);
      current_ = nullptr;
      if (stop_) return;
    }
    if (opened && hooks_.on_stream) hooks_.on_stream(false);
    if (st.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
      log_->warn("session events after {} were pruned: resuming from now", after);
      from_now = true;
      continue;
    }
    const absl::Duration pause = pauses_.Next(failures++, rng).value_or(absl::Seconds(1));
    // The first failure in a row is news; the rest are at debug until it works again.
    (failures == 1 ? log_->warn("session event stream ended ({}: {}); resuming in {}",
                                static_cast<int>(st.error_code()), st.error_message(), pause)
                   : log_->debug("session event stream still down ({}: {}); resuming in {}",
                                 static_cast<int>(st.error_code()), st.error_message(), pause));
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), pause)) return;
  }
}

}  // namespace wasentinel::monitor
