// PgAlertStore (pg_alert_store.h): the outbox's deliveries: claims and attempts, list, stats.
#include <algorithm>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "pg_alert_store.h"
#include "pg_alert_store_internal.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {
namespace {

using internal::AlertColumns;
using internal::CheckUuid;
using internal::DeliveryColumns;
using internal::DeliveryTables;
using internal::EndpointColumns;
using internal::EnumOf;
using internal::kDeliveryTables;
using internal::ToAlert;
using internal::ToDelivery;
using internal::ToEndpoint;

// Complete's update of delivery `numeric` in `table` (one of the outbox's two); answers whether
// it changed a row there.
bool Record(pqxx::nontransaction& n, const char* table, int64_t numeric,
            const AttemptResult& result, absl::Time now) {
  pqxx::result r;
  switch (result.kind) {
    case AttemptResult::kSent:
      r = n.exec_params(absl::StrCat("UPDATE ", table,
                                     " SET status = 'STATUS_SENT',"
                                     " attempts = attempts + 1, last_error = '', sent_at = ",
                                     PgTime(2),
                                     ", claimed_by = NULL, claimed_until = NULL"
                                     " WHERE id = $1 AND status <> 'STATUS_SENT'"),
                        numeric, absl::ToUnixMicros(now));
      break;
    case AttemptResult::kRetry:
      r = n.exec_params(
          absl::StrCat("UPDATE ", table,
                       " SET status = 'STATUS_FAILED',"
                       " attempts = attempts + 1, last_error = $2, next_attempt_at = ",
                       PgTime(3),
                       ", claimed_by = NULL, claimed_until = NULL"
                       " WHERE id = $1 AND status <> 'STATUS_SENT'"),
          numeric, result.error, absl::ToUnixMicros(result.next_attempt_at));
      break;
    case AttemptResult::kDefer:
      r = n.exec_params(
          absl::StrCat("UPDATE ", table, " SET last_error = $2, next_attempt_at = ", PgTime(3),
                       ", claimed_by = NULL, claimed_until = NULL"
                       " WHERE id = $1 AND status <> 'STATUS_SENT'"),
          numeric, result.error, absl::ToUnixMicros(result.next_attempt_at));
      break;
    case AttemptResult::kDead:
      r = n.exec_params(
          absl::StrCat("UPDATE ", table,
                       " SET status = 'STATUS_DEAD',"
                       " attempts = attempts + 1, last_error = $2, claimed_by = NULL,"
                       " claimed_until = NULL WHERE id = $1 AND status <> 'STATUS_SENT'"),
          numeric, result.error);
      break;
  }
  return r.affected_rows() > 0;
}

}  // namespace

absl::StatusOr<std::vector<ClaimedDelivery>> PgAlertStore::Claim(const std::string& worker,
                                                                 absl::Time now,
                                                                 absl::Duration lease, int limit) {
  std::vector<ClaimedDelivery> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("claim deliveries", [&](pqxx::work& w) {
    // Up to half the batch for alerts, then message events, then alerts again in what is left:
    // neither kind starves the other, and the batch is at most `limit`.
    auto claim = [&](const char* table, const char* payload, int n) {
      return w.exec_params(
          absl::StrCat(
              "UPDATE ", table, " SET claimed_by = $1, claimed_until = ", PgTime(3),
              " WHERE id IN (SELECT id FROM ", table,
              " WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED') AND next_attempt_at <= ",
              PgTime(2), " AND (claimed_until IS NULL OR claimed_until <= ", PgTime(2),
              ") ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
              " RETURNING ",
              DeliveryColumns(), ", ", payload),
          worker, absl::ToUnixMicros(now), absl::ToUnixMicros(now + lease), n);
    };
    std::vector<pqxx::row> rows;
    auto add = [&](const char* table, const char* payload, int n) {
      if (n <= 0) return;
      for (const auto& row : claim(table, payload, n)) rows.push_back(row);
    };
    add("alert_deliveries", "'', NULL::bytea", limit - limit / 2);
    add("alert_message_deliveries", "payload_key_id, payload",
        limit - static_cast<int>(rows.size()));
    add("alert_deliveries", "'', NULL::bytea", limit - static_cast<int>(rows.size()));
    absl::flat_hash_map<std::string, v1::Alert> alerts;
    absl::flat_hash_map<std::string, std::optional<EndpointRecord>> endpoints;
    for (const auto& row : rows) {
      ClaimedDelivery c;
      c.delivery = ToDelivery(row);
      if (c.delivery.kind() == v1::Delivery::KIND_MESSAGE) {
        c.payload_key_id = row[12].as<std::string>();
        if (!row[13].is_null()) c.sealed_payload = pqxx::binarystring(row[13]).str();
      } else {
        auto [a, fresh] = alerts.try_emplace(c.delivery.alert_id());
        if (fresh) {
          a->second = ToAlert(PgOne(w.exec_params(
              absl::StrCat("SELECT ", AlertColumns(), " FROM alert_alerts WHERE id = $1::uuid"),
              c.delivery.alert_id())));
        }
        c.alert = a->second;
      }
      if (c.delivery.channel() == v1::Delivery::CHANNEL_WEBHOOK) {
        auto [e, new_endpoint] = endpoints.try_emplace(c.delivery.target());
        if (new_endpoint && IsUuid(c.delivery.target())) {
          auto found = w.exec_params(absl::StrCat("SELECT ", EndpointColumns(),
                                                  " FROM alert_endpoints WHERE id = $1::uuid"),
                                     c.delivery.target());
          if (!found.empty()) e->second = ToEndpoint(found[0]);
        }
        c.endpoint = e->second;
      }
      out.push_back(std::move(c));
    }
  }));
  std::sort(out.begin(), out.end(), [](const ClaimedDelivery& a, const ClaimedDelivery& b) {
    return std::stoll(a.delivery.id()) < std::stoll(b.delivery.id());
  });
  return out;
}

