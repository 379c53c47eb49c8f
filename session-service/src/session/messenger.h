// A replica's end-to-end encrypted messaging (docs/wa-protocol.md §11), for every session it
// holds. Receiving and sending share each session's Signal state, so one thread of the
// messenger's own does both; the connection threads never wait for the database.
//
// Receiving: each <message> is decrypted with the session's Signal state, and the message and
// the state it changed are stored in one PostgreSQL transaction under the session's lease; only
// then is what WhatsApp waits for answered — a delivery receipt (type "sender" for the
// account's own messages), the same for a message stored before (a redelivery), or a retry
// receipt and an ack for one that does not decrypt. A message whose transaction fails is not
// answered: WhatsApp delivers it again.
//
// Sending: SendMessage queues a row in the session's outbox (pg_message_store.h) on any
// replica; the lease holder's messenger sends the outbox in order while the session is online —
// device lists (usync, cached per user until a device notification or a participant hash that
// differs), bundles for devices without a Signal session, one <enc> per device (our own other
// devices get the message inside a deviceSentMessage), <device-identity> beside pre-key
// messages, the Signal state stored under the lease *before* the stanza leaves, then the
// server's ack (SERVER_ACK, or FAILED with its error). Receipts move a message to DELIVERED
// and READ; a retry receipt is answered by encrypting the message again for the device that
// asked (with the keys it sent, or a fresh bundle from its second retry). At most
// `sends_per_second` messages leave per session (a token bucket; the rest wait in the outbox,
// never dropped); a message still unsent at its deadline is FAILED.
//
// Each session's Signal state is loaded from PostgreSQL on first use and kept in memory (a
// JournalStore) while it is used: without its one-time pre-keys (hundreds, each used once),
// which are read one by one when a pre-key message names one, and dropped after
// MessengerOptions::idle_state unused. A failed transaction drops it too, to be loaded again; a
// pre-key that cannot be read leaves the message unanswered (WhatsApp delivers it again), never
// taken for a bad message.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "binary_node.h"
#include "credentials.h"
#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "metrics.h"
#include "pg_message_store.h"
#include "wasentinel/common/sealing.h"

namespace spdlog {
class logger;
}

namespace wasentinel {
class PgPool;
}

namespace wasentinel::session {

/// The device's Signal identity (its identity key pair and registration id) and signed pre-key,
/// as pairing registered them in the credentials.
signal::Identity SignalIdentityOf(const wa::DeviceCredentials& creds);
signal::SignedPreKey SignedPreKeyOf(const wa::DeviceCredentials& creds);

/// The live connection a session's messages leave on (the state machine's, while it is the
/// session's). Methods may be called from any thread.
class MessageLink {
 public:
  virtual ~MessageLink() = default;
  /// Sends `node` if the connection is still up (dropped otherwise).
  virtual void Send(wa::Node node) = 0;
  /// Sends `iq`; `done` (any thread) gets the answer or why there is none (ConnectionHandle::
  /// Query).
  virtual void Query(wa::Node iq, std::function<void(absl::StatusOr<wa::Node>)> done,
                     absl::Duration timeout) = 0;
};

struct MessengerOptions {
  /// Messages a session sends per second at most (a token bucket of this size, refilled at
  /// this rate); more wait in the outbox.
  double sends_per_second = 5;
  /// How long a sent message waits for the server's ack before it is sent again.
  absl::Duration ack_timeout = absl::Seconds(30);
  /// A session's Signal state unused this long leaves memory (read again from PostgreSQL
  /// when the next message comes); looked at every minute (or every idle_state if shorter).
  absl::Duration idle_state = absl::Minutes(10);
};

class Messenger {
 public:
  /// The stanzas to send back for a message, in order (empty: none, WhatsApp will redeliver).
  using Reply = std::function<void(std::vector<wa::Node>)>;

  /// Not owned: pool, sealer, metrics (may be null); they outlive it.
  static absl::StatusOr<std::unique_ptr<Messenger>> Create(PgPool& pool, const Sealer& sealer,
                                                           std::shared_ptr<spdlog::logger> log,
                                                           SessionMetrics* metrics,
                                                           MessengerOptions options = {});
  ~Messenger();  // waits for the work under way

  // ---- receiving ----

  /// Takes `message` of session `session_id` (whose lease carries `lease_token`, and whose
  /// device `creds` are); `reply` runs on the messenger's thread.
  void Receive(std::string session_id, int64_t lease_token, const wa::DeviceCredentials& creds,
               wa::Node message, Reply reply);
  /// WhatsApp says `user` (the user part of a JID) changed its identity (<notification
  /// type="encrypt"><identity/>): their sessions and identities are forgotten, in memory and in
  /// PostgreSQL.
  void IdentityChanged(std::string session_id, int64_t lease_token,
                       const wa::DeviceCredentials& creds, std::string user);

  // ---- sending ----

  /// The session logged in on `link`: its outbox is sent from now on.
  void Online(std::string session_id, int64_t lease_token, const wa::DeviceCredentials& creds,
              std::shared_ptr<MessageLink> link);
  /// Its connection ended: sending pauses (what is unsent stays in the outbox).
  void Offline(std::string session_id);
  /// Its outbox changed (a message queued, a read receipt owed): read it again if online.
  void Wake(std::string session_id);
  /// The same for every session online (notifications may have been missed).
  void WakeAll();
  /// A stanza about what the session sent: a <receipt>, an <ack class="message">, or a
  /// <notification type="devices">.
  void OnStanza(std::string session_id, wa::Node stanza);

