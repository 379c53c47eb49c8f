#include "pg_alert_store.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {
namespace {

// Timestamps travel as Unix microseconds both ways (PgTime, PgEpochMicros); enums as their
// proto names.

const std::string& AlertColumns() {
  static const std::string* cols = new std::string(
      absl::StrCat("id::text, dedup_key, event_type, severity, status, summary, session, ",
                   PgEpochMicros("raised_at"), ", ", PgEpochMicros("updated_at"), ", ",
                   PgEpochMicros("resolved_at"), ", raise_count"));
  return *cols;
}

const std::string& DeliveryColumns() {
  static const std::string* cols = new std::string(absl::StrCat(
      "id::text, alert_id::text, channel, kind, target, status, attempts, last_error, ",
      PgEpochMicros("next_attempt_at"), ", ", PgEpochMicros("created_at"), ", ",
      PgEpochMicros("sent_at")));
  return *cols;
}

google::protobuf::Timestamp TimeOf(const pqxx::field& f) {
  return ToProto(absl::FromUnixMicros(f.as<int64_t>()));
}

template <class Enum>
Enum EnumOf(const pqxx::field& f, bool (*parse)(const std::string&, Enum*)) {
  Enum e{};
  parse(f.as<std::string>(), &e);
  return e;
}

v1::Alert ToAlert(const pqxx::row& r) {
  v1::Alert a;
  a.set_id(r[0].as<std::string>());
  a.set_dedup_key(r[1].as<std::string>());
  a.set_event_type(r[2].as<std::string>());
  a.set_severity(EnumOf<v1::Severity>(r[3], &v1::Severity_Parse));
  a.set_status(EnumOf<v1::Alert::Status>(r[4], &v1::Alert::Status_Parse));
  a.set_summary(r[5].as<std::string>());
  if (!r[6].is_null()) {
    pqxx::binarystring blob(r[6]);
    a.mutable_session()->ParseFromArray(blob.data(), static_cast<int>(blob.size()));
  }
  *a.mutable_raised_at() = TimeOf(r[7]);
  *a.mutable_updated_at() = TimeOf(r[8]);
  if (!r[9].is_null()) *a.mutable_resolved_at() = TimeOf(r[9]);
  a.set_raise_count(r[10].as<int>());
  return a;
}

v1::Delivery ToDelivery(const pqxx::row& r) {
  v1::Delivery d;
  d.set_id(r[0].as<std::string>());
  d.set_alert_id(r[1].as<std::string>());
  d.set_channel(EnumOf<v1::Delivery::Channel>(r[2], &v1::Delivery::Channel_Parse));
  d.set_kind(EnumOf<v1::Delivery::Kind>(r[3], &v1::Delivery::Kind_Parse));
  d.set_target(r[4].as<std::string>());
  d.set_status(EnumOf<v1::Delivery::Status>(r[5], &v1::Delivery::Status_Parse));
  d.set_attempts(r[6].as<int>());
  d.set_last_error(r[7].as<std::string>());
  *d.mutable_next_attempt_at() = TimeOf(r[8]);
  *d.mutable_created_at() = TimeOf(r[9]);
  if (!r[10].is_null()) *d.mutable_sent_at() = TimeOf(r[10]);
  return d;
}

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

void AddDelivery(pqxx::work& w, const std::string& alert_id, v1::Delivery::Channel channel,
                 v1::Delivery::Kind kind, const std::string& target, absl::Time now) {
  w.exec_params(
      absl::StrCat("INSERT INTO alert_deliveries (alert_id, channel, kind, target, status,"
                   " next_attempt_at, created_at) VALUES ($1::uuid, $2, $3, $4,"
                   " 'STATUS_PENDING', ",
                   PgTime(5), ", ", PgTime(5), ")"),
      alert_id, v1::Delivery::Channel_Name(channel), v1::Delivery::Kind_Name(kind), target,
      absl::ToUnixMicros(now));
}

// Notifications of `alert` (kind) to every recipient and every endpoint that takes its type.
void Notify(pqxx::work& w, const v1::Alert& alert, v1::Delivery::Kind kind,
            const std::vector<std::string>& emails, absl::Time now) {
  for (const auto& email : emails) {
    AddDelivery(w, alert.id(), v1::Delivery::CHANNEL_EMAIL, kind, email, now);
  }
  for (const auto& row :
       w.exec_params("SELECT id::text FROM alert_endpoints WHERE enabled AND"
                     " (cardinality(event_types) = 0 OR $1 = ANY(event_types))"
                     " AND (tenant_id = '' OR tenant_id = $2) ORDER BY created_at",
                     alert.event_type(), alert.session().tenant_id())) {
    AddDelivery(w, alert.id(), v1::Delivery::CHANNEL_WEBHOOK, kind, row[0].as<std::string>(), now);
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

}  // namespace

const std::vector<Migration>& PgAlertStore::Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, "alerts, deliveries (the outbox), webhook endpoints, silences", R"sql(
CREATE TABLE alert_alerts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  dedup_key text NOT NULL,
  event_type text NOT NULL,
  severity text NOT NULL,              -- alert.v1.Severity name
  status text NOT NULL,                -- alert.v1.Alert.Status name
  summary text NOT NULL DEFAULT '',
  session bytea,                       -- alert.v1.SessionFacts
  session_id text NOT NULL DEFAULT '',
  tenant_id text NOT NULL DEFAULT '',
  raised_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  resolved_at timestamptz,
  resolve_note text NOT NULL DEFAULT '',
  raise_count integer NOT NULL DEFAULT 1
);
-- One alert per dedup key until it is resolved.
CREATE UNIQUE INDEX alert_alerts_unresolved_key ON alert_alerts (dedup_key)
  WHERE status <> 'STATUS_RESOLVED';
CREATE INDEX alert_alerts_key ON alert_alerts (dedup_key, raised_at);
CREATE INDEX alert_alerts_raised ON alert_alerts (raised_at, id);
CREATE INDEX alert_alerts_session ON alert_alerts (session_id, raised_at);

CREATE TABLE alert_deliveries (
  id bigserial PRIMARY KEY,
  alert_id uuid NOT NULL REFERENCES alert_alerts (id) ON DELETE CASCADE,
  channel text NOT NULL,               -- alert.v1.Delivery.Channel name
  kind text NOT NULL,                  -- alert.v1.Delivery.Kind name
  target text NOT NULL,                -- e-mail address or webhook endpoint id
  status text NOT NULL,                -- alert.v1.Delivery.Status name
  attempts integer NOT NULL DEFAULT 0,
  last_error text NOT NULL DEFAULT '',
  next_attempt_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  sent_at timestamptz,
  claimed_by text,                     -- the dispatcher working on it …
  claimed_until timestamptz            -- … until then; after, another may take it
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, id);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
  WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED');

CREATE TABLE alert_endpoints (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url text NOT NULL,
  event_types text[] NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  rate_limit_per_second double precision NOT NULL DEFAULT 0,
  description text NOT NULL DEFAULT '',
  secret_key_id text NOT NULL,         -- sealing key id of secret
  secret bytea NOT NULL,               -- sealed "whsec_…"
  previous_secret_key_id text,
  previous_secret bytea,
  previous_valid_until timestamptz,
  created_at timestamptz NOT NULL,
  secret_rotated_at timestamptz
);

CREATE TABLE alert_silences (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  session_id text NOT NULL DEFAULT '',
  tenant_id text NOT NULL DEFAULT '',
  event_type text NOT NULL DEFAULT '',
  until timestamptz NOT NULL,
  comment text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL
);
)sql"},
      {2, "reminders of open critical alerts", R"sql(
ALTER TABLE alert_alerts ADD COLUMN last_notified_at timestamptz;
UPDATE alert_alerts SET last_notified_at = updated_at WHERE status = 'STATUS_OPEN';
CREATE INDEX alert_alerts_remind ON alert_alerts (last_notified_at)
  WHERE status = 'STATUS_OPEN' AND severity = 'SEVERITY_CRITICAL';
)sql"},
      {3, "webhook endpoints of one tenant", R"sql(
-- '' : every tenant's alerts (an operator's endpoint); else only that tenant's.
ALTER TABLE alert_endpoints ADD COLUMN tenant_id text NOT NULL DEFAULT '';
CREATE INDEX alert_alerts_tenant ON alert_alerts (tenant_id, raised_at);
)sql"},
  };
  return *migrations;
}

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
                       " next_attempt_at, created_at)"
                       " SELECT DISTINCT alert_id, channel, 'KIND_RESOLVED', target,"
                       " 'STATUS_PENDING', ",
                       PgTime(2), ", ", PgTime(2),
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

