// PgAlertStore (pg_alert_store.h): message events into the outbox, and the feed's cursor and
// hold (alert_feeds), written together so that each event is enqueued once.
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "pg_alert_store.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {

absl::StatusOr<FeedHold> PgAlertStore::HoldFeed(const std::string& feed, const std::string& holder,
                                                absl::Time now, absl::Duration lease) {
  FeedHold out;
  WAS_RETURN_IF_ERROR(pool_.Run("hold a feed", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec_params(
        absl::StrCat("UPDATE alert_feeds SET holder = $2, held_until = ", PgTime(4),
                     " WHERE name = $1 AND (holder = $2 OR holder IS NULL OR held_until <= ",
                     PgTime(3), ") RETURNING after_sequence"),
        feed, holder, absl::ToUnixMicros(now), absl::ToUnixMicros(now + lease));
    if (r.empty()) return;
    out.held = true;
    if (!r[0][0].is_null()) out.after_sequence = r[0][0].as<int64_t>();
  }));
  return out;
}

absl::Status PgAlertStore::ReleaseFeed(const std::string& feed, const std::string& holder) {
  return pool_.Run("release a feed", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    n.exec_params(
        "UPDATE alert_feeds SET holder = NULL, held_until = NULL WHERE name = $1 AND holder = $2",
        feed, holder);
  });
}

absl::StatusOr<int> PgAlertStore::AdvanceFeed(const std::string& feed, const std::string& holder,
                                              std::optional<int64_t> from, int64_t to,
                                              const MessageEvent* event, absl::Time now,
                                              absl::Duration lease) {
  bool held = false;
  int written = 0;
  WAS_RETURN_IF_ERROR(pool_.Transact("enqueue a message event", [&](pqxx::work& w) {
    held =
        !w.exec_params(
              absl::StrCat("UPDATE alert_feeds SET after_sequence = $4, held_until = ", PgTime(5),
                           " WHERE name = $1 AND holder = $2"
                           " AND after_sequence IS NOT DISTINCT FROM $3 RETURNING 1"),
              feed, holder, from, to, absl::ToUnixMicros(now + lease))
             .empty();
    if (!held || !event) return;
    written = static_cast<int>(
        w.exec_params(
             absl::StrCat(
                 "INSERT INTO alert_message_deliveries (channel, kind, target, status,"
                 " next_attempt_at,"
                 " created_at, tenant_id, event_type, event_key, payload_key_id, payload)"
                 " SELECT 'CHANNEL_WEBHOOK', 'KIND_MESSAGE', id::text, 'STATUS_PENDING', ",
                 PgTime(1), ", ", PgTime(1),
                 ", $2, $3, $4, $5, decode($6, 'hex') FROM alert_endpoints"
                 " WHERE enabled AND $3 = ANY(event_types) AND (tenant_id = '' OR tenant_id = $2)"
                 " AND created_at <= ",
                 PgTime(7),
                 " ORDER BY created_at"
                 " ON CONFLICT (target, event_key) DO NOTHING"
                 " RETURNING id"),
             absl::ToUnixMicros(now), event->tenant_id, event->type, event->key,
             event->payload_key_id, PgHex(event->sealed_payload), absl::ToUnixMicros(event->at))
            .size());
  }));
  if (!held) {
    return absl::AbortedError(
        absl::StrCat("the ", feed, " feed is no longer held by ", holder, " at this cursor"));
  }
  return written;
}

absl::StatusOr<int> PgAlertStore::PruneMessageDeliveries(absl::Time before, int batch) {
  int pruned = 0;
  for (;;) {
    int n = 0;
    WAS_RETURN_IF_ERROR(pool_.Run("prune message deliveries", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      n = static_cast<int>(
          tx.exec_params(absl::StrCat("DELETE FROM alert_message_deliveries WHERE id IN (SELECT id"
                                      " FROM alert_message_deliveries WHERE status IN"
                                      " ('STATUS_SENT', 'STATUS_DEAD') AND created_at < ",
                                      PgTime(1), " LIMIT $2)"),
                         absl::ToUnixMicros(before), batch)
              .affected_rows());
    }));
    pruned += n;
    if (n < batch) return pruned;
  }
}

}  // namespace wasentinel::alert
