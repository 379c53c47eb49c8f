#include "pg_message_store.h"

#include <pqxx/pqxx>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "pg_signal_store.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

// The columns every read selects, in the order RowToMessage reads them.
constexpr const char* kColumns =
    "m.session_id::text, s.tenant_id, m.sequence, m.chat_jid, m.sender_jid, m.message_id,"
    " m.from_me, m.kind, (extract(epoch from m.sent_at) * 1000000)::bigint,"
    " (extract(epoch from m.stored_at) * 1000000)::bigint, m.status,"
    " (extract(epoch from m.status_at) * 1000000)::bigint,"
    " COALESCE(m.failure, ''), COALESCE(m.client_message_id, ''),"
    " (extract(epoch from m.deadline) * 1000000)::bigint, m.read_receipt_due, m.seal_key, m.body"
    " FROM messages m JOIN sessions s ON s.id = m.session_id";

absl::Time FromEpoch(const pqxx::field& f) { return absl::FromUnixMicros(f.as<int64_t>()); }

absl::StatusOr<StoredMessage> RowToMessage(const Sealer& sealer, const pqxx::row& r) {
  StoredMessage m;
  m.session_id = r[0].as<std::string>();
  m.tenant_id = r[1].as<std::string>();
  m.sequence = r[2].as<int64_t>();
  m.chat = r[3].as<std::string>();
  m.sender = r[4].as<std::string>();
  m.id = r[5].as<std::string>();
  m.from_me = r[6].as<bool>();
  m.kind = r[7].as<std::string>();
  m.sent_at = FromEpoch(r[8]);
  m.stored_at = FromEpoch(r[9]);
  m.status = r[10].as<std::string>();
  m.status_at = FromEpoch(r[11]);
  m.failure = r[12].as<std::string>();
  m.client_message_id = r[13].as<std::string>();
  if (!r[14].is_null()) m.deadline = FromEpoch(r[14]);
  m.read_receipt_due = r[15].as<bool>();
  pqxx::binarystring blob(r[17]);
  auto body = sealer.Open(r[16].as<std::string>(), Bytes(blob.data(), blob.data() + blob.size()));
  if (!body.ok()) {
    // Kept in the answer without its body (a sealing key was removed?): one such row must not
    // stop a watch, a page or the outbox behind it.
    m.sealed_body_error = absl::StrCat("its body does not open: ", body.status().message());
    return m;
  }
  m.body = *std::move(body);
  return m;
}

absl::StatusOr<std::vector<StoredMessage>> RowsToMessages(const Sealer& sealer,
                                                          const pqxx::result& rows) {
  std::vector<StoredMessage> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    WAS_ASSIGN_OR_RETURN(auto m, RowToMessage(sealer, row));
    out.push_back(std::move(m));
  }
  return out;
}

double Epoch(absl::Time t) { return static_cast<double>(absl::ToUnixMicros(t)) / 1e6; }

// A status may only move forward: the statuses it may come from. A receipt also moves a
// message that FAILED by its deadline while its ack was lost: WhatsApp had it after all.
std::string FromStatuses(const std::string& to) {
  if (to == kServerAck) return "{PENDING}";
  if (to == kDelivered) return "{PENDING,SERVER_ACK,FAILED}";
  if (to == kRead) return "{PENDING,SERVER_ACK,DELIVERED,FAILED}";
  if (to == kFailed) return "{PENDING}";
  return "{}";
}

// The message log's lock (migration 8's trigger takes it for each row it numbers), taken
// first by a transaction that numbers several rows: its row locks then always come after it,
// so two such transactions cannot deadlock on each other's rows.
void TakeLogLock(pqxx::work& w) { w.exec("SELECT pg_advisory_xact_lock(2002875237, 1836279667)"); }

// Runs `fn` in a transaction; a status it sets (in `out`) wins over the transaction's.
absl::Status Transact(PgPool& pool, std::string_view what, absl::Status& out,
                      const std::function<void(pqxx::work&)>& fn) {
  const absl::Status committed = pool.Transact(what, [&](pqxx::work& w) {
    fn(w);
    if (!out.ok()) throw std::runtime_error(std::string(out.message()));
  });
  return out.ok() ? committed : out;
}

}  // namespace