namespace {

const std::string& EndpointColumns() {
  static const std::string* cols = new std::string(absl::StrCat(
      "id::text, url, array_to_string(event_types, ','), enabled, rate_limit_per_second,"
      " description, ",
      PgEpochMicros("created_at"), ", ", PgEpochMicros("secret_rotated_at"),
      ", secret_key_id, secret, coalesce(previous_secret_key_id, ''), previous_secret, ",
      PgEpochMicros("previous_valid_until"), ", tenant_id"));
  return *cols;
}

EndpointRecord ToEndpoint(const pqxx::row& r) {
  EndpointRecord e;
  v1::WebhookEndpoint& p = e.endpoint;
  p.set_id(r[0].as<std::string>());
  p.set_url(r[1].as<std::string>());
  for (auto t : absl::StrSplit(r[2].as<std::string>(), ',', absl::SkipEmpty())) {
    p.add_event_types(std::string(t));
  }
  p.set_enabled(r[3].as<bool>());
  p.set_rate_limit_per_second(r[4].as<double>());
  p.set_description(r[5].as<std::string>());
  *p.mutable_created_at() = TimeOf(r[6]);
  if (!r[7].is_null()) *p.mutable_secret_rotated_at() = TimeOf(r[7]);
  e.secret_key_id = r[8].as<std::string>();
  pqxx::binarystring secret(r[9]);
  e.sealed_secret = secret.str();
  e.previous_secret_key_id = r[10].as<std::string>();
  if (!r[11].is_null()) e.sealed_previous_secret = pqxx::binarystring(r[11]).str();
  if (!r[12].is_null()) e.previous_valid_until = absl::FromUnixMicros(r[12].as<int64_t>());
  p.set_tenant_id(r[13].as<std::string>());
  return e;
}

}  // namespace

