#include "event_listener.h"

#include <pqxx/pqxx>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "pg_store.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/pg.h"

namespace wasentinel::session {
namespace {

// pg_store.cc migration 8: "<sequence> <session id>" per message stored or changed.
constexpr const char* kMessagesChannel = "session_messages";

// Collects the payloads of one channel until the loop takes them.
class Collector final : public pqxx::notification_receiver {
 public:
  Collector(pqxx::connection_base& c, const std::string& channel, std::vector<std::string>& into)
      : pqxx::notification_receiver(c, channel), into_(into) {}
  void operator()(const std::string& payload, int) override { into_.push_back(payload); }

 private:
  std::vector<std::string>& into_;
};

}  // namespace

EventListener::EventListener(std::string database_url, SessionStore& store, EventBus& bus,
                             std::shared_ptr<spdlog::logger> log, absl::Duration retry_interval)
    : url_(std::move(database_url)),
      store_(store),
      bus_(bus),
      log_(std::move(log)),
      retry_interval_(retry_interval) {}

EventListener::~EventListener() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status EventListener::Start(absl::Duration timeout) {
  auto latest = store_.LatestSequence();
  if (!latest.ok()) return latest.status();
  {
    absl::MutexLock lock(&mu_);
    high_water_ = *latest;
  }
  thread_ = std::thread([this] { Loop(); });
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return listening_; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::UnavailableError("could not LISTEN for session events on PostgreSQL");
  }
  return absl::OkStatus();
}

bool EventListener::WaitPublished(int64_t sequence, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return high_water_ >= sequence; };
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

void EventListener::Publish(std::vector<int64_t> sequences) {
  if (sequences.empty()) return;
  auto events = store_.EventsBySequence(sequences);
  if (!events.ok()) {
    // The LISTEN connection may be fine while the pool's is not: start over, so the catch-up
    // after the reconnect reads these events instead of leaving them to the next outage.
    throw std::runtime_error(absl::StrCat("reading ", sequences.size(),
                                          " notified session events: ", events.status().message()));
  }
  for (const auto& e : *events) bus_.Publish(e);
  absl::MutexLock lock(&mu_);
  for (int64_t s : sequences) high_water_ = std::max(high_water_, s);
}

void EventListener::Loop() {
  bool caught_up = true;  // nothing to catch up before the first LISTEN
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    try {
      pqxx::connection c(PgConnInfo(url_));
      std::vector<std::string> events, leases, messages;
      Collector on_events(c, PgSessionStore::kEventsChannel, events);
      Collector on_leases(c, PgSessionStore::kLeasesChannel, leases);
      Collector on_messages(c, kMessagesChannel, messages);
      c.get_notifs();  // the LISTENs are issued lazily on the first round trip
      if (!caught_up) {
        int64_t from;
        {
          absl::MutexLock lock(&mu_);
          from = high_water_;
        }
        for (;;) {
          auto batch = store_.EventsAfter(from, {}, 1000);
          if (!batch.ok()) throw pqxx::broken_connection(std::string(batch.status().message()));
          for (const auto& e : *batch) bus_.Publish(e);
          if (!batch->empty()) {
            from = batch->back().sequence;
            absl::MutexLock lock(&mu_);
            high_water_ = std::max(high_water_, from);
          }
          if (batch->size() < 1000) break;
        }
        log_->info("listening for session events again (caught up to {})", from);
        caught_up = true;
        if (on_messages_) on_messages_(0, {});
      }
      {
        absl::MutexLock lock(&mu_);
        listening_ = true;
      }
      for (;;) {
        {
          absl::MutexLock lock(&mu_);
          if (stop_) return;
        }
        c.await_notification(0, 200000);
        if (!events.empty()) {
          std::vector<int64_t> sequences;
          absl::flat_hash_set<int64_t> unique;
          for (const auto& p : events) {
            int64_t s = 0;
            if (absl::SimpleAtoi(p, &s) && unique.insert(s).second) sequences.push_back(s);
          }
          events.clear();
          Publish(std::move(sequences));
        }
        if (!leases.empty()) {
          leases.clear();
          if (on_leases_) on_leases_();
        }
        if (!messages.empty()) {
          int64_t newest = 0;
          absl::flat_hash_set<std::string> seen;
          std::vector<std::string> sessions;
          for (const auto& p : messages) {
            // "<sequence> <session>[ outbox]"
            std::vector<std::string> parts = absl::StrSplit(p, ' ');
            int64_t s = 0;
            if (parts.size() < 2 || !absl::SimpleAtoi(parts[0], &s)) continue;
            newest = std::max(newest, s);
            if (parts.size() > 2 && parts[2] == "outbox" && seen.insert(parts[1]).second) {
              sessions.push_back(parts[1]);
            }
          }
          messages.clear();
          if (on_messages_ && newest > 0) on_messages_(newest, sessions);
        }
      }
    } catch (const std::exception& e) {
      log_->warn("session event listener: {}; reconnecting in {}", e.what(), retry_interval_);
      caught_up = false;
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), retry_interval_)) return;
  }
}

}  // namespace wasentinel::session
