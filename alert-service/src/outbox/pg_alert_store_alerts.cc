// PgAlertStore (pg_alert_store.h): alerts (raise, resolve, read, remind) and silences.
#include <algorithm>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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
using internal::TimeOf;
using internal::ToAlert;
using internal::ToDelivery;

// The alert `id` with its deliveries, read in `tx`.
template <class Tx>
v1::Alert LoadAlert(Tx& tx, const std::string& id) {
  v1::Alert a = ToAlert(PgOne(tx.exec_params(
      absl::StrCat("SELECT ", AlertColumns(), " FROM alert_alerts WHERE id = $1::uuid"), id)));
  for (const auto& row :
       tx.exec_params(absl::StrCat("SELECT ", DeliveryColumns(),
                                   " FROM alert_deliveries WHERE alert_id = $1::uuid ORDER BY id"),
                      id)) {
    *a.add_deliveries() = ToDelivery(row);
  }
  return a;
}

void AddDelivery(pqxx::work& w, const v1::Alert& alert, v1::Delivery::Channel channel,
                 v1::Delivery::Kind kind, const std::string& target, absl::Time now) {
  w.exec_params(
      absl::StrCat("INSERT INTO alert_deliveries (alert_id, channel, kind, target, status,"
                   " next_attempt_at, created_at, tenant_id) VALUES ($1::uuid, $2, $3, $4,"
                   " 'STATUS_PENDING', ",
                   PgTime(5), ", ", PgTime(5), ", $6)"),
      alert.id(), v1::Delivery::Channel_Name(channel), v1::Delivery::Kind_Name(kind), target,
      absl::ToUnixMicros(now), alert.session().tenant_id());
}

// Notifications of `alert` (kind) to every recipient and every endpoint that takes its type.
void Notify(pqxx::work& w, const v1::Alert& alert, v1::Delivery::Kind kind,
            const std::vector<std::string>& emails, absl::Time now) {
  for (const auto& email : emails) {
    AddDelivery(w, alert, v1::Delivery::CHANNEL_EMAIL, kind, email, now);
  }
  for (const auto& row :
       w.exec_params("SELECT id::text FROM alert_endpoints WHERE enabled AND"
                     " (cardinality(event_types) = 0 OR $1 = ANY(event_types))"
                     " AND (tenant_id = '' OR tenant_id = $2) ORDER BY created_at",
                     alert.event_type(), alert.session().tenant_id())) {
    AddDelivery(w, alert, v1::Delivery::CHANNEL_WEBHOOK, kind, row[0].as<std::string>(), now);
  }
}

bool Silenced(pqxx::work& w, const v1::RaiseAlertRequest& req, absl::Time now) {
  return !w.exec_params(absl::StrCat("SELECT 1 FROM alert_silences WHERE until > ", PgTime(1),
                                     " AND (session_id = '' OR session_id = $2)"
                                     " AND (tenant_id = '' OR tenant_id = $3)"
                                     " AND (event_type = '' OR event_type = $4) LIMIT 1"),
                        absl::ToUnixMicros(now), req.session().session_id(),
                        req.session().tenant_id(), req.event_type())
              .empty();
}

const std::string& SilenceColumns() {
  static const std::string* cols = new std::string(
      absl::StrCat("id::text, session_id, tenant_id, event_type, ", PgEpochMicros("until"),
                   ", comment, ", PgEpochMicros("created_at")));
  return *cols;
}

v1::Silence ToSilence(const pqxx::row& r) {
  v1::Silence s;
  s.set_id(r[0].as<std::string>());
  s.set_session_id(r[1].as<std::string>());
  s.set_tenant_id(r[2].as<std::string>());
  s.set_event_type(r[3].as<std::string>());
  *s.mutable_until() = TimeOf(r[4]);
  s.set_comment(r[5].as<std::string>());
  *s.mutable_created_at() = TimeOf(r[6]);
  return s;
}

}  // namespace