absl::StatusOr<v1::WebhookEndpoint> PgAlertStore::CreateEndpoint(
    const v1::CreateWebhookEndpointRequest& req, const std::string& secret_key_id,
    const std::string& sealed_secret, absl::Time now, const std::string& tenant) {
  std::string types;  // event types have no commas (checked by the caller)
  for (const auto& t : req.event_types()) absl::StrAppend(&types, types.empty() ? "" : ",", t);
  std::optional<v1::WebhookEndpoint> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("create webhook endpoint", [&](pqxx::work& w) {
    out =
        ToEndpoint(PgOne(w.exec_params(
                       absl::StrCat("INSERT INTO alert_endpoints (url, event_types,"
                                    " rate_limit_per_second, description, secret_key_id, secret,"
                                    " created_at, tenant_id) VALUES ($1,"
                                    " coalesce(string_to_array(NULLIF($2, ''), ','), '{}'), $3, $4,"
                                    " $5, decode($6, 'hex'), ",
                                    PgTime(7), ", $8) RETURNING ", EndpointColumns()),
                       req.url(), types, req.rate_limit_per_second(), req.description(),
                       secret_key_id, PgHex(sealed_secret), absl::ToUnixMicros(now), tenant)))
            .endpoint;
  }));
  return *std::move(out);
}

absl::StatusOr<std::vector<v1::WebhookEndpoint>> PgAlertStore::ListEndpoints(
    const std::string& tenant) {
  std::vector<v1::WebhookEndpoint> out;
  WAS_RETURN_IF_ERROR(pool_.Run("list webhook endpoints", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    for (const auto& row :
         n.exec_params(absl::StrCat("SELECT ", EndpointColumns(),
                                    " FROM alert_endpoints WHERE $1 = '' OR tenant_id = $1"
                                    " ORDER BY created_at, id"),
                       tenant)) {
      out.push_back(ToEndpoint(row).endpoint);
    }
  }));
  return out;
}

