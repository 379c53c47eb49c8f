#include "pg_message_store.h"

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/pg.h"

namespace wasentinel::session {

absl::StatusOr<bool> InsertInboundMessage(pqxx::transaction_base& tx, const Sealer& sealer,
                                          const std::string& session_id, const InboundMessage& m) {
  if (m.id.empty() || m.id.size() > 128 || m.chat.empty() || m.chat.size() > 256 ||
      m.sender.size() > 256 || m.kind.size() > 128) {
    return absl::InvalidArgumentError("a message id, chat, sender or kind out of bounds");
  }
  const auto sealed = sealer.Seal(m.body);
  auto r = tx.exec_params(
      "INSERT INTO messages (session_id, chat_jid, sender_jid, message_id, from_me, kind, sent_at,"
      " seal_key, body) VALUES ($1::uuid, $2, $3, $4, $5, $6, to_timestamp($7), $8,"
      " decode($9, 'hex')) ON CONFLICT DO NOTHING RETURNING 1",
      session_id, m.chat, m.sender, m.id, m.from_me, m.kind,
      static_cast<double>(absl::ToUnixMicros(m.sent_at)) / 1e6, sealed.key_id,
      HexEncode(sealed.blob));
  return !r.empty();
}

}  // namespace wasentinel::session
