#include "grpc_clients.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {
namespace {

std::unique_ptr<grpc::ClientContext> MakeContext(const std::string& key, absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!key.empty()) ctx->AddMetadata("x-api-key", key);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

}  // namespace

GrpcSessionSource::GrpcSessionSource(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                                     absl::Duration timeout)
    : stub_(sv1::SessionService::NewStub(std::move(channel))),
      api_key_(std::move(api_key)),
      timeout_(timeout) {}

std::unique_ptr<grpc::ClientContext> GrpcSessionSource::Context(absl::Duration timeout) const {
  return MakeContext(api_key_, timeout);
}

namespace {

// One unary call: the response, or the call's status (named after `what`).
template <class Stub, class Req, class Resp>
absl::StatusOr<Resp> Unary(Stub& stub,
                           grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                           const Req& req, std::unique_ptr<grpc::ClientContext> ctx,
                           std::string_view what) {
  Resp resp;
  if (auto st = FromGrpc((stub.*method)(ctx.get(), req, &resp), what); !st.ok()) return st;
  return resp;
}

}  // namespace

absl::StatusOr<sv1::GetHealthResponse> GrpcSessionSource::Health() {
  return Unary(*stub_, &sv1::SessionService::Stub::GetHealth, sv1::GetHealthRequest(),
               Context(timeout_), "GetHealth");
}

absl::StatusOr<sv1::GetDeepHealthResponse> GrpcSessionSource::DeepHealth() {
  return Unary(*stub_, &sv1::SessionService::Stub::GetDeepHealth, sv1::GetDeepHealthRequest(),
               Context(timeout_ * 4), "GetDeepHealth");
}

absl::StatusOr<std::vector<sv1::Session>> GrpcSessionSource::BulkGet(
    const std::vector<std::string>& ids) {
  sv1::BulkGetSessionsRequest req;
  for (const auto& id : ids) req.add_ids(id);
  auto resp = Unary(*stub_, &sv1::SessionService::Stub::BulkGetSessions, req, Context(timeout_),
                    "BulkGetSessions");
  if (!resp.ok()) return resp.status();
  return std::vector<sv1::Session>(resp->sessions().begin(), resp->sessions().end());
}

absl::StatusOr<sv1::Session> GrpcSessionSource::Get(const std::string& id) {
  sv1::GetSessionRequest req;
  req.set_id(id);
  auto resp =
      Unary(*stub_, &sv1::SessionService::Stub::GetSession, req, Context(timeout_), "GetSession");
  if (!resp.ok()) return resp.status();
  return resp->session();
}

absl::StatusOr<sv1::Session> GrpcSessionSource::Reconnect(const std::string& id) {
  sv1::ReconnectRequest req;
  req.set_id(id);
  req.set_recovery(true);  // refused, atomically, if only a person may bring it back
  auto resp =
      Unary(*stub_, &sv1::SessionService::Stub::Reconnect, req, Context(timeout_), "Reconnect");
  if (!resp.ok()) return resp.status();
  return resp->session();
}

absl::StatusOr<absl::Duration> GrpcSessionSource::Probe(const std::string& id) {
  sv1::ProbeSessionRequest req;
  req.set_id(id);
  // The pong's wait ends well inside the call's deadline, so a silent socket is a failed probe
  // with session-service's reason rather than a DEADLINE_EXCEEDED.
  *req.mutable_timeout() = ToProto(std::min(absl::Seconds(10), timeout_ / 2));
  auto resp = Unary(*stub_, &sv1::SessionService::Stub::ProbeSession, req, Context(timeout_),
                    "ProbeSession");
  if (!resp.ok()) return resp.status();
  if (!resp->ok()) return absl::UnavailableError(absl::StrCat("probe failed: ", resp->error()));
  return FromProto(resp->round_trip());
}

GrpcAlertSink::GrpcAlertSink(std::shared_ptr<grpc::Channel> channel, std::string api_key,
                             absl::Duration timeout)
    : stub_(av1::AlertService::NewStub(std::move(channel))),
      api_key_(std::move(api_key)),
      timeout_(timeout) {}

absl::Status GrpcAlertSink::Raise(const av1::RaiseAlertRequest& alert) {
  return Unary(*stub_, &av1::AlertService::Stub::RaiseAlert, alert, MakeContext(api_key_, timeout_),
               "RaiseAlert")
      .status();
}

absl::Status GrpcAlertSink::Resolve(const std::string& dedup_key, const std::string& note) {
  av1::ResolveAlertRequest req;
  req.set_dedup_key(dedup_key);
  req.set_note(note);
  return Unary(*stub_, &av1::AlertService::Stub::ResolveAlert, req, MakeContext(api_key_, timeout_),
               "ResolveAlert")
      .status();
}

}  // namespace wasentinel::monitor
