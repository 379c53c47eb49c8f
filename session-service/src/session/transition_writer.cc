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
  return queue_.size();
}

bool TransitionWriter::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
}

void TransitionWriter::Loop() {
  std::vector<Transition> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stop_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping
      // The oldest transitions, left queued until each is settled (so Drain and a stop while
      // the database is unreachable see them).
      const size_t n = std::min(queue_.size(), kMaxBatch);
      batch.assign(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    }
    if (!Write(batch)) return;
  }
}

namespace {

// The database did not answer: the same write may succeed later.
bool Retryable(const absl::Status& st) {
  return st.code() == absl::StatusCode::kUnavailable ||
         st.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

bool TransitionWriter::Write(absl::Span<const Transition> batch) {
  for (;;) {
    auto answers = store_.RecordTransitions(batch);
    absl::Status retry = answers.status();
    if (answers.ok()) {
      // Settled in order up to the first that the database did not answer (a store writing one
      // at a time answers each on its own): that one and those after it are written again.
      size_t i = 0;
      for (; i < batch.size() && !Retryable((*answers)[i].status()); ++i) {
        Settle(batch[i], (*answers)[i]);
      }
      if (i == batch.size()) return true;
      retry = (*answers)[i].status();
      batch = batch.subspan(i);
    } else if (!Retryable(retry)) {
      if (batch.size() == 1) {
        Settle(batch[0], retry);
        return true;
      }
      // One statement failed and took the batch's transaction with it: each on its own now,
      // so that only the transition at fault is dropped.
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!Write(batch.subspan(i, 1))) return false;
      }
      return true;
    }
    log_->warn(
        "database unavailable, will retry writing {} transitions (the first: session {} "
        "→ {}): {}",
        batch.size(), batch[0].session_id, StateName(batch[0].to), retry);
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), retry_interval_)) {
      log_->error("stopping with {} transitions unwritten", queue_.size());
      for (auto& q : queue_) {
        if (q.on_stored) q.on_stored(absl::UnavailableError("shut down before it was written"));
      }
      queue_.clear();
      return false;
    }
  }
}

// `t` (the oldest queued transition) is written, or finally refused: its callbacks, then out of
// the queue.
void TransitionWriter::Settle(const Transition& t, const absl::StatusOr<EventRecord>& event) {
  if (event.ok()) {
    log_->debug("stored event {}: session {} → {}", event->sequence, event->session_id,
                StateName(event->to));
  } else if (IsFenced(event.status())) {
    log_->warn("session {}: change to {} refused, another replica owns it now", t.session_id,
               StateName(t.to));
    if (on_fenced_) on_fenced_(t);
  } else if (event.status().code() == absl::StatusCode::kNotFound) {
    log_->debug("session {} was deleted; its change to {} is moot", t.session_id, StateName(t.to));
  } else {
    log_->error("dropping transition of session {} to {}: {}", t.session_id, StateName(t.to),
                event.status());
  }
  if (t.on_stored) t.on_stored(event);
  absl::MutexLock lock(&mu_);
  if (event.ok()) last_sequence_ = std::max(last_sequence_, event->sequence);
  queue_.pop_front();
}

}  // namespace wasentinel::session