  /// Drops what is kept in memory of the session (its lease went elsewhere, it logged out).
  void Forget(std::string session_id);

 private:
  struct Device {
    std::unique_ptr<signal::JournalStore> store;
    std::unique_ptr<signal::Protocol> protocol;
    absl::Time used_at;  // the last Load
  };
  // Drops the Signal state of sessions idle for options_.idle_state, then again in a minute.
  void EvictIdle();
  // One device of a contact (or of ours): its user part and device id.
  using DeviceId = std::pair<std::string, uint32_t>;
  // A session's sending side, while it is online.
  struct Sender {
    int64_t lease_token = 0;
    wa::DeviceCredentials creds;
    std::shared_ptr<MessageLink> link;
    uint64_t epoch = 0;  // per Online: answers to an older connection's queries are dropped
    std::deque<StoredMessage> queue;
    absl::flat_hash_set<std::string> queued;  // ids in `queue` or in flight
    bool busy = false;                        // a step of the head message is under way
    bool reload = true;                       // the outbox is to be read again
    std::optional<std::string> in_flight;     // sent, waiting for the server's ack
    std::string expected_phash;
    double tokens = 0;
    absl::Time refilled_at;
    std::unique_ptr<boost::asio::steady_timer> timer;  // rate limit, ack timeout, retry
    absl::flat_hash_map<std::string, std::vector<uint32_t>> devices;  // usync cache by user
    absl::flat_hash_map<std::string, int> retries;  // answered retry receipts by "device/id"
    struct Unrecorded {
      std::string id, status, failure;
    };
    std::deque<Unrecorded> unrecorded;  // statuses to write again (the database failed)
  };

  Messenger(PgPool& pool, const Sealer& sealer, std::shared_ptr<spdlog::logger> log,
            SessionMetrics* metrics, MessengerOptions options,
            std::unique_ptr<signal::Context> context);
  void Post(std::function<void()> f);
  absl::StatusOr<Device*> Load(const std::string& session_id, const wa::DeviceCredentials& creds);
  // Writes what the session's Signal store changed, fenced, with `notes` for its message log;
  // on failure forgets the session's state. `stored`: whether the last note was new (not a
  // message stored before).
  absl::Status Persist(const std::string& session_id, int64_t lease_token, std::string_view what,
                       const std::vector<InboundMessage>& notes = {}, bool* stored = nullptr);
  // The notice a chat gets when the contact `user` changed its identity (kind
  // "identity_changed", WhatsApp's "security code changed").
  static InboundMessage IdentityNotice(const std::string& user);
  // The <keys> of a retry receipt: a fresh one-time pre-key (stored), identity, signed pre-key,
  // device identity.
  absl::StatusOr<wa::Node> RetryKeys(const std::string& session_id, int64_t lease_token,
                                     const wa::DeviceCredentials& creds);

  // Receiving (messenger.cc).
  std::vector<wa::Node> Process(const std::string& session_id, int64_t lease_token,
                                const wa::DeviceCredentials& creds, const wa::Node& message);

  // Sending (messenger_send.cc).
  Sender* FindSender(const std::string& session_id, uint64_t epoch);
  void Pump(const std::string& session_id);
  void RetryLater(const std::string& session_id, absl::Duration after);
  void SendReadReceipts(const std::string& session_id, Sender& s);
  void ResolveDevices(const std::string& session_id, Sender& s, std::vector<std::string> users,
                      std::function<void(Sender&, std::vector<DeviceId>)> then);
  void EnsureSessions(const std::string& session_id, Sender& s, std::vector<DeviceId> devices,
                      std::function<void(Sender&)> then);
  void EncryptAndSend(const std::string& session_id, Sender& s, std::vector<DeviceId> devices);
  void OnAck(const std::string& session_id, Sender& s, const wa::Node& ack);
  void OnReceipt(const std::string& session_id, Sender& s, const wa::Node& receipt);
  void AnswerRetry(const std::string& session_id, Sender& s, const wa::Node& receipt);
  void Resend(const std::string& session_id, uint64_t epoch, wa::Node receipt, StoredMessage m,
              std::optional<signal::PreKeyBundle> bundle);
  void Advance(const std::string& session_id, Sender& s, const std::string& id,
               const std::string& status, const std::string& failure = "");

  PgPool& pool_;
  const Sealer& sealer_;
  std::shared_ptr<spdlog::logger> log_;
  SessionMetrics* metrics_;
  const MessengerOptions options_;
  std::unique_ptr<signal::Context> context_;
  PgMessageStore store_;
  boost::asio::io_context io_;  // before what its timers live in, so it is destroyed after
  // Touched only on thread_:
  absl::flat_hash_map<std::string, Device> devices_;
  absl::flat_hash_map<std::string, Sender> senders_;
  absl::flat_hash_map<std::string, int> retry_counts_;  // retry receipts sent, by "session/id"
  uint64_t next_epoch_ = 1;
  bool stopping_ = false;
  boost::asio::steady_timer evictor_{io_};  // EvictIdle
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace wasentinel::session
