// A session's messages in PostgreSQL (migrations 7 and 8 of pg_store.cc): what it received —
// stored in the same transaction as the Signal state its decryption changed (pg_signal_store.h),
// under the session's lease, and only then acknowledged to WhatsApp, which deletes its copy once
// it has the receipt — and what it sends, queued by SendMessage (the outbox: rows still PENDING,
// in the order they were queued) and followed through the statuses WhatsApp reports. The
// Message bytes are sealed like the credentials.
//
// Every insert and change of status numbers the row again, in commit order (migration 8), and
// notifies `session_messages`: MessagesAfter reads the log a WatchMessages stream resumes from.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/sealing.h"

namespace pqxx {
class transaction_base;
}

namespace wasentinel {
class PgPool;
}

namespace wasentinel::session {

/// A message's status as stored (the API's MessageStatus without its prefix). Sent messages
/// move PENDING → SERVER_ACK → DELIVERED → READ, never back, or PENDING → FAILED; received
/// ones are RECEIVED, then READ once MarkRead sent their read receipt.
inline constexpr const char* kPending = "PENDING";
inline constexpr const char* kServerAck = "SERVER_ACK";
inline constexpr const char* kDelivered = "DELIVERED";
inline constexpr const char* kRead = "READ";
inline constexpr const char* kFailed = "FAILED";
inline constexpr const char* kReceived = "RECEIVED";
inline constexpr const char* kUndecryptable = "UNDECRYPTABLE";

struct InboundMessage {
  std::string id;        ///< WhatsApp's message id
  std::string chat;      ///< the chat: a user JID ("15551234567@s.whatsapp.net") or a group's
  std::string sender;    ///< the device that sent it ("15551234567:3@s.whatsapp.net")
  bool from_me = false;  ///< sent by the account's own phone or other linked device
  std::string kind;      ///< message_content.h MessageContent::type
  absl::Time sent_at;
  Bytes body;           ///< the Message protobuf (empty for what was not decrypted)
  std::string failure;  ///< not empty: it could not be decrypted (status UNDECRYPTABLE), why
};

/// A stored message, sent or received, its body opened.
struct StoredMessage {
  std::string session_id;
  std::string tenant_id;
  int64_t sequence = 0;  ///< its place in the message log (renumbered on every change)
  std::string chat;
  std::string sender;
  std::string id;
  bool from_me = false;
  std::string kind;
  absl::Time sent_at;
  absl::Time stored_at;
  std::string status;  ///< kPending … kReceived
  absl::Time status_at;
  std::string failure;  ///< FAILED: why
  std::string client_message_id;
  std::optional<absl::Time> deadline;  ///< PENDING: given up (FAILED) when not sent by then
  bool read_receipt_due = false;       ///< MarkRead asked for a read receipt not sent yet
  Bytes body;                          ///< the Message protobuf
  /// Not empty when the stored body does not open (its sealing key is not configured): the
  /// row is answered without it.
  std::string sealed_body_error;
};

/// Stores `m` for `session_id` in `tx`. Answers false when it was stored before (WhatsApp
/// delivered it again: the receipt did not reach it); a message decrypted at last replaces its
/// UNDECRYPTABLE record. Call after WriteSignalChanges, which checks the lease in the same
/// transaction.
absl::StatusOr<bool> InsertInboundMessage(pqxx::transaction_base& tx, const Sealer& sealer,
                                          const std::string& session_id, const InboundMessage& m);

/// A message SendMessage queues.
struct OutboundMessage {
  std::string chat;    ///< "15551234567@s.whatsapp.net"
  std::string sender;  ///< this linked device's JID
  std::string id;      ///< the WhatsApp message id it is sent with
  std::string kind;    ///< "text"
  Bytes body;          ///< the Message protobuf
  std::string client_message_id;
  Bytes request_digest;  ///< of what the client asked (a reused client id must ask the same)
  absl::Time deadline;
};

class PgMessageStore {
 public:
  /// Not owned; they outlive the store.
  PgMessageStore(PgPool& pool, const Sealer& sealer) : pool_(pool), sealer_(sealer) {}