absl::StatusOr<RaiseOutcome> PgAlertStore::Raise(const v1::RaiseAlertRequest& req,
                                                 const std::vector<std::string>& emails,
                                                 absl::Time now) {
  if (req.dedup_key().empty() || req.dedup_key().size() > 200) {
    return absl::InvalidArgumentError("dedup_key is required, 1..200 characters");
  }
  if (req.event_type().empty()) return absl::InvalidArgumentError("event_type is required");
  if (req.severity() == v1::SEVERITY_UNSPECIFIED || !v1::Severity_IsValid(req.severity())) {
    return absl::InvalidArgumentError("severity is required: INFO, WARNING or CRITICAL");
  }
  std::vector<std::string> recipients;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& e : {req.session().owner_email()}) {
    if (!e.empty() && seen.insert(e).second) recipients.push_back(e);
  }
  for (const auto& e : emails) {
    if (!e.empty() && seen.insert(e).second) recipients.push_back(e);
  }
  RaiseOutcome out;
  absl::Status st;
  // Two replicas raising one new key at once: the loser's insert hits the unique index; its
  // second try folds into the winner's alert.
  for (int attempt = 0; attempt < 2; ++attempt) {
    out = RaiseOutcome{};
    st = pool_.Transact("raise alert", [&](pqxx::work& w) {
      auto open = w.exec_params(absl::StrCat("SELECT ", AlertColumns(),
                                             " FROM alert_alerts WHERE dedup_key = $1 AND"
                                             " status <> 'STATUS_RESOLVED' FOR UPDATE"),
                                req.dedup_key());
      const int64_t at = absl::ToUnixMicros(now);
      if (open.empty()) {
        const bool silenced = Silenced(w, req, now);
        const std::string id = PgOne(w.exec_params(
            absl::StrCat("INSERT INTO alert_alerts (dedup_key, event_type, severity, status,"
                         " summary, session, session_id, tenant_id, raised_at, updated_at)"
                         " VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'), $7, $8, ",
                         PgTime(9), ", ", PgTime(9), ") RETURNING id::text"),
            req.dedup_key(), req.event_type(), v1::Severity_Name(req.severity()),
            v1::Alert::Status_Name(silenced ? v1::Alert::STATUS_SUPPRESSED
                                            : v1::Alert::STATUS_OPEN),
            req.summary(), PgHex(req.session().SerializeAsString()), req.session().session_id(),
            req.session().tenant_id(), at))[0]
                                   .as<std::string>();
        out.created = true;
        if (!silenced) {
          v1::Alert a;
          a.set_id(id);
          a.set_event_type(req.event_type());
          *a.mutable_session() = req.session();  // its tenant picks the endpoints
          Notify(w, a, v1::Delivery::KIND_NOTIFY, recipients, now);
          w.exec_params(absl::StrCat("UPDATE alert_alerts SET last_notified_at = ", PgTime(2),
                                     " WHERE id = $1::uuid"),
                        id, at);
        }
        out.alert = LoadAlert(w, id);
        return;
      }
      const v1::Alert current = ToAlert(open[0]);
      if (req.severity() > current.severity()) {
        // An escalation: the alert takes the new severity, type and facts, and notifies again
        // (unless a silence still holds it).
        const bool silenced = Silenced(w, req, now);
        w.exec_params(
            absl::StrCat("UPDATE alert_alerts SET severity = $2, event_type = $3, summary = $4,"
                         " session = decode($5, 'hex'), status = $6, updated_at = ",
                         PgTime(7), ", raise_count = raise_count + 1 WHERE id = $1::uuid"),
            current.id(), v1::Severity_Name(req.severity()), req.event_type(), req.summary(),
            PgHex(req.session().SerializeAsString()),
            v1::Alert::Status_Name(silenced ? v1::Alert::STATUS_SUPPRESSED
                                            : v1::Alert::STATUS_OPEN),
            at);
        out.escalated = true;
        if (!silenced) {
          v1::Alert a = current;
          a.set_event_type(req.event_type());
          Notify(w, a, v1::Delivery::KIND_NOTIFY, recipients, now);
          w.exec_params(absl::StrCat("UPDATE alert_alerts SET last_notified_at = ", PgTime(2),
                                     " WHERE id = $1::uuid"),
                        current.id(), at);
        }
      } else {
        w.exec_params(absl::StrCat("UPDATE alert_alerts SET raise_count = raise_count + 1,"
                                   " updated_at = ",
                                   PgTime(2), " WHERE id = $1::uuid"),
                      current.id(), at);
      }
      out.alert = LoadAlert(w, current.id());
    });
    if (!absl::IsAlreadyExists(st)) break;
  }
  WAS_RETURN_IF_ERROR(st);
  return out;
}