absl::StatusOr<bool> PgAlertStore::Renew(const std::string& id, const std::string& claimer,
                                         absl::Time now, absl::Duration lease) {
  int64_t numeric = 0;
  if (!absl::SimpleAtoi(id, &numeric)) {
    return absl::InvalidArgumentError(absl::StrCat("delivery id ", id, " is not a number"));
  }
  bool held = false;
  WAS_RETURN_IF_ERROR(pool_.Run("renew a delivery claim", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const char* table : kDeliveryTables) {
      held =
          held || !n.exec_params(absl::StrCat("UPDATE ", table, " SET claimed_until = ", PgTime(3),
                                              " WHERE id = $1 AND claimed_by = $2"
                                              " AND status IN ('STATUS_PENDING', 'STATUS_FAILED')"
                                              " RETURNING id"),
                                 numeric, claimer, absl::ToUnixMicros(now + lease))
                       .empty();
    }
  }));
  return held;
}

absl::Status PgAlertStore::Complete(const std::string& id, const AttemptResult& result,
                                    absl::Time now) {
  int64_t numeric = 0;
  if (!absl::SimpleAtoi(id, &numeric)) {
    return absl::InvalidArgumentError(absl::StrCat("delivery id ", id, " is not a number"));
  }
  return pool_.Run("record a delivery attempt", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const char* table : kDeliveryTables) {
      if (Record(n, table, numeric, result, now)) break;
    }
  });
}

absl::StatusOr<std::pair<std::vector<v1::Delivery>, std::string>> PgAlertStore::ListDeliveries(
    const v1::ListDeliveriesRequest& req, int page_size, const std::string& tenant) {
  if (page_size < 1 || page_size > 500) {
    return absl::InvalidArgumentError("page_size must be 1..500");
  }
  if (!req.alert_id().empty()) WAS_RETURN_IF_ERROR(CheckUuid(req.alert_id(), "alert"));
  int64_t before = 0;
  if (!req.page_token().empty() && !absl::SimpleAtoi(req.page_token(), &before)) {
    return absl::InvalidArgumentError("bad page_token");
  }
  std::string statuses;
  for (int st : req.statuses()) {
    absl::StrAppend(&statuses, statuses.empty() ? "" : ",",
                    v1::Delivery::Status_Name(static_cast<v1::Delivery::Status>(st)));
  }
  std::pair<std::vector<v1::Delivery>, std::string> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list deliveries", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto rows =
        n.exec_params(absl::StrCat("SELECT ", DeliveryColumns(), " FROM ", DeliveryTables(),
                                   " WHERE ($1 = '' OR channel = $1)"
                                   " AND ($2 = '' OR status = ANY(string_to_array($2, ',')))"
                                   " AND ($3 = '' OR alert_id = NULLIF($3, '')::uuid)"
                                   " AND ($4 = 0 OR id < $4) AND ($6 = '' OR tenant_id = $6)"
                                   " ORDER BY id DESC LIMIT $5"),
                      req.channel() == v1::Delivery::CHANNEL_UNSPECIFIED
                          ? std::string()
                          : v1::Delivery::Channel_Name(req.channel()),
                      statuses, req.alert_id(), before, page_size + 1, tenant);
    for (int i = 0; i < std::min<int>(page_size, rows.size()); ++i) {
      out.first.push_back(ToDelivery(rows[i]));
    }
    if (static_cast<int>(rows.size()) > page_size) out.second = out.first.back().id();
  }));
  return out;
}

