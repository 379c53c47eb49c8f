// Fan-out of session events across replicas: every replica LISTENs on PostgreSQL's
// `session_events` channel (a trigger NOTIFYs each new row's sequence at commit), reads the
// notified rows and publishes them to its own EventBus, so a watcher on any replica sees the
// events of every replica, in commit order (README "Architecture" › "More than one replica").
//
// The listener owns a connection of its own (a LISTEN needs one that stays open). When it
// breaks, it reconnects every `retry_interval` and catches up from the highest sequence it
// published; an event that committed out of sequence order during the gap can be missed by a
// live stream (a watcher that resumes with after_sequence reads it from the table).
// It also relays `session_leases` notifications (a replica gave leases up) to `on_leases`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "store.h"

namespace spdlog {
class logger;
}

namespace wasentinel::session {

class EventListener {
 public:
  EventListener(std::string database_url, SessionStore& store, EventBus& bus,
                std::shared_ptr<spdlog::logger> log,
                absl::Duration retry_interval = absl::Seconds(1));
  ~EventListener();  // stops the thread

  /// Starts listening; answers once the LISTEN is in place (UNAVAILABLE after `timeout`).
  absl::Status Start(absl::Duration timeout = absl::Seconds(10));
  /// Called on the listener's thread when another replica gives leases up.
  void set_on_leases(std::function<void()> fn) { on_leases_ = std::move(fn); }
  /// `session_messages` notifications (pg_message_store.h: a message stored, queued or changed
  /// status): `fn` gets the newest sequence and the sessions whose outbox gained a row (a
  /// message queued, a read receipt owed); after a reconnect also (sequence 0, no sessions) to
  /// say that some may have been missed. Set before Start.
  void set_on_messages(std::function<void(int64_t, const std::vector<std::string>&)> fn) {
    on_messages_ = std::move(fn);
  }
  /// Waits until every event up to `sequence` was published (false at `deadline`).
  bool WaitPublished(int64_t sequence, absl::Time deadline);

 private:
  void Loop();
  // Reads and publishes the notified sequences not published yet; throws when they cannot be
  // read (the loop reconnects and catches up).
  void Publish(std::vector<int64_t> sequences);

  const std::string url_;
  SessionStore& store_;
  EventBus& bus_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Duration retry_interval_;
  std::function<void()> on_leases_;
  std::function<void(int64_t, const std::vector<std::string>&)> on_messages_;
  absl::Mutex mu_;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t high_water_ ABSL_GUARDED_BY(mu_) = 0;  // highest sequence published
  std::thread thread_;
};

}  // namespace wasentinel::session
