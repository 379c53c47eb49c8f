#include "grpc_clients.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::monitor {
namespace {

std::unique_ptr<grpc::ClientContext> MakeContext(const std::string& key, absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!key.empty()) ctx->AddMetadata("x-api-key", key);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& st, std::string_view what) {
  if (st.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                      absl::StrCat(Sv(what), ": ", st.error_message()));
}

GrpcSessionSource::GrpcSessionSource(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                                     absl::Duration timeout)
    : stub_(sv1::SessionService::NewStub(std::move(channel))),
      api_key_(std::move(api_key)),
      timeout_(timeout) {}

std::unique_ptr<grpc::ClientContext> GrpcSessionSource::Context(absl::Duration timeout) const {
  return MakeContext(api_key_, timeout);
}

absl::StatusOr<sv1::GetHealthResponse> GrpcSessionSource::Health() {
  auto ctx = Context(timeout_);
  sv1::GetHealthResponse resp;
  if (auto st = FromGrpc(stub_->GetHealth(ctx.get(), {}, &resp), "GetHealth"); !st.ok()) return st;
  return resp;
}

absl::StatusOr<sv1::GetDeepHealthResponse> GrpcSessionSource::DeepHealth() {
  auto ctx = Context(timeout_ * 4);
  sv1::GetDeepHealthResponse resp;
  if (auto st = FromGrpc(stub_->GetDeepHealth(ctx.get(), {}, &resp), "GetDeepHealth"); !st.ok()) {
    return st;
  }
  return resp;
}

absl::StatusOr<std::vector<sv1::Session>> GrpcSessionSource::BulkGet(
    const std::vector<std::string>& ids) {
  auto ctx = Context(timeout_);
  sv1::BulkGetSessionsRequest req;
  for (const auto& id : ids) req.add_ids(id);
  sv1::BulkGetSessionsResponse resp;
  if (auto st = FromGrpc(stub_->BulkGetSessions(ctx.get(), req, &resp), "BulkGetSessions");
      !st.ok()) {
    return st;
  }
  return std::vector<sv1::Session>(resp.sessions().begin(), resp.sessions().end());
}

absl::StatusOr<sv1::Session> GrpcSessionSource::Reconnect(const std::string& id) {
  auto ctx = Context(timeout_);
  sv1::ReconnectRequest req;
  req.set_id(id);
  sv1::ReconnectResponse resp;
  if (auto st = FromGrpc(stub_->Reconnect(ctx.get(), req, &resp), "Reconnect"); !st.ok()) {
    return st;
  }
  return resp.session();
}

absl::StatusOr<absl::Duration> GrpcSessionSource::Probe(const std::string& id) {
  auto ctx = Context(timeout_);
  sv1::ProbeSessionRequest req;
  req.set_id(id);
  sv1::ProbeSessionResponse resp;
  if (auto st = FromGrpc(stub_->ProbeSession(ctx.get(), req, &resp), "ProbeSession"); !st.ok()) {
    return st;
  }
  if (!resp.ok()) return absl::UnavailableError(absl::StrCat("probe failed: ", resp.error()));
  return absl::Seconds(resp.round_trip().seconds()) + absl::Nanoseconds(resp.round_trip().nanos());
}

GrpcAlertSink::GrpcAlertSink(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                             absl::Duration timeout)
    : stub_(av1::AlertService::NewStub(std::move(channel))),
      api_key_(std::move(api_key)),
      timeout_(timeout) {}

absl::Status GrpcAlertSink::Raise(const av1::RaiseAlertRequest& alert) {
  auto ctx = MakeContext(api_key_, timeout_);
  av1::RaiseAlertResponse resp;
  return FromGrpc(stub_->RaiseAlert(ctx.get(), alert, &resp), "RaiseAlert");
}

absl::Status GrpcAlertSink::Resolve(const std::string& dedup_key, const std::string& note) {
  auto ctx = MakeContext(api_key_, timeout_);
  av1::ResolveAlertRequest req;
  req.set_dedup_key(dedup_key);
  req.set_note(note);
  av1::ResolveAlertResponse resp;
  return FromGrpc(stub_->ResolveAlert(ctx.get(), req, &resp), "ResolveAlert");
}

}  // namespace wasentinel::monitor
