#include "wasentinel/common/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(status.code()), std::string(status.message())};
}

absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return {static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat(Sv(what), ": ", status.error_message())};
}

std::string_view Metadata(grpc::ServerContextBase* ctx, std::string_view key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return {};
  return {it->second.data(), it->second.size()};
}

grpc::Status AuthorizeCall(const ApiKeys& keys, grpc::ServerContextBase* ctx, Scope scope,
                           Caller* caller) {
  auto who = keys.Authorize(Metadata(ctx, "x-api-key"), Metadata(ctx, "authorization"), scope);
  if (!who.ok()) return ToGrpc(who.status());
  if (caller) *caller = *std::move(who);
  return grpc::Status::OK;
}

}  // namespace wasentinel