  /// Queues `m` (any replica may: the lease holder sends it). With a client_message_id queued
  /// before, answers that message instead when its request_digest is the same, and
  /// ALREADY_EXISTS when it differs. UNAVAILABLE when PostgreSQL is.
  absl::StatusOr<StoredMessage> Queue(const std::string& session_id, const OutboundMessage& m);

  /// The message `id` of `session_id` (in `chat` when given; the newest when several senders
  /// used one id). NOT_FOUND when there is none.
  absl::StatusOr<StoredMessage> Get(const std::string& session_id, const std::string& id,
                                    const std::string& chat = "");

  /// A page of `chat`'s messages, newest first: at most `limit`, older than `before` (a key
  /// from PageKey; empty: from the newest).
  absl::StatusOr<std::vector<StoredMessage>> List(const std::string& session_id,
                                                  const std::string& chat, int limit,
                                                  const std::string& before);
  /// The key that continues a List after `m`.
  static std::string PageKey(const StoredMessage& m);

  /// The message log after `sequence`, oldest first, at most `limit`: of `session_id` when not
  /// empty, else of `tenant_id`'s sessions when not empty, else of all.
  absl::StatusOr<std::vector<StoredMessage>> After(int64_t sequence, const std::string& tenant_id,
                                                   const std::string& session_id, int limit);
  /// The newest sequence of the log (0 when empty), and the newest one pruned (0: none): a
  /// watch resuming before it may have missed messages (OUT_OF_RANGE).
  absl::StatusOr<std::pair<int64_t, int64_t>> Bounds();

  /// The session's outbox: messages PENDING, and received ones owing a read receipt, in the
  /// order they were queued (or marked read).
  absl::StatusOr<std::vector<StoredMessage>> Outbox(const std::string& session_id);

  /// Moves a message of ours forward to `status` (SERVER_ACK, DELIVERED, READ, FAILED with
  /// `failure`), never back; fenced by `lease_token` (FAILED_PRECONDITION, IsFenced). Answers
  /// whether it moved.
  absl::StatusOr<bool> Advance(const std::string& session_id, int64_t lease_token,
                               const std::string& id, const std::string& status,
                               const std::string& failure = "");
  /// Read receipts for `ids` in `chat` went out: they are no longer owed. Fenced likewise.
  absl::Status ReadReceiptsSent(const std::string& session_id, int64_t lease_token,
                                const std::string& chat, const std::vector<std::string>& ids);
  /// MarkRead: the received messages `ids` of `chat` are READ and owe a read receipt. Answers
  /// the ids that were found (read before or now).
  absl::StatusOr<std::vector<std::string>> MarkRead(const std::string& session_id,
                                                    const std::string& chat,
                                                    const std::vector<std::string>& ids);

  /// Messages in trouble per session since `since`: received but not decrypted (UNDECRYPTABLE),
  /// and sent but FAILED, counted by when they became so. Of `session_ids` (empty: every
  /// session); sessions with none are absent.
  struct Trouble {
    int32_t undecryptable = 0;
    int32_t failed_sends = 0;
  };
  absl::StatusOr<absl::flat_hash_map<std::string, Trouble>> TroubleSince(
      absl::Time since, const std::vector<std::string>& session_ids = {});

  /// Deletes messages that last changed before `cutoff` (PENDING ones only once past their
  /// deadline), at most `batch` rows; answers how many.
  absl::StatusOr<int64_t> Prune(absl::Time cutoff, int batch);

 private:
  absl::StatusOr<std::vector<StoredMessage>> Select(const std::string& where_sql,
                                                    const std::vector<std::string>& params,
                                                    const std::string& tail_sql);
  PgPool& pool_;
  const Sealer& sealer_;
};

}  // namespace wasentinel::session