absl::StatusOr<bool> InsertInboundMessage(pqxx::transaction_base& tx, const Sealer& sealer,
                                          const std::string& session_id, const InboundMessage& m) {
  if (m.id.empty() || m.id.size() > 128 || m.chat.empty() || m.chat.size() > 256 ||
      m.sender.size() > 256 || m.kind.size() > 128) {
    return absl::InvalidArgumentError("a message id, chat, sender or kind out of bounds");
  }
  const auto sealed = sealer.Seal(m.body);
  // A record of what was not decrypted gives way to the message (once it is); nothing else is
  // written twice.
  auto r = tx.exec_params(
      "INSERT INTO messages (session_id, chat_jid, sender_jid, message_id, from_me, kind, sent_at,"
      " seal_key, body, status, failure) VALUES ($1::uuid, $2, $3, $4, $5, $6, to_timestamp($7),"
      " $8, decode($9, 'hex'), $10, NULLIF($11, ''))"
      " ON CONFLICT (session_id, chat_jid, sender_jid, message_id) DO UPDATE SET kind ="
      " EXCLUDED.kind, seal_key = EXCLUDED.seal_key, body = EXCLUDED.body, status ="
      " EXCLUDED.status, failure = EXCLUDED.failure, status_at = now(), stored_at = now()"
      " WHERE messages.status = 'UNDECRYPTABLE' AND EXCLUDED.status <> 'UNDECRYPTABLE'"
      " RETURNING 1",
      session_id, m.chat, m.sender, m.id, m.from_me, m.kind, Epoch(m.sent_at), sealed.key_id,
      HexEncode(sealed.blob), m.failure.empty() ? kReceived : kUndecryptable,
      m.failure.substr(0, 500));
  return !r.empty();
}

absl::StatusOr<StoredMessage> PgMessageStore::Queue(const std::string& session_id,
                                                    const OutboundMessage& m) {
  const auto sealed = sealer_.Seal(m.body);
  absl::StatusOr<StoredMessage> out = absl::InternalError("not queued");
  absl::Status refused;
  bool raced = false;
  WAS_RETURN_IF_ERROR(Transact(pool_, "queue a message", refused, [&](pqxx::work& w) {
    // The client id's row, if any, first: the unique index would refuse the insert anyway,
    // but this answers what was queued under it.
    const std::string select =
        absl::StrCat("SELECT ", kColumns,
                     " WHERE m.session_id = $1::uuid AND m.client_message_id = $2 AND m.from_me");
    if (!m.client_message_id.empty()) {
      auto prior = w.exec_params(select, session_id, m.client_message_id);
      if (!prior.empty()) {
        auto digest = w.exec_params(
            "SELECT encode(request_digest, 'hex') FROM messages WHERE session_id = $1::uuid AND"
            " client_message_id = $2",
            session_id, m.client_message_id);
        if (digest.empty() || digest[0][0].is_null() ||
            digest[0][0].as<std::string>() != HexEncode(m.request_digest)) {
          refused = absl::AlreadyExistsError(
              absl::StrCat("client_message_id ", m.client_message_id,
                           " was used for another message (another recipient or text)"));
          return;
        }
        out = RowToMessage(sealer_, prior[0]);
        return;
      }
    }
    // A concurrent call with the same client id may have inserted it meanwhile: then nothing
    // is inserted here, and Queue runs again to answer that one.
    auto inserted = w.exec_params(
        "INSERT INTO messages (session_id, chat_jid, sender_jid, message_id, from_me, kind,"
        " sent_at, seal_key, body, status, client_message_id, request_digest, deadline)"
        " VALUES ($1::uuid, $2, $3, $4, true, $5, now(), $6, decode($7, 'hex'), 'PENDING',"
        " NULLIF($8, ''), decode($9, 'hex'), to_timestamp($10))"
        " ON CONFLICT (session_id, client_message_id) WHERE client_message_id IS NOT NULL"
        " DO NOTHING RETURNING 1",
        session_id, m.chat, m.sender, m.id, m.kind, sealed.key_id, HexEncode(sealed.blob),
        m.client_message_id, HexEncode(m.request_digest), Epoch(m.deadline));
    if (inserted.empty()) {
      raced = true;
      return;
    }
    auto row = w.exec_params(
        absl::StrCat("SELECT ", kColumns,
                     " WHERE m.session_id = $1::uuid AND m.chat_jid = $2 AND m.sender_jid = $3"
                     " AND m.message_id = $4"),
        session_id, m.chat, m.sender, m.id);
    out = RowToMessage(sealer_, PgOne(row));
  }));
  if (raced) return Queue(session_id, m);  // the other call's row is there now: answer it
  return out;
}

