#include "alert_service.h"

#include "absl/strings/str_cat.h"
#include "wasentinel/common/grpc_status.h"

namespace wasentinel::alert {
namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 500;

grpc::Status Invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

}  // namespace

AlertServiceImpl::AlertServiceImpl(PgAlertStore& store, const ApiKeys& keys, Clock& clock,
                                   std::vector<std::string> recipients)
    : store_(store), keys_(keys), clock_(clock), recipients_(std::move(recipients)) {}

grpc::Status AlertServiceImpl::Authorize(grpc::ServerContext* ctx, Scope scope) const {
  return ToGrpc(
      keys_.Authorize(Metadata(ctx, "x-api-key"), Metadata(ctx, "authorization"), scope).status());
}

grpc::Status AlertServiceImpl::RaiseAlert(grpc::ServerContext* ctx,
                                          const v1::RaiseAlertRequest* req,
                                          v1::RaiseAlertResponse* resp) {
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate));
  auto raised = store_.Raise(*req, recipients_, clock_.Now());
  if (!raised.ok()) return ToGrpc(raised.status());
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

}  // namespace wasentinel::alert
