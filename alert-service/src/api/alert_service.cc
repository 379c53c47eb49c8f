#include "alert_service.h"

#include "absl/strings/str_cat.h"
#include "delivery/webhook.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::alert {
namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 500;

grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

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

grpc::Status AlertServiceImpl::Authorize(grpc::ServerContext* ctx, Scope scope) const {
  return ToGrpc(
      keys_.Authorize(Metadata(ctx, "x-api-key"), Metadata(ctx, "authorization"), scope).status());
}

grpc::Status AlertServiceImpl::RaiseAlert(grpc::ServerContext* ctx,
                                          const v1::RaiseAlertRequest* req,
                                          v1::RaiseAlertResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate));
  auto raised = store_.Raise(*req, options_.recipients, clock_.Now());
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
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate));
  auto resolved = store_.Resolve(req->dedup_key(), req->note(), clock_.Now());
  if (!resolved.ok()) return ToGrpc(resolved.status());
  if (on_outbox_) on_outbox_();
  *resp->mutable_alert() = *std::move(resolved);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::GetAlert(grpc::ServerContext* ctx, const v1::GetAlertRequest* req,
                                        v1::GetAlertResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  auto alert = store_.Get(req->id());
  if (!alert.ok()) return ToGrpc(alert.status());
  *resp->mutable_alert() = *std::move(alert);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListAlerts(grpc::ServerContext* ctx,
                                          const v1::ListAlertsRequest* req,
                                          v1::ListAlertsResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
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
  for (const auto& t : types) {
    if (t.empty() || t.find(',') != std::string::npos || t.size() > 100) {
      return Invalid(absl::StrCat("bad event type \"", t, "\" in the filter"));
    }
  }
  if (rate < 0) return Invalid("rate_limit_per_second must be 0 (the default) or more");
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
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  WAS_GRPC_RETURN_IF_ERROR(
      CheckEndpoint(req->url(), req->event_types(), req->rate_limit_per_second()));
  auto [secret, key_id, sealed] = NewSealedSecret();
  auto created = store_.CreateEndpoint(*req, key_id, sealed, clock_.Now());
  if (!created.ok()) return ToGrpc(created.status());
  *resp->mutable_endpoint() = *std::move(created);
  resp->set_secret(secret);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListWebhookEndpoints(grpc::ServerContext* ctx,
                                                    const v1::ListWebhookEndpointsRequest*,
                                                    v1::ListWebhookEndpointsResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  auto list = store_.ListEndpoints();
  if (!list.ok()) return ToGrpc(list.status());
  for (auto& e : *list) *resp->add_endpoints() = std::move(e);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::UpdateWebhookEndpoint(grpc::ServerContext* ctx,
                                                     const v1::UpdateWebhookEndpointRequest* req,
                                                     v1::UpdateWebhookEndpointResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  if (req->has_url() || req->replace_event_types() || req->has_rate_limit_per_second()) {
    WAS_GRPC_RETURN_IF_ERROR(
        CheckEndpoint(req->has_url() ? req->url() : "https://unchanged.invalid/",
                      req->event_types(), req->rate_limit_per_second()));
  }
  auto updated = store_.UpdateEndpoint(*req);
  if (!updated.ok()) return ToGrpc(updated.status());
  *resp->mutable_endpoint() = *std::move(updated);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::DeleteWebhookEndpoint(grpc::ServerContext* ctx,
                                                     const v1::DeleteWebhookEndpointRequest* req,
                                                     v1::DeleteWebhookEndpointResponse*) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  return ToGrpc(store_.DeleteEndpoint(req->id()));
}

grpc::Status AlertServiceImpl::RotateWebhookSecret(grpc::ServerContext* ctx,
                                                   const v1::RotateWebhookSecretRequest* req,
                                                   v1::RotateWebhookSecretResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  absl::Duration grace = options_.rotation_grace;
  if (req->has_grace()) {
    grace = FromProto(req->grace());
    if (grace < absl::ZeroDuration() || grace > absl::Hours(24 * 30)) {
      return Invalid("grace must be between 0 and 30 days");
    }
  }
  const absl::Time now = clock_.Now();
  auto [secret, key_id, sealed] = NewSealedSecret();
  auto rotated = store_.RotateSecret(req->id(), key_id, sealed, now + grace, now);
  if (!rotated.ok()) return ToGrpc(rotated.status());
  *resp->mutable_endpoint() = *std::move(rotated);
  resp->set_secret(secret);
  *resp->mutable_previous_valid_until() = ToProto(now + grace);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListDeliveries(grpc::ServerContext* ctx,
                                              const v1::ListDeliveriesRequest* req,
                                              v1::ListDeliveriesResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 and ", kMaxPageSize));
  }
  for (int s : req->statuses()) {
    if (!v1::Delivery::Status_IsValid(s) || s == v1::Delivery::STATUS_UNSPECIFIED) {
      return Invalid(absl::StrCat("unknown delivery status ", s));
    }
  }
  if (!v1::Delivery::Channel_IsValid(req->channel())) {
    return Invalid(absl::StrCat("unknown channel ", req->channel()));
  }
  auto page =
      store_.ListDeliveries(*req, req->page_size() == 0 ? kDefaultPageSize : req->page_size());
  if (!page.ok()) return ToGrpc(page.status());
  for (auto& d : page->first) *resp->add_deliveries() = std::move(d);
  resp->set_next_page_token(page->second);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::RedeliverDelivery(grpc::ServerContext* ctx,
                                                 const v1::RedeliverDeliveryRequest* req,
                                                 v1::RedeliverDeliveryResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate));
  auto d = store_.Redeliver(req->id(), clock_.Now());
  if (!d.ok()) return ToGrpc(d.status());
  *resp->mutable_delivery() = *std::move(d);
  if (on_outbox_) on_outbox_();
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::GetDeliveryStats(grpc::ServerContext* ctx,
                                                const v1::GetDeliveryStatsRequest* req,
                                                v1::GetDeliveryStatsResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  absl::Duration window = absl::Hours(24);
  if (req->has_window()) {
    window = FromProto(req->window());
    if (window <= absl::ZeroDuration()) return Invalid("window must be positive");
  }
  const absl::Time now = clock_.Now();
  auto stats = store_.DeliveryStats(now - window, now);
  if (!stats.ok()) return ToGrpc(stats.status());
  *resp = *std::move(stats);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::CreateSilence(grpc::ServerContext* ctx,
                                             const v1::CreateSilenceRequest* req,
                                             v1::CreateSilenceResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  auto s = store_.CreateSilence(*req, clock_.Now());
  if (!s.ok()) return ToGrpc(s.status());
  *resp->mutable_silence() = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::ListSilences(grpc::ServerContext* ctx,
                                            const v1::ListSilencesRequest* req,
                                            v1::ListSilencesResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead));
  auto list = store_.ListSilences(req->include_expired(), clock_.Now());
  if (!list.ok()) return ToGrpc(list.status());
  for (auto& s : *list) *resp->add_silences() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status AlertServiceImpl::DeleteSilence(grpc::ServerContext* ctx,
                                             const v1::DeleteSilenceRequest* req,
                                             v1::DeleteSilenceResponse*) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin));
  return ToGrpc(store_.DeleteSilence(req->id()));
}

}  // namespace wasentinel::alert
