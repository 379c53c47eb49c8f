#include "transition_writer.h"

#include "pg_store.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::session {

TransitionWriter::TransitionWriter(TransitionStore& store, std::shared_ptr<spdlog::logger> log,
                                   absl::Duration retry_interval)
    : store_(store),
      log_(std::move(log)),
      retry_interval_(retry_interval),
      thread_([this] { Loop(); }) {}

TransitionWriter::~TransitionWriter() {
  Drain(absl::Now() + absl::Seconds(5));
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void TransitionWriter::Post(Transition t) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(t));
}

int64_t TransitionWriter::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

size_t TransitionWriter::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size() + (writing_ ? 1 : 0);
}

bool TransitionWriter::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !writing_; };
  return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
}

void TransitionWriter::Loop() {
  for (;;) {
    Transition t;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stop_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping
      t = queue_.front();
      writing_ = true;
    }
    for (;;) {
      auto event = store_.RecordTransition(t);
      if (event.ok()) {
        log_->debug("stored event {}: session {} → {}", event->sequence, event->session_id,
                    StateName(event->to));
        {
          absl::MutexLock lock(&mu_);
          last_sequence_ = std::max(last_sequence_, event->sequence);
        }
        if (t.on_stored) t.on_stored(event);
        break;
      }
      if (event.status().code() != absl::StatusCode::kUnavailable &&
          event.status().code() != absl::StatusCode::kDeadlineExceeded) {
        if (IsFenced(event.status())) {
          log_->warn("session {}: change to {} refused, another replica owns it now", t.session_id,
                     StateName(t.to));
          if (on_fenced_) on_fenced_(t);
        } else if (event.status().code() == absl::StatusCode::kNotFound) {
          log_->debug("session {} was deleted; its change to {} is moot", t.session_id,
                      StateName(t.to));
        } else {
          log_->error("dropping transition of session {} to {}: {}", t.session_id, StateName(t.to),
                      event.status());
        }
        if (t.on_stored) t.on_stored(event);
        break;
      }
      log_->warn("database unavailable, will retry writing session {} → {}: {}", t.session_id,
                 StateName(t.to), event.status());
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), retry_interval_)) {
        log_->error("stopping with {} transitions unwritten", queue_.size());
        for (auto& q : queue_) {
          if (q.on_stored) q.on_stored(absl::UnavailableError("shut down before it was written"));
        }
        queue_.clear();
        writing_ = false;
        return;
      }
    }
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
  }
}

}  // namespace wasentinel::session
