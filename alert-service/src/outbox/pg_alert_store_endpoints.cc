// PgAlertStore (pg_alert_store.h): webhook endpoints, their secrets sealed.
#include <optional>

#include "absl/strings/str_cat.h"
#include "pg_alert_store.h"
#include "pg_alert_store_internal.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::alert {
namespace {

using internal::CheckUuid;
using internal::EndpointColumns;
using internal::ToEndpoint;

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

}  // namespace wasentinel::alert