absl::StatusOr<v1::Alert> PgAlertStore::Resolve(const std::string& dedup_key,
                                                const std::string& note, absl::Time now,
                                                const std::string& tenant) {
  if (dedup_key.empty()) return absl::InvalidArgumentError("dedup_key is required");
  std::optional<v1::Alert> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("resolve alert", [&](pqxx::work& w) {
    auto open = w.exec_params(absl::StrCat("SELECT ", AlertColumns(),
                                           " FROM alert_alerts WHERE dedup_key = $1 AND"
                                           " status <> 'STATUS_RESOLVED'"
                                           " AND ($2 = '' OR tenant_id = $2) FOR UPDATE"),
                              dedup_key, tenant);
    if (open.empty()) {
      auto last = w.exec_params(
          "SELECT id::text FROM alert_alerts WHERE dedup_key = $1"
          " AND ($2 = '' OR tenant_id = $2) ORDER BY raised_at DESC LIMIT 1",
          dedup_key, tenant);
      if (!last.empty()) out = LoadAlert(w, last[0][0].as<std::string>());
      return;
    }
    const v1::Alert current = ToAlert(open[0]);
    w.exec_params(absl::StrCat("UPDATE alert_alerts SET status = 'STATUS_RESOLVED', resolved_at = ",
                               PgTime(2), ", updated_at = ", PgTime(2),
                               ", resolve_note = $3 WHERE id = $1::uuid"),
                  current.id(), absl::ToUnixMicros(now), note);
    if (current.status() == v1::Alert::STATUS_OPEN) {
      // The resolved notice goes wherever the alert was notified.
      w.exec_params(
          absl::StrCat("INSERT INTO alert_deliveries (alert_id, channel, kind, target, status,"
                       " next_attempt_at, created_at, tenant_id)"
                       " SELECT DISTINCT alert_id, channel, 'KIND_RESOLVED', target,"
                       " 'STATUS_PENDING', ",
                       PgTime(2), ", ", PgTime(2), ", tenant_id",
                       " FROM alert_deliveries WHERE alert_id = $1::uuid AND kind = 'KIND_NOTIFY'"),
          current.id(), absl::ToUnixMicros(now));
    }
    out = LoadAlert(w, current.id());
  }));
  if (!out) return absl::NotFoundError(absl::StrCat("no alert ever had dedup key ", dedup_key));
  return *std::move(out);
}

absl::StatusOr<v1::Alert> PgAlertStore::Get(const std::string& id) {
  if (!IsUuid(id))
    return absl::InvalidArgumentError(absl::StrCat("alert id ", id, " is not a UUID"));
  std::optional<v1::Alert> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("get alert", [&](pqxx::work& w) {
    if (!w.exec_params("SELECT 1 FROM alert_alerts WHERE id = $1::uuid", id).empty()) {
      out = LoadAlert(w, id);
    }
  }));
  if (!out) return absl::NotFoundError(absl::StrCat("no alert ", id));
  return *std::move(out);
}

absl::StatusOr<AlertPage> PgAlertStore::List(const AlertFilter& filter, int page_size,
                                             const std::string& page_token) {
  if (page_size < 1 || page_size > 500) {
    return absl::InvalidArgumentError("page_size must be 1..500");
  }
  // The token is "<raised_at micros>:<id>" of the last alert of the previous page.
  int64_t after_micros = 0;
  std::string after_id;
  if (!page_token.empty()) {
    std::vector<std::string> parts = absl::StrSplit(page_token, absl::MaxSplits(':', 1));
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &after_micros) || !IsUuid(parts[1])) {
      return absl::InvalidArgumentError("bad page_token");
    }
    after_id = parts[1];
  }
  std::string statuses;  // "STATUS_OPEN,STATUS_RESOLVED": enum names have no commas
  for (auto s : filter.statuses) {
    absl::StrAppend(&statuses, statuses.empty() ? "" : ",", v1::Alert::Status_Name(s));
  }
  AlertPage page;
  WAS_RETURN_IF_ERROR(pool_.Transact("list alerts", [&](pqxx::work& w) {
    auto rows =
        w.exec_params(absl::StrCat("SELECT id::text FROM alert_alerts WHERE"
                                   " ($1 = '' OR session_id = $1) AND ($2 = '' OR event_type = $2)"
                                   " AND ($3 = '' OR status = ANY(string_to_array($3, ',')))"
                                   " AND ($4 = '' OR (raised_at, id) < (",
                                   PgTime(5),
                                   ", NULLIF($4, '')::uuid)) AND ($7 = '' OR tenant_id = $7)"
                                   " ORDER BY raised_at DESC, id DESC LIMIT $6"),
                      filter.session_id, filter.event_type, statuses, after_id, after_micros,
                      page_size + 1, filter.tenant_id);
    for (int i = 0; i < std::min<int>(page_size, rows.size()); ++i) {
      page.alerts.push_back(LoadAlert(w, rows[i][0].as<std::string>()));
    }
    if (static_cast<int>(rows.size()) > page_size) {
      const v1::Alert& last = page.alerts.back();
      page.next_page_token =
          absl::StrCat(absl::ToUnixMicros(FromProto(last.raised_at())), ":", last.id());
    }
  }));
  return page;
}

