// The message feed: follows session-service's WatchMessages and turns each message into a
// webhook event in the outbox (README "Message webhooks"), so messages go out through the same
// dispatchers as alerts — signed, retried, dead-lettered, filtered per endpoint.
//
// One replica follows at a time: it holds the feed in alert_feeds (a lease of `lease`, renewed
// every lease / 3 by a thread of its own and by every message). Each message is one transaction
// that moves the stored cursor from the last sequence to this one and writes the event's
// deliveries; the move is made only while the cursor is where this replica left it, so a replica
// that lost its hold (paused past its lease, then woke) writes nothing, and a crash between a
// message and its transaction resends it from the stored cursor: every event is enqueued once.
//
// Where it starts: from the stored cursor; the first start follows from the log's end (stored
// at once as the cursor: the retention is not replayed). OUT_OF_RANGE (the feed was down
// longer than session-service keeps messages, or the log is another database's) goes on from
// the resume point session-service names, logged as an error with the sequences lost. A message
// refused three times for a reason that will not pass is skipped, logged and counted.
//
// Events: a message received (text or not, and what did not decrypt) is "message.received"
// (the chat's notice that a contact's security code changed: "session.identity_changed");
// a message this service sent is "message.status" at SERVER_ACK, DELIVERED, READ and FAILED.
// The log gives each message once in its latest state when the feed catches up, so a feed that
// was behind sends the latest status only. Endpoints get only events of messages that arrived
// (or changed status) after they were created.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "outbox/pg_alert_store.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/clock.h"
#include "wasentinel/common/periodic.h"
#include "wasentinel/common/sealing.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace spdlog {
class logger;
}

namespace wasentinel::alert {

class AlertMetrics;

/// The event `m` is, sealed with `sealer` (nullopt: none — a message still PENDING).
std::optional<MessageEvent> MessageEventOf(const session::v1::Message& m, const Sealer& sealer);

/// The webhook "data" of `m` (JSON): sequence, session_id, tenant_id, message_id, chat, sender,
/// from_me, kind, text, status (lower case: "received", "server_ack", "delivered", "read",
/// "failed", "undecryptable"), failure, sent_at, stored_at, status_at (RFC 3339, UTC, ms),
/// client_message_id, and raw (the WhatsApp Message protobuf, base64) unless the kind is a
/// plain text ("text", "conversation").
std::string MessageEventData(const session::v1::Message& m);

struct MessageFeedOptions {
  std::string replica;  ///< this replica's name: the feed's holder
  std::string api_key;  ///< session-service key with messages:read (x-api-key)
  absl::Duration lease = absl::Seconds(30);
  /// How often a standby tries to take the feed.
  absl::Duration poll = absl::Seconds(5);
  /// Pauses before following again after the stream ended; the last repeats.
  std::vector<absl::Duration> pauses = {absl::Seconds(1), absl::Seconds(2), absl::Seconds(5)};
};

class MessageFeed {
 public:
  static constexpr char kFeed[] = "messages";

  /// `store`, `sealer`, `clock`: not owned, outlive the feed. `wake`: called after deliveries
  /// were written (the dispatchers look at once). `metrics`: optional, not owned.
  MessageFeed(PgAlertStore& store, std::shared_ptr<grpc::Channel> session_service,
              const Sealer& sealer, Clock& clock, MessageFeedOptions options,
              std::shared_ptr<spdlog::logger> log, std::function<void()> wake,
              AlertMetrics* metrics = nullptr);
  ~MessageFeed();

  /// Starts following (or standing by) and renewing.
  void Start();
  /// Ends the stream, joins the threads and lets the feed go (a standby takes it at its next
  /// poll).
  void Stop();
  bool following() const;

 private:
  // Renews this replica's hold while it follows; ends the stream when the hold was lost.
  void Renew();
  enum class Outcome {
    kFailed,  // the stream ended (or never opened) without carrying a message
    kEnded,   // it ended after carrying messages
    kLost,    // the hold was lost: another replica follows now
  };
  void Loop();
  // Follows from `after` (unset: never followed) until the stream ends.
  Outcome Follow(std::optional<int64_t> after);
  absl::StatusOr<int> Advance(std::optional<int64_t> from, int64_t to, const MessageEvent* event);
  bool Wait(absl::Duration d);  // true when stopping

  PgAlertStore& store_;
  std::unique_ptr<session::v1::SessionService::Stub> stub_;
  const Sealer& sealer_;
  Clock& clock_;
  const MessageFeedOptions options_;
  const Backoff pauses_;
  std::shared_ptr<spdlog::logger> log_;
  std::function<void()> wake_;
  AlertMetrics* metrics_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool following_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The message the last write failed at and how many times in a row (the Loop thread's).
  int64_t stuck_sequence_ = -1;
  int stuck_count_ = 0;
  std::thread thread_;
  std::unique_ptr<PeriodicThread> renewer_;  // Renew() every lease / 3
};

}  // namespace wasentinel::alert