absl::StatusOr<std::vector<ClaimedDelivery>> PgAlertStore::Claim(const std::string& worker,
                                                                 absl::Time now,
                                                                 absl::Duration lease, int limit) {
  std::vector<ClaimedDelivery> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("claim deliveries", [&](pqxx::work& w) {
    auto rows = w.exec_params(
        absl::StrCat("UPDATE alert_deliveries SET claimed_by = $1, claimed_until = ", PgTime(3),
                     " WHERE id IN (SELECT id FROM alert_deliveries"
                     " WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED') AND next_attempt_at <= ",
                     PgTime(2), " AND (claimed_until IS NULL OR claimed_until <= ", PgTime(2),
                     ") ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
                     " RETURNING ",
                     DeliveryColumns()),
        worker, absl::ToUnixMicros(now), absl::ToUnixMicros(now + lease), limit);
    absl::flat_hash_map<std::string, v1::Alert> alerts;
    absl::flat_hash_map<std::string, std::optional<EndpointRecord>> endpoints;
    for (const auto& row : rows) {
      ClaimedDelivery c;
      c.delivery = ToDelivery(row);
      auto [a, fresh] = alerts.try_emplace(c.delivery.alert_id());
      if (fresh) {
        a->second = ToAlert(PgOne(w.exec_params(
            absl::StrCat("SELECT ", AlertColumns(), " FROM alert_alerts WHERE id = $1::uuid"),
            c.delivery.alert_id())));
      }
      c.alert = a->second;
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
    held = !n.exec_params(absl::StrCat("UPDATE alert_deliveries SET claimed_until = ", PgTime(3),
                                       " WHERE id = $1 AND claimed_by = $2"
                                       " AND status IN ('STATUS_PENDING', 'STATUS_FAILED')"
                                       " RETURNING id"),
                          numeric, claimer, absl::ToUnixMicros(now + lease))
                .empty();
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
    switch (result.kind) {
      case AttemptResult::kSent:
        n.exec_params(absl::StrCat("UPDATE alert_deliveries SET status = 'STATUS_SENT',"
                                   " attempts = attempts + 1, last_error = '', sent_at = ",
                                   PgTime(2),
                                   ", claimed_by = NULL, claimed_until = NULL"
                                   " WHERE id = $1 AND status <> 'STATUS_SENT'"),
                      numeric, absl::ToUnixMicros(now));
        return;
      case AttemptResult::kRetry:
        n.exec_params(absl::StrCat("UPDATE alert_deliveries SET status = 'STATUS_FAILED',"
                                   " attempts = attempts + 1, last_error = $2, next_attempt_at = ",
                                   PgTime(3),
                                   ", claimed_by = NULL, claimed_until = NULL"
                                   " WHERE id = $1 AND status <> 'STATUS_SENT'"),
                      numeric, result.error, absl::ToUnixMicros(result.next_attempt_at));
        return;
      case AttemptResult::kDefer:
        n.exec_params(
            absl::StrCat(
                "UPDATE alert_deliveries SET last_error = $2, next_attempt_at = ", PgTime(3),
                ", claimed_by = NULL, claimed_until = NULL"
                " WHERE id = $1 AND status <> 'STATUS_SENT'"),
            numeric, result.error, absl::ToUnixMicros(result.next_attempt_at));
        return;
      case AttemptResult::kDead:
        n.exec_params(
            "UPDATE alert_deliveries SET status = 'STATUS_DEAD',"
            " attempts = attempts + 1, last_error = $2, claimed_by = NULL,"
            " claimed_until = NULL WHERE id = $1 AND status <> 'STATUS_SENT'",
            numeric, result.error);
        return;
    }
  });
}

namespace {

absl::Status CheckUuid(const std::string& id, std::string_view what) {
  if (IsUuid(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(Sv(what), " id ", id, " is not a UUID"));
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

absl::StatusOr<v1::WebhookEndpoint> PgAlertStore::UpdateEndpoint(
    const v1::UpdateWebhookEndpointRequest& req, const std::string& tenant) {
  WAS_RETURN_IF_ERROR(CheckUuid(req.id(), "webhook endpoint"));
  std::string types;
  for (const auto& t : req.event_types()) absl::StrAppend(&types, types.empty() ? "" : ",", t);
  std::optional<v1::WebhookEndpoint> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("update webhook endpoint", [&](pqxx::work& w) {
    auto r = w.exec_params(
        absl::StrCat(
            "UPDATE alert_endpoints SET url = coalesce($2, url),"
            " event_types = CASE WHEN $3 THEN coalesce(string_to_array(NULLIF($4, ''), ','), '{}')"
            " ELSE event_types END, enabled = coalesce($5, enabled),"
            " rate_limit_per_second = coalesce($6, rate_limit_per_second),"
            " description = coalesce($7, description) WHERE id = $1::uuid"
            " AND ($8 = '' OR tenant_id = $8) RETURNING ",
            EndpointColumns()),
        req.id(), req.has_url() ? std::optional<std::string>(req.url()) : std::nullopt,
        req.replace_event_types(), types,
        req.has_enabled() ? std::optional<bool>(req.enabled()) : std::nullopt,
        req.has_rate_limit_per_second() ? std::optional<double>(req.rate_limit_per_second())
                                        : std::nullopt,
        req.has_description() ? std::optional<std::string>(req.description()) : std::nullopt,
        tenant);
    if (!r.empty()) out = ToEndpoint(r[0]).endpoint;
  }));
  if (!out) return absl::NotFoundError(absl::StrCat("no webhook endpoint ", req.id()));
  return *std::move(out);
}

absl::Status PgAlertStore::DeleteEndpoint(const std::string& id, const std::string& tenant) {
  WAS_RETURN_IF_ERROR(CheckUuid(id, "webhook endpoint"));
  bool found = false;
  WAS_RETURN_IF_ERROR(pool_.Run("delete webhook endpoint", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    found = n.exec_params(
                 "DELETE FROM alert_endpoints WHERE id = $1::uuid"
                 " AND ($2 = '' OR tenant_id = $2)",
                 id, tenant)
                .affected_rows() > 0;
  }));
  if (!found) return absl::NotFoundError(absl::StrCat("no webhook endpoint ", id));
  return absl::OkStatus();
}

absl::StatusOr<v1::WebhookEndpoint> PgAlertStore::RotateSecret(
    const std::string& id, const std::string& secret_key_id, const std::string& sealed_secret,
    absl::Time previous_valid_until, absl::Time now, const std::string& tenant) {
  WAS_RETURN_IF_ERROR(CheckUuid(id, "webhook endpoint"));
  std::optional<v1::WebhookEndpoint> out;
  WAS_RETURN_IF_ERROR(pool_.Transact("rotate webhook secret", [&](pqxx::work& w) {
    auto r = w.exec_params(
        absl::StrCat(
            "UPDATE alert_endpoints SET previous_secret_key_id = secret_key_id,"
            " previous_secret = secret, previous_valid_until = ",
            PgTime(4),
            ", secret_key_id = $2, secret = decode($3, 'hex'), secret_rotated_at = ", PgTime(5),
            " WHERE id = $1::uuid AND ($6 = '' OR tenant_id = $6) RETURNING ", EndpointColumns()),
        id, secret_key_id, PgHex(sealed_secret), absl::ToUnixMicros(previous_valid_until),
        absl::ToUnixMicros(now), tenant);
    if (!r.empty()) out = ToEndpoint(r[0]).endpoint;
  }));
  if (!out) return absl::NotFoundError(absl::StrCat("no webhook endpoint ", id));
  return *std::move(out);
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
        n.exec_params(absl::StrCat("SELECT ", DeliveryColumns(),
                                   " FROM alert_deliveries WHERE ($1 = '' OR channel = $1)"
                                   " AND ($2 = '' OR status = ANY(string_to_array($2, ',')))"
                                   " AND ($3 = '' OR alert_id = NULLIF($3, '')::uuid)"
                                   " AND ($4 = 0 OR id < $4) AND ($6 = '' OR alert_id IN"
                                   " (SELECT id FROM alert_alerts WHERE tenant_id = $6))"
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
    exists = !w.exec_params(
                   "SELECT 1 FROM alert_deliveries d JOIN alert_alerts a"
                   " ON a.id = d.alert_id WHERE d.id = $1 AND ($2 = '' OR"
                   " a.tenant_id = $2)",
                   numeric, tenant)
                  .empty();
    if (!exists) return;
    auto r = w.exec_params(
        absl::StrCat("UPDATE alert_deliveries SET status = 'STATUS_PENDING', attempts = 0,"
                     " next_attempt_at = ",
                     PgTime(2),
                     ", claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND status IN"
                     " ('STATUS_DEAD', 'STATUS_FAILED') RETURNING ",
                     DeliveryColumns()),
        numeric, absl::ToUnixMicros(now));
    if (!r.empty()) out = ToDelivery(r[0]);
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
                 " FROM alert_deliveries WHERE created_at >= ",
                 PgTime(1),
                 " AND ($2 = '' OR alert_id IN (SELECT id FROM alert_alerts WHERE tenant_id = $2))"
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
    auto depth = n.exec_params(
        absl::StrCat("SELECT count(*), ", PgEpochMicros("min(created_at)"),
                     " FROM alert_deliveries WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED')"
                     " AND ($1 = '' OR alert_id IN"
                     " (SELECT id FROM alert_alerts WHERE tenant_id = $1))"),
        tenant)[0];
    out.set_outbox_depth(depth[0].as<int64_t>());
    if (!depth[1].is_null()) {
      *out.mutable_oldest_pending_age() =
          ToProto(now - absl::FromUnixMicros(depth[1].as<int64_t>()));
    }
  }));
  return out;
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
                       " next_attempt_at, created_at)"
                       " SELECT DISTINCT alert_id, channel, 'KIND_REMINDER', target,"
                       " 'STATUS_PENDING', ",
                       PgTime(2), ", ", PgTime(2),
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

}  // namespace wasentinel::alert