absl::StatusOr<int> PgAlertStore::Remind(absl::Duration interval, absl::Time now, int limit) {
  int reminded = 0;
  WAS_RETURN_IF_ERROR(pool_.Transact("remind", [&](pqxx::work& w) {
    // SKIP LOCKED: replicas running this at once remind each alert once.
    auto due = w.exec_params(
        absl::StrCat("SELECT id::text FROM alert_alerts WHERE status = 'STATUS_OPEN' AND"
                     " severity = 'SEVERITY_CRITICAL' AND last_notified_at <= ",
                     PgTime(1), " ORDER BY last_notified_at LIMIT $2 FOR UPDATE SKIP LOCKED"),
        absl::ToUnixMicros(now - interval), limit);
    for (const auto& row : due) {
      const std::string id = row[0].as<std::string>();
      w.exec_params(
          absl::StrCat("INSERT INTO alert_deliveries (alert_id, channel, kind, target, status,"
                       " next_attempt_at, created_at, tenant_id)"
                       " SELECT DISTINCT alert_id, channel, 'KIND_REMINDER', target,"
                       " 'STATUS_PENDING', ",
                       PgTime(2), ", ", PgTime(2), ", tenant_id",
                       " FROM alert_deliveries WHERE alert_id = $1::uuid AND kind = 'KIND_NOTIFY'"),
          id, absl::ToUnixMicros(now));
      w.exec_params(absl::StrCat("UPDATE alert_alerts SET last_notified_at = ", PgTime(2),
                                 " WHERE id = $1::uuid"),
                    id, absl::ToUnixMicros(now));
      ++reminded;
    }
  }));
  return reminded;
}

absl::StatusOr<v1::Silence> PgAlertStore::CreateSilence(const v1::CreateSilenceRequest& req,
                                                        absl::Time now) {
  if (req.session_id().empty() && req.tenant_id().empty() && req.event_type().empty()) {
    return absl::InvalidArgumentError(
        "a silence names a session, a tenant or an event type (or several)");
  }
  if (!req.has_until() || FromProto(req.until()) <= now) {
    return absl::InvalidArgumentError("until is required and in the future");
  }
  std::optional<v1::Silence> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("create silence", [&](pqxx::work& w) {
    out = ToSilence(PgOne(w.exec_params(
        absl::StrCat("INSERT INTO alert_silences (session_id, tenant_id, event_type, until,"
                     " comment, created_at) VALUES ($1, $2, $3, ",
                     PgTime(4), ", $5, ", PgTime(6), ") RETURNING ", SilenceColumns()),
        req.session_id(), req.tenant_id(), req.event_type(),
        absl::ToUnixMicros(FromProto(req.until())), req.comment(), absl::ToUnixMicros(now))));
  }));
  return *std::move(out);
}

absl::StatusOr<std::vector<v1::Silence>> PgAlertStore::ListSilences(bool include_expired,
                                                                    absl::Time now,
                                                                    const std::string& tenant) {
  std::vector<v1::Silence> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list silences", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const auto& r : n.exec_params(
             absl::StrCat("SELECT ", SilenceColumns(), " FROM alert_silences WHERE ($1 OR until > ",
                          PgTime(2), ") AND ($3 = '' OR tenant_id = $3) ORDER BY created_at, id"),
             include_expired, absl::ToUnixMicros(now), tenant)) {
      out.push_back(ToSilence(r));
    }
  }));
  return out;
}

absl::Status PgAlertStore::DeleteSilence(const std::string& id, const std::string& tenant) {
  WAS_RETURN_IF_ERROR(CheckUuid(id, "silence"));
  bool found = false;
  WAS_RETURN_IF_ERROR(pool_.Run("delete silence", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    found = n.exec_params(
                 "DELETE FROM alert_silences WHERE id = $1::uuid"
                 " AND ($2 = '' OR tenant_id = $2)",
                 id, tenant)
                .affected_rows() > 0;
  }));
  if (!found) return absl::NotFoundError(absl::StrCat("no silence ", id));
  return absl::OkStatus();
}

}  // namespace wasentinel::alert
