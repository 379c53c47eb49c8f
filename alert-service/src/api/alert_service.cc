#include "alert_service.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "delivery/webhook.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/event_types.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::alert {
namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 500;

grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

grpc::Status CheckId(std::string_view field, const std::string& id) {
  return ToGrpc(CheckIdentifier(field, id, 128));
}
grpc::Status CheckOptionalId(std::string_view field, const std::string& id) {
  return id.empty() ? grpc::Status::OK : CheckId(field, id);
}
grpc::Status CheckPageToken(const std::string& token) {
  return token.empty() ? grpc::Status::OK : ToGrpc(CheckIdentifier("page_token", token, 512));
}
grpc::Status CheckOptionalEventType(std::string_view field, const std::string& type) {
  return type.empty() ? grpc::Status::OK : ToGrpc(CheckEventType(field, type));
}
grpc::Status CheckDedupKey(const std::string& key) {
  return ToGrpc(CheckText("dedup_key", key, {.max_bytes = 200, .required = true}));
}
grpc::Status CheckTime(std::string_view field, const google::protobuf::Timestamp& t) {
  return ToGrpc(CheckTimestamp(field, t.seconds(), t.nanos()));
}

// What an alert says about its session: the e-mail's recipient, subject and body come from here.
grpc::Status CheckSessionFacts(const v1::SessionFacts& s) {
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalId("session.session_id", s.session_id()));
  if (!s.tenant_id().empty()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckTenantId("session.tenant_id", s.tenant_id())));
  }
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("session.account_name", s.account_name(), {.max_bytes = 256})));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("session.phone_number_masked", s.phone_number_masked(), {.max_bytes = 32})));
  if (!s.owner_email().empty()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckMailbox("session.owner_email", s.owner_email())));
  }
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckText("session.state", s.state(), {.max_bytes = 64})));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckText("session.reason", s.reason(), {.max_bytes = 256})));
  if (s.has_offline_since()) {
    WAS_GRPC_RETURN_IF_ERROR(CheckTime("session.offline_since", s.offline_since()));
  }
  if (s.has_last_connected_at()) {
    WAS_GRPC_RETURN_IF_ERROR(CheckTime("session.last_connected_at", s.last_connected_at()));
  }
  return grpc::Status::OK;
}

constexpr int kMaxEventTypes = 64;  // in one endpoint's filter
constexpr int kMaxStatuses = 8;     // in one list filter

}  // namespace

AlertServiceImpl::AlertServiceImpl(PgAlertStore& store, const ApiKeys& keys, Clock& clock,
                                   const Sealer& sealer, AlertServiceOptions options,
                                   std::function<void()> on_outbox)
    : store_(store),
      keys_(keys),
      clock_(clock),
      sealer_(sealer),
      options_(std::move(options)),
      on_outbox_(std::move(on_outbox)) {}

grpc::Status AlertServiceImpl::Authorize(grpc::ServerContext* ctx, Scope scope,
                                         Caller* caller) const {
  return AuthorizeCall(keys_, ctx, scope, caller);
}

namespace {

// A store answer for `caller`: another tenant's object is NOT_FOUND in the store (it filters by
// tenant), which a tenant key gets as api_keys.h NotVisible.
grpc::Status Answer(const Caller& caller, std::string_view kind, std::string_view id,
                    const absl::Status& st) {
  if (st.ok()) return grpc::Status::OK;
  if (absl::IsNotFound(st)) return ToGrpc(NotVisible(caller, kind, id, st));
  return ToGrpc(st);
}

// A tenant key's dedup keys start with "<tenant>/", so that they never meet another tenant's
// (dedup keys are one namespace).
grpc::Status CheckDedupScope(const Caller& caller, const std::string& dedup_key) {
  if (caller.all_tenants() || absl::StartsWith(dedup_key, absl::StrCat(caller.tenant, "/"))) {
    return grpc::Status::OK;
  }
  return Invalid(absl::StrCat("dedup_key must start with \"", caller.tenant, "/\" for API key \"",
                              caller.key_name, "\" (tenant ", caller.tenant, ")"));
}

}  // namespace

