// Receives a session's end-to-end encrypted messages (docs/wa-protocol.md §11): decrypts each
// <message> with the session's Signal state, stores the message and the state it changed in one
// PostgreSQL transaction under the session's lease, and only then answers what WhatsApp waits
// for — a delivery receipt (type "sender" for the account's own messages), the same for a
// message stored before (a redelivery), or a retry receipt and an ack for one that does not
// decrypt. A message whose transaction fails is not answered: WhatsApp delivers it again.
//
// Each session's Signal state is loaded from PostgreSQL on its first message and kept in memory
// (a JournalStore); a failed transaction drops it, to be loaded again. One thread of its own does
// the work, so the connection thread never waits for the database.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "binary_node.h"
#include "credentials.h"
#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "metrics.h"
#include "wasentinel/common/sealing.h"

namespace spdlog {
class logger;
}

namespace wasentinel {
class PgPool;
}

namespace wasentinel::session {

class MessageReceiver {
 public:
  /// The stanzas to send back for a message, in order (empty: none, WhatsApp will redeliver).
  using Reply = std::function<void(std::vector<wa::Node>)>;

  /// Not owned: pool, sealer, metrics (may be null); they outlive it.
  static absl::StatusOr<std::unique_ptr<MessageReceiver>> Create(
      PgPool& pool, const Sealer& sealer, std::shared_ptr<spdlog::logger> log,
      SessionMetrics* metrics);
  ~MessageReceiver();  // waits for the message under way

  /// Takes `message` of session `session_id` (whose lease carries `lease_token`, and whose
  /// device `creds` are); `reply` runs on the receiver's thread.
  void Receive(std::string session_id, int64_t lease_token, const wa::DeviceCredentials& creds,
               wa::Node message, Reply reply);
  /// WhatsApp says `user` (the user part of a JID) changed its identity (<notification
  /// type="encrypt"><identity/>): their sessions and identities are forgotten, in memory and in
  /// PostgreSQL.
  void IdentityChanged(std::string session_id, int64_t lease_token,
                       const wa::DeviceCredentials& creds, std::string user);
  /// Drops what is kept in memory of the session (its lease went elsewhere, it logged out).
  void Forget(std::string session_id);

 private:
  struct Device {
    std::unique_ptr<signal::JournalStore> store;
    std::unique_ptr<signal::Protocol> protocol;
  };
  MessageReceiver(PgPool& pool, const Sealer& sealer, std::shared_ptr<spdlog::logger> log,
                  SessionMetrics* metrics, std::unique_ptr<signal::Context> context);
  std::vector<wa::Node> Process(const std::string& session_id, int64_t lease_token,
                                const wa::DeviceCredentials& creds, const wa::Node& message);
  absl::StatusOr<Device*> Load(const std::string& session_id, const wa::DeviceCredentials& creds);

  PgPool& pool_;
  const Sealer& sealer_;
  std::shared_ptr<spdlog::logger> log_;
  SessionMetrics* metrics_;
  std::unique_ptr<signal::Context> context_;
  absl::flat_hash_map<std::string, Device> devices_;  // touched only on thread_
  boost::asio::thread_pool thread_{1};
};

}  // namespace wasentinel::session