absl::StatusOr<std::vector<StoredMessage>> PgMessageStore::Select(
    const std::string& where_sql, const std::vector<std::string>& params,
    const std::string& tail_sql) {
  absl::StatusOr<std::vector<StoredMessage>> out = std::vector<StoredMessage>{};
  WAS_RETURN_IF_ERROR(pool_.Transact("read messages", [&](pqxx::work& w) {
    const std::string sql = absl::StrCat("SELECT ", kColumns, " WHERE ", where_sql, " ", tail_sql);
    const pqxx::result rows = w.exec_params(sql, pqxx::prepare::make_dynamic_params(params));
    out = RowsToMessages(sealer_, rows);
  }));
  return out;
}

absl::StatusOr<StoredMessage> PgMessageStore::Get(const std::string& session_id,
                                                  const std::string& id, const std::string& chat) {
  WAS_ASSIGN_OR_RETURN(
      auto rows,
      Select("m.session_id = $1::uuid AND m.message_id = $2 AND ($3 = '' OR m.chat_jid = $3)",
             {session_id, id, chat}, "ORDER BY m.sent_at DESC LIMIT 1"));
  if (rows.empty()) {
    return absl::NotFoundError(absl::StrCat("session ", session_id, " has no message ", id));
  }
  return std::move(rows.front());
}

std::string PgMessageStore::PageKey(const StoredMessage& m) {
  return absl::StrCat(absl::ToUnixMicros(m.sent_at), ",", m.sender, ",", m.id);
}

absl::StatusOr<std::vector<StoredMessage>> PgMessageStore::List(const std::string& session_id,
                                                                const std::string& chat, int limit,
                                                                const std::string& before) {
  const std::string tail =
      absl::StrCat("ORDER BY m.sent_at DESC, m.sender_jid DESC, m.message_id DESC LIMIT ", limit);
  if (before.empty()) {
    return Select("m.session_id = $1::uuid AND m.chat_jid = $2", {session_id, chat}, tail);
  }
  std::vector<std::string> parts = absl::StrSplit(before, absl::MaxSplits(',', 2));
  int64_t micros = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &micros)) {
    return absl::InvalidArgumentError("page_token is not one this service gave");
  }
  return Select(
      "m.session_id = $1::uuid AND m.chat_jid = $2 AND (m.sent_at, m.sender_jid, m.message_id)"
      " < (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4, $5)",
      {session_id, chat, std::to_string(micros), parts[1], parts[2]}, tail);
}

absl::StatusOr<std::vector<StoredMessage>> PgMessageStore::After(int64_t sequence,
                                                                 const std::string& tenant_id,
                                                                 const std::string& session_id,
                                                                 int limit) {
  const std::string tail = absl::StrCat("ORDER BY m.sequence LIMIT ", limit);
  if (!session_id.empty()) {
    return Select("m.sequence > $1::bigint AND m.session_id = $2::uuid",
                  {std::to_string(sequence), session_id}, tail);
  }
  if (!tenant_id.empty()) {
    return Select("m.sequence > $1::bigint AND s.tenant_id = $2",
                  {std::to_string(sequence), tenant_id}, tail);
  }
  return Select("m.sequence > $1::bigint", {std::to_string(sequence)}, tail);
}

absl::StatusOr<std::pair<int64_t, int64_t>> PgMessageStore::Bounds() {
  std::pair<int64_t, int64_t> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("read the message log's bounds", [&](pqxx::work& w) {
    auto r =
        PgOne(w.exec("SELECT COALESCE((SELECT max(sequence) FROM messages), 0),"
                     " COALESCE((SELECT through FROM messages_pruned), 0)"));
    out = {r[0].as<int64_t>(), r[1].as<int64_t>()};
  }));
  return out;
}

absl::StatusOr<absl::flat_hash_map<std::string, PgMessageStore::Trouble>>
PgMessageStore::TroubleSince(absl::Time since, const std::vector<std::string>& session_ids) {
  absl::flat_hash_map<std::string, Trouble> out;
  WAS_RETURN_IF_ERROR(pool_.Run("count messages in trouble", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const auto& r : n.exec_params(
             absl::StrCat("SELECT session_id::text, count(*) FILTER (WHERE status = "
                          "'UNDECRYPTABLE'), count(*) FILTER (WHERE status = 'FAILED')"
                          " FROM messages WHERE status IN ('UNDECRYPTABLE', 'FAILED')"
                          " AND status_at >= ",
                          PgTime(1),
                          " AND ($2 = '' OR session_id = ANY(string_to_array($2, ',')::uuid[]))"
                          " GROUP BY session_id"),
             absl::ToUnixMicros(since), absl::StrJoin(session_ids, ","))) {
      out[r[0].as<std::string>()] = {r[1].as<int32_t>(), r[2].as<int32_t>()};
    }
  }));
  return out;
}

