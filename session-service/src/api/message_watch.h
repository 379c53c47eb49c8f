// WatchMessages streams as gRPC callback reactors over the message log (pg_message_store.h):
// every message stored or changed gets a new sequence in commit order, so a stream is one
// cursor read forward in batches — the replay after `after_sequence` and the live part are the
// same reads, woken by the `session_messages` notifications (MessageFeed::Notify). A watcher
// that reads slowly costs no memory: the next batch is read only once the last one was
// written; it just falls behind in the table, never off it.
//
// Threads: gRPC's callback threads (start, write completions, cancellation), the listener's
// thread (Notify only wakes streams up), and the feed's reader thread, which does every read.
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/thread_pool.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "pg_message_store.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

class MessageWatch;

/// The API form of a stored message.
v1::Message ToProto(const StoredMessage& m);

/// What wakes the watches of one replica, and the thread they read on.
class MessageFeed {
 public:
  explicit MessageFeed(PgMessageStore& store) : store_(store) {}
  ~MessageFeed();

  /// The log reached `newest` (0: the listener reconnected; every watch looks again).
  void Notify(int64_t newest);

  PgMessageStore& store() { return store_; }
  void Post(std::function<void()> fn);
  void Add(const std::shared_ptr<MessageWatch>& w);
  void Remove(const MessageWatch* w);

 private:
  PgMessageStore& store_;
  absl::Mutex mu_;
  int64_t newest_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::weak_ptr<MessageWatch>> watches_ ABSL_GUARDED_BY(mu_);
  boost::asio::thread_pool reader_{1};
};

class MessageWatch final : public grpc::ServerWriteReactor<v1::Message>,
                           public std::enable_shared_from_this<MessageWatch> {
 public:
  /// Starts a watch of `session_id` (else `tenant_id`'s sessions, else all) after `after`.
  /// `done` runs once, when gRPC is done with the call.
  static grpc::ServerWriteReactor<v1::Message>* Start(MessageFeed& feed, std::string tenant_id,
                                                      std::string session_id, int64_t after,
                                                      std::function<void()> done);

  /// The log grew to `newest` (any thread).
  void Wake(int64_t newest);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  MessageWatch(MessageFeed& feed, std::string tenant_id, std::string session_id, int64_t after,
               std::function<void()> done);
  void Pump();
  void Read();  // on the feed's reader thread
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MessageFeed& feed_;
  const std::string tenant_id_;
  const std::string session_id_;
  std::function<void()> done_callback_;

  absl::Mutex mu_;
  std::shared_ptr<MessageWatch> self_ ABSL_GUARDED_BY(mu_);  // until OnDone
  int64_t cursor_ ABSL_GUARDED_BY(mu_);                      // read up to here
  int64_t known_ ABSL_GUARDED_BY(mu_) = 0;                   // the log is known to reach this far
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;                  // there may be rows past the cursor
  std::deque<v1::Message> backlog_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::Message current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::session