absl::StatusOr<v1::Delivery> PgAlertStore::Redeliver(const std::string& id, absl::Time now,
                                                     const std::string& tenant) {
  int64_t numeric = 0;
  if (!absl::SimpleAtoi(id, &numeric)) {
    return absl::InvalidArgumentError(absl::StrCat("delivery id ", id, " is not a number"));
  }
  std::optional<v1::Delivery> out;
  bool exists = false;
  WAS_RETURN_IF_ERROR(pool_.Transact("redeliver", [&](pqxx::work& w) {
    exists = !w.exec_params(absl::StrCat("SELECT 1 FROM ", DeliveryTables(),
                                         " WHERE id = $1 AND ($2 = '' OR tenant_id = $2)"),
                            numeric, tenant)
                  .empty();
    if (!exists) return;
    for (const char* table : kDeliveryTables) {
      auto r = w.exec_params(
          absl::StrCat(
              "UPDATE ", table,
              " SET status = 'STATUS_PENDING', attempts = 0, next_attempt_at = ", PgTime(2),
              ", claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND status IN"
              " ('STATUS_DEAD', 'STATUS_FAILED') RETURNING ",
              DeliveryColumns()),
          numeric, absl::ToUnixMicros(now));
      if (!r.empty()) {
        out = ToDelivery(r[0]);
        break;
      }
    }
  }));
  if (!exists) return absl::NotFoundError(absl::StrCat("no delivery ", id));
  if (!out) {
    return absl::FailedPreconditionError(
        absl::StrCat("delivery ", id,
                     " is sent or already waiting; only DEAD or FAILED ones are"
                     " delivered again"));
  }
  return *std::move(out);
}

absl::StatusOr<v1::GetDeliveryStatsResponse> PgAlertStore::DeliveryStats(
    absl::Time since, absl::Time now, const std::string& tenant) {
  v1::GetDeliveryStatsResponse out;
  WAS_RETURN_IF_ERROR(pool_.Run("delivery stats", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const auto& r : n.exec_params(
             absl::StrCat(
                 "SELECT channel, status, count(*),"
                 " coalesce((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch from"
                 " sent_at - created_at)) * 1000000)::bigint, 0),"
                 " coalesce((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch from"
                 " sent_at - created_at)) * 1000000)::bigint, 0)"
                 " FROM ",
                 DeliveryTables(), " WHERE created_at >= ", PgTime(1),
                 " AND ($2 = '' OR tenant_id = $2)"
                 " GROUP BY channel, status ORDER BY channel, status"),
             absl::ToUnixMicros(since), tenant)) {
      auto* row = out.add_rows();
      row->set_channel(EnumOf<v1::Delivery::Channel>(r[0], &v1::Delivery::Channel_Parse));
      row->set_status(EnumOf<v1::Delivery::Status>(r[1], &v1::Delivery::Status_Parse));
      row->set_count(r[2].as<int64_t>());
      if (row->status() == v1::Delivery::STATUS_SENT) {
        *row->mutable_latency_p50() = ToProto(absl::Microseconds(r[3].as<int64_t>()));
        *row->mutable_latency_p99() = ToProto(absl::Microseconds(r[4].as<int64_t>()));
      }
    }
    auto depth = n.exec_params(absl::StrCat("SELECT count(*), ", PgEpochMicros("min(created_at)"),
                                            " FROM ", DeliveryTables(),
                                            " WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED')"
                                            " AND ($1 = '' OR tenant_id = $1)"),
                               tenant)[0];
    out.set_outbox_depth(depth[0].as<int64_t>());
    if (!depth[1].is_null()) {
      *out.mutable_oldest_pending_age() =
          ToProto(now - absl::FromUnixMicros(depth[1].as<int64_t>()));
    }
  }));
  return out;
}

}  // namespace wasentinel::alert