absl::StatusOr<std::vector<StoredMessage>> PgMessageStore::Outbox(const std::string& session_id) {
  return Select("m.session_id = $1::uuid AND (m.status = 'PENDING' OR m.read_receipt_due)",
                {session_id}, "ORDER BY m.queued LIMIT 1000");
}

absl::StatusOr<bool> PgMessageStore::Advance(const std::string& session_id, int64_t lease_token,
                                             const std::string& id, const std::string& status,
                                             const std::string& failure) {
  bool moved = false;
  absl::Status fenced;
  WAS_RETURN_IF_ERROR(Transact(pool_, "update a message's status", fenced, [&](pqxx::work& w) {
    fenced = CheckLease(w, session_id, lease_token);
    if (!fenced.ok()) return;
    auto r = w.exec_params(
        "UPDATE messages SET status = $3, status_at = now(), failure = NULLIF($4, '')"
        " WHERE session_id = $1::uuid AND message_id = $2 AND from_me AND status = ANY($5::text[])"
        " RETURNING 1",
        session_id, id, status, failure.substr(0, 500), FromStatuses(status));
    moved = !r.empty();
  }));
  return moved;
}

absl::Status PgMessageStore::ReadReceiptsSent(const std::string& session_id, int64_t lease_token,
                                              const std::string& chat,
                                              const std::vector<std::string>& ids) {
  absl::Status fenced;
  return Transact(pool_, "note read receipts sent", fenced, [&](pqxx::work& w) {
    fenced = CheckLease(w, session_id, lease_token);
    if (!fenced.ok()) return;
    for (const auto& id : ids) {
      w.exec_params(
          "UPDATE messages SET read_receipt_due = false WHERE session_id = $1::uuid AND"
          " chat_jid = $2 AND message_id = $3 AND read_receipt_due",
          session_id, chat, id);
    }
  });
}

absl::StatusOr<std::vector<std::string>> PgMessageStore::MarkRead(
    const std::string& session_id, const std::string& chat, const std::vector<std::string>& ids) {
  std::vector<std::string> found;
  WAS_RETURN_IF_ERROR(pool_.Transact("mark messages read", [&](pqxx::work& w) {
    found.clear();
    TakeLogLock(w);
    for (const auto& id : ids) {
      auto r = w.exec_params(
          "SELECT status FROM messages WHERE session_id = $1::uuid AND chat_jid = $2 AND"
          " message_id = $3 AND NOT from_me FOR UPDATE",
          session_id, chat, id);
      if (r.empty()) continue;
      found.push_back(id);
      w.exec_params(
          "UPDATE messages SET status = 'READ', status_at = now(), read_receipt_due = true"
          " WHERE session_id = $1::uuid AND chat_jid = $2 AND message_id = $3 AND NOT from_me"
          " AND status = 'RECEIVED'",
          session_id, chat, id);
    }
  }));
  return found;
}

absl::StatusOr<int64_t> PgMessageStore::Prune(absl::Time cutoff, int batch) {
  int64_t n = 0;
  WAS_RETURN_IF_ERROR(pool_.Transact("prune messages", [&](pqxx::work& w) {
    auto r = w.exec_params(
        "WITH gone AS (DELETE FROM messages WHERE ctid IN (SELECT ctid FROM messages WHERE"
        " status_at < to_timestamp($1) AND (status <> 'PENDING' OR deadline < now()) LIMIT $2)"
        " RETURNING sequence) SELECT count(*), COALESCE(max(sequence), 0) FROM gone",
        Epoch(cutoff), batch);
    n = r[0][0].as<int64_t>();
    if (n > 0) {
      w.exec_params(
          "INSERT INTO messages_pruned (through) VALUES ($1) ON CONFLICT (only_row) DO UPDATE"
          " SET through = GREATEST(messages_pruned.through, EXCLUDED.through)",
          r[0][1].as<int64_t>());
    }
  }));
  return n;
}

}  // namespace wasentinel::session