grpc::Status AlertServiceImpl::RaiseAlert(grpc::ServerContext* ctx,
                                          const v1::RaiseAlertRequest* req,
                                          v1::RaiseAlertResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckDedupKey(req->dedup_key()));
  WAS_GRPC_RETURN_IF_ERROR(CheckDedupScope(caller, req->dedup_key()));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckEventType("event_type", req->event_type())));
  if (event_types::IsFeedEvent(req->event_type())) {
    return Invalid(absl::StrCat("event_type ", req->event_type(),
                                " is a message webhook, sent by the message feed, not an alert"));
  }
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("summary", req->summary(), {.max_bytes = 4096, .multiline = true})));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionFacts(req->session()));
  auto tenant = TenantOfNew(caller, req->session().tenant_id(), /*required=*/false);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  v1::RaiseAlertRequest scoped = *req;
  scoped.mutable_session()->set_tenant_id(*tenant);
  auto raised = store_.Raise(scoped, options_.recipients, clock_.Now());
  if (!raised.ok()) return ToGrpc(raised.status());
  if (on_outbox_) on_outbox_();
  if (options_.metrics) {
    options_.metrics->Raised(req->event_type(),
                             raised->alert.status() == v1::Alert::STATUS_SUPPRESSED ? "suppressed"
                             : raised->created                                      ? "created"
                             : raised->escalated                                    ? "escalated"
                                                                                    : "folded");
  }
  *resp->mutable_alert() = std::move(raised->alert);
  resp->set_created(raised->created);
  resp->set_escalated(raised->escalated);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ResolveAlert(grpc::ServerContext* ctx,
                                            const v1::ResolveAlertRequest* req,
                                            v1::ResolveAlertResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckDedupKey(req->dedup_key()));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("note", req->note(), {.max_bytes = 1000, .multiline = true})));
  auto resolved = store_.Resolve(req->dedup_key(), req->note(), clock_.Now(), caller.tenant);
  if (!resolved.ok()) return Answer(caller, "alert", req->dedup_key(), resolved.status());
  if (on_outbox_) on_outbox_();
  *resp->mutable_alert() = *std::move(resolved);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::GetAlert(grpc::ServerContext* ctx, const v1::GetAlertRequest* req,
                                        v1::GetAlertResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  auto alert = store_.Get(req->id());
  if (alert.ok() && !caller.Sees(alert->session().tenant_id())) {
    alert = absl::NotFoundError("another tenant's");
  }
  if (!alert.ok()) return Answer(caller, "alert", req->id(), alert.status());
  *resp->mutable_alert() = *std::move(alert);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListAlerts(grpc::ServerContext* ctx,
                                          const v1::ListAlertsRequest* req,
                                          v1::ListAlertsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalId("session_id", req->session_id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalEventType("event_type", req->event_type()));
  WAS_GRPC_RETURN_IF_ERROR(CheckPageToken(req->page_token()));
  if (req->statuses_size() > kMaxStatuses) {
    return Invalid(absl::StrCat("statuses holds at most ", kMaxStatuses));
  }
  AlertFilter filter;
  for (int s : req->statuses()) {
    if (!v1::Alert::Status_IsValid(s) || s == v1::Alert::STATUS_UNSPECIFIED) {
      return Invalid(absl::StrCat("unknown alert status ", s));
    }
    filter.statuses.push_back(static_cast<v1::Alert::Status>(s));
  }
  filter.session_id = req->session_id();
  filter.event_type = req->event_type();
  filter.tenant_id = caller.tenant;
  auto page = store_.List(filter, req->page_size() == 0 ? kDefaultPageSize : req->page_size(),
                          req->page_token());
  if (!page.ok()) return ToGrpc(page.status());
  for (auto& a : page->alerts) *resp->add_alerts() = std::move(a);
  resp->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::CheckEndpoint(
    const std::string& url, const google::protobuf::RepeatedPtrField<std::string>& types,
    double rate) const {
  if (auto st = CheckWebhookUrl(url, options_.allow_private_targets); !st.ok()) return ToGrpc(st);
  if (types.size() > kMaxEventTypes) {
    return Invalid(absl::StrCat("event_types holds at most ", kMaxEventTypes));
  }
  for (const auto& t : types) WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckEventType("event_types", t)));
  if (!std::isfinite(rate) || rate < 0 || rate > 1e6) {
    return Invalid("rate_limit_per_second must be 0 (the default) to 1000000");
  }
  return grpc::Status::OK;
}

