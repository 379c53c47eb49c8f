// The messages a session received, in PostgreSQL (migration 7 of pg_store.cc): stored in the
// same transaction as the Signal state their decryption changed (pg_signal_store.h), under the
// session's lease, and only then acknowledged to WhatsApp, which deletes its copy once it has
// the receipt. The Message bytes are sealed like the credentials.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/sealing.h"

namespace pqxx {
class transaction_base;
}

namespace wasentinel::session {

struct InboundMessage {
  std::string id;        ///< WhatsApp's message id
  std::string chat;      ///< the chat: a user JID ("15551234567@s.whatsapp.net") or a group's
  std::string sender;    ///< the device that sent it ("15551234567:3@s.whatsapp.net")
  bool from_me = false;  ///< sent by the account's own phone or other linked device
  std::string kind;      ///< message_content.h MessageContent::type
  absl::Time sent_at;
  Bytes body;  ///< the Message protobuf
};

/// Stores `m` for `session_id` in `tx`. Answers false when it was stored before (WhatsApp
/// delivered it again: the receipt did not reach it). Call after WriteSignalChanges, which
/// checks the lease in the same transaction.
absl::StatusOr<bool> InsertInboundMessage(pqxx::transaction_base& tx, const Sealer& sealer,
                                          const std::string& session_id, const InboundMessage& m);

}  // namespace wasentinel::session
