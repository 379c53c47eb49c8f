// PgAlertStore (pg_alert_store.h): the schema: migrations, and the column lists and row readers.
#include "pg_alert_store.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "pg_alert_store_internal.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::alert {
namespace internal {

const std::string& AlertColumns() {
  static const std::string* cols = new std::string(
      absl::StrCat("id::text, dedup_key, event_type, severity, status, summary, session, ",
                   PgEpochMicros("raised_at"), ", ", PgEpochMicros("updated_at"), ", ",
                   PgEpochMicros("resolved_at"), ", raise_count"));
  return *cols;
}

const std::string& DeliveryTables() {
  static const std::string* tables = [] {
    const char* columns =
        "id, alert_id, channel, kind, target, status, attempts, last_error, next_attempt_at,"
        " created_at, sent_at, event_type, tenant_id";
    return new std::string(absl::StrCat("(SELECT ", columns,
                                        " FROM alert_deliveries UNION ALL SELECT ", columns,
                                        " FROM alert_message_deliveries) AS deliveries"));
  }();
  return *tables;
}

const std::string& DeliveryColumns() {
  static const std::string* cols = new std::string(absl::StrCat(
      "id::text, coalesce(alert_id::text, ''), channel, kind, target, status, attempts,"
      " last_error, ",
      PgEpochMicros("next_attempt_at"), ", ", PgEpochMicros("created_at"), ", ",
      PgEpochMicros("sent_at"), ", event_type"));
  return *cols;
}

google::protobuf::Timestamp TimeOf(const pqxx::field& f) {
  return ToProto(absl::FromUnixMicros(f.as<int64_t>()));
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
  d.set_event_type(r[11].as<std::string>());
  return d;
}

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

absl::Status CheckUuid(const std::string& id, std::string_view what) {
  if (IsUuid(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(Sv(what), " id ", id, " is not a UUID"));
}

}  // namespace internal

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
      {4, "message events in the outbox, and the cursor of the message feed", R"sql(
-- Deliveries carry their tenant (tenant-scoped listing without a join) and event type.
ALTER TABLE alert_deliveries ADD COLUMN event_type text NOT NULL DEFAULT '';
ALTER TABLE alert_deliveries ADD COLUMN tenant_id text NOT NULL DEFAULT '';
UPDATE alert_deliveries d SET tenant_id = a.tenant_id FROM alert_alerts a
  WHERE a.id = d.alert_id AND a.tenant_id <> '';
-- A replica of the previous version (a rolling upgrade) inserts alert deliveries without the
-- tenant: it is taken from the alert.
CREATE FUNCTION alert_deliveries_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.tenant_id = '' AND NEW.alert_id IS NOT NULL THEN
    SELECT a.tenant_id INTO NEW.tenant_id FROM alert_alerts a WHERE a.id = NEW.alert_id;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER alert_deliveries_tenant BEFORE INSERT ON alert_deliveries
  FOR EACH ROW EXECUTE FUNCTION alert_deliveries_tenant();
CREATE INDEX alert_deliveries_tenant ON alert_deliveries (tenant_id, id);

-- The outbox's second table: deliveries of message events (kind KIND_MESSAGE), which belong to
-- no alert. The same columns as alert_deliveries (alert_id always NULL) and ids from the same
-- sequence, so a delivery id names one row of either and one reader serves both; besides, the
-- event's key ("<type> <session> <chat> <message id> [<status>]": one delivery per endpoint and
-- key) and its JSON "data", sealed. Replicas of the previous version never see these rows.
CREATE TABLE alert_message_deliveries (
  id bigint PRIMARY KEY DEFAULT nextval('alert_deliveries_id_seq'),
  alert_id uuid,
  channel text NOT NULL,
  kind text NOT NULL,
  target text NOT NULL,                -- the webhook endpoint id
  status text NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  last_error text NOT NULL DEFAULT '',
  next_attempt_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  sent_at timestamptz,
  claimed_by text,
  claimed_until timestamptz,
  event_type text NOT NULL,
  tenant_id text NOT NULL DEFAULT '',
  event_key text NOT NULL,
  payload_key_id text NOT NULL,
  payload bytea NOT NULL
);
CREATE UNIQUE INDEX alert_message_deliveries_event ON alert_message_deliveries (target, event_key);
CREATE INDEX alert_message_deliveries_due ON alert_message_deliveries (next_attempt_at)
  WHERE status IN ('STATUS_PENDING', 'STATUS_FAILED');
CREATE INDEX alert_message_deliveries_done ON alert_message_deliveries (created_at)
  WHERE status IN ('STATUS_SENT', 'STATUS_DEAD');
CREATE INDEX alert_message_deliveries_tenant ON alert_message_deliveries (tenant_id, id);

-- Followed streams of session-service: the last sequence handled (NULL: none yet) and the
-- replica following it until held_until (a lease; the cursor is its fencing token).
CREATE TABLE alert_feeds (
  name text PRIMARY KEY,
  after_sequence bigint,
  holder text,
  held_until timestamptz
);
INSERT INTO alert_feeds (name) VALUES ('messages');
)sql"},
  };
  return *migrations;
}

}  // namespace wasentinel::alert