std::tuple<std::string, std::string, std::string> AlertServiceImpl::NewSealedSecret() const {
  std::string secret = NewWebhookSecret();
  auto sealed =
      sealer_.Seal(ByteView(reinterpret_cast<const uint8_t*>(secret.data()), secret.size()));
  return {std::move(secret), sealed.key_id, std::string(sealed.blob.begin(), sealed.blob.end())};
}

grpc::Status AlertServiceImpl::CreateWebhookEndpoint(grpc::ServerContext* ctx,
                                                     const v1::CreateWebhookEndpointRequest* req,
                                                     v1::CreateWebhookEndpointResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(
      CheckEndpoint(req->url(), req->event_types(), req->rate_limit_per_second()));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("description", req->description(), {.max_bytes = 500})));
  auto [secret, key_id, sealed] = NewSealedSecret();
  auto created = store_.CreateEndpoint(*req, key_id, sealed, clock_.Now(), caller.tenant);
  if (!created.ok()) return ToGrpc(created.status());
  *resp->mutable_endpoint() = *std::move(created);
  resp->set_secret(secret);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListWebhookEndpoints(grpc::ServerContext* ctx,
                                                    const v1::ListWebhookEndpointsRequest*,
                                                    v1::ListWebhookEndpointsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  auto list = store_.ListEndpoints(caller.tenant);
  if (!list.ok()) return ToGrpc(list.status());
  for (auto& e : *list) *resp->add_endpoints() = std::move(e);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::UpdateWebhookEndpoint(grpc::ServerContext* ctx,
                                                     const v1::UpdateWebhookEndpointRequest* req,
                                                     v1::UpdateWebhookEndpointResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("description", req->description(), {.max_bytes = 500})));
  if (req->has_url() || req->replace_event_types() || req->has_rate_limit_per_second() ||
      req->event_types_size() > 0) {
    WAS_GRPC_RETURN_IF_ERROR(
        CheckEndpoint(req->has_url() ? req->url() : "https://unchanged.invalid/",
                      req->event_types(), req->rate_limit_per_second()));
  }
  auto updated = store_.UpdateEndpoint(*req, caller.tenant);
  if (!updated.ok()) return Answer(caller, "webhook endpoint", req->id(), updated.status());
  *resp->mutable_endpoint() = *std::move(updated);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::DeleteWebhookEndpoint(grpc::ServerContext* ctx,
                                                     const v1::DeleteWebhookEndpointRequest* req,
                                                     v1::DeleteWebhookEndpointResponse*) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  return Answer(caller, "webhook endpoint", req->id(),
                store_.DeleteEndpoint(req->id(), caller.tenant));
}

grpc::Status AlertServiceImpl::RotateWebhookSecret(grpc::ServerContext* ctx,
                                                   const v1::RotateWebhookSecretRequest* req,
                                                   v1::RotateWebhookSecretResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  absl::Duration grace = options_.rotation_grace;
  if (req->has_grace()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(
        CheckDuration("grace", req->grace().seconds(), req->grace().nanos(), 30 * 24 * 3600)));
    grace = FromProto(req->grace());
  }
  const absl::Time now = clock_.Now();
  auto [secret, key_id, sealed] = NewSealedSecret();
  auto rotated = store_.RotateSecret(req->id(), key_id, sealed, now + grace, now, caller.tenant);
  if (!rotated.ok()) return Answer(caller, "webhook endpoint", req->id(), rotated.status());
  *resp->mutable_endpoint() = *std::move(rotated);
  resp->set_secret(secret);
  *resp->mutable_previous_valid_until() = ToProto(now + grace);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListDeliveries(grpc::ServerContext* ctx,
                                              const v1::ListDeliveriesRequest* req,
                                              v1::ListDeliveriesResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalId("alert_id", req->alert_id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckPageToken(req->page_token()));
  if (req->statuses_size() > kMaxStatuses) {
    return Invalid(absl::StrCat("statuses holds at most ", kMaxStatuses));
  }
  for (int s : req->statuses()) {
    if (!v1::Delivery::Status_IsValid(s) || s == v1::Delivery::STATUS_UNSPECIFIED) {
      return Invalid(absl::StrCat("unknown delivery status ", s));
    }
  }
  if (!v1::Delivery::Channel_IsValid(req->channel())) {
    return Invalid(absl::StrCat("unknown channel ", req->channel()));
  }
  auto page = store_.ListDeliveries(
      *req, req->page_size() == 0 ? kDefaultPageSize : req->page_size(), caller.tenant);
  if (!page.ok()) return ToGrpc(page.status());
  for (auto& d : page->first) *resp->add_deliveries() = std::move(d);
  resp->set_next_page_token(page->second);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::RedeliverDelivery(grpc::ServerContext* ctx,
                                                 const v1::RedeliverDeliveryRequest* req,
                                                 v1::RedeliverDeliveryResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  auto d = store_.Redeliver(req->id(), clock_.Now(), caller.tenant);
  if (!d.ok()) return Answer(caller, "delivery", req->id(), d.status());
  *resp->mutable_delivery() = *std::move(d);
  if (on_outbox_) on_outbox_();
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::GetDeliveryStats(grpc::ServerContext* ctx,
                                                const v1::GetDeliveryStatsRequest* req,
                                                v1::GetDeliveryStatsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  absl::Duration window = absl::Hours(24);
  if (req->has_window()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(
        CheckDuration("window", req->window().seconds(), req->window().nanos(), 366 * 24 * 3600)));
    window = FromProto(req->window());
    if (window <= absl::ZeroDuration()) return Invalid("window must be positive");
  }
  const absl::Time now = clock_.Now();
  auto stats = store_.DeliveryStats(now - window, now, caller.tenant);
  if (!stats.ok()) return ToGrpc(stats.status());
  *resp = *std::move(stats);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::CreateSilence(grpc::ServerContext* ctx,
                                             const v1::CreateSilenceRequest* req,
                                             v1::CreateSilenceResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalId("session_id", req->session_id()));
  if (!req->tenant_id().empty()) {
    WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckTenantId("tenant_id", req->tenant_id())));
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckOptionalEventType("event_type", req->event_type()));
  if (req->has_until()) WAS_GRPC_RETURN_IF_ERROR(CheckTime("until", req->until()));
  WAS_GRPC_RETURN_IF_ERROR(
      ToGrpc(CheckText("comment", req->comment(), {.max_bytes = 1000, .multiline = true})));
  auto tenant = TenantOfNew(caller, req->tenant_id(), /*required=*/false);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  v1::CreateSilenceRequest scoped = *req;
  scoped.set_tenant_id(*tenant);
  auto s = store_.CreateSilence(scoped, clock_.Now());
  if (!s.ok()) return ToGrpc(s.status());
  *resp->mutable_silence() = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListSilences(grpc::ServerContext* ctx,
                                            const v1::ListSilencesRequest* req,
                                            v1::ListSilencesResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  auto list = store_.ListSilences(req->include_expired(), clock_.Now(), caller.tenant);
  if (!list.ok()) return ToGrpc(list.status());
  for (auto& s : *list) *resp->add_silences() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::DeleteSilence(grpc::ServerContext* ctx,
                                             const v1::DeleteSilenceRequest* req,
                                             v1::DeleteSilenceResponse*) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckId("id", req->id()));
  return Answer(caller, "silence", req->id(), store_.DeleteSilence(req->id(), caller.tenant));
}

}  // namespace wasentinel::alert
